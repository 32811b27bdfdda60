"""The torch oracle (``minissd.pytorch.reference_model``): ssd.pytorch's module tree and keys;
and every module of ``minissd.pytorch`` importing without torch, whose functions that need it
say how to install it."""

import subprocess
import sys

import pytest

from minissd.ssd.model import ssd300

NO_TORCH = """
import sys
sys.modules["torch"] = None  # "import torch" now fails
import minissd.cli, minissd.pytorch.convert, minissd.pytorch.layouts
from minissd.pytorch import parity, reference_model
for call in (reference_model.build_ssd_pytorch, lambda: parity.build_reference("ssd.pytorch"),
             lambda: parity.compare(None, None)):
    try:
        call()
    except ImportError as exc:
        print(exc)
"""


def test_modules_import_without_torch_and_name_the_install_command():
    run = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 3 and all('needs torch (PyTorch): pip install -e ".[oracle]"' in line
                                   for line in lines), lines


def test_reference_has_ssd_pytorch_layout():
    """Key names and shapes of ssd.pytorch's SSD300 (VOC), transcribed from its ssd.py."""
    pytest.importorskip("torch", reason="PyTorch is the oracle of these tests")
    from minissd.pytorch.reference_model import build_ssd_pytorch

    ref = build_ssd_pytorch(ssd300(21))
    shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    expected = {"L2Norm.weight": (512,)}
    vgg = {0: (64, 3, 3, 3), 2: (64, 64, 3, 3), 5: (128, 64, 3, 3), 7: (128, 128, 3, 3),
           10: (256, 128, 3, 3), 12: (256, 256, 3, 3), 14: (256, 256, 3, 3),
           17: (512, 256, 3, 3), 19: (512, 512, 3, 3), 21: (512, 512, 3, 3),
           24: (512, 512, 3, 3), 26: (512, 512, 3, 3), 28: (512, 512, 3, 3),
           31: (1024, 512, 3, 3), 33: (1024, 1024, 1, 1)}
    extras = {0: (256, 1024, 1, 1), 1: (512, 256, 3, 3), 2: (128, 512, 1, 1),
              3: (256, 128, 3, 3), 4: (128, 256, 1, 1), 5: (256, 128, 3, 3),
              6: (128, 256, 1, 1), 7: (256, 128, 3, 3)}
    for prefix, table in (("vgg", vgg), ("extras", extras)):
        for i, shape in table.items():
            expected[f"{prefix}.{i}.weight"], expected[f"{prefix}.{i}.bias"] = shape, shape[:1]
    for i, (c, k) in enumerate(zip((512, 1024, 512, 256, 256, 256), (4, 6, 6, 6, 4, 4))):
        expected[f"loc.{i}.weight"], expected[f"loc.{i}.bias"] = (k * 4, c, 3, 3), (k * 4,)
        expected[f"conf.{i}.weight"], expected[f"conf.{i}.bias"] = (k * 21, c, 3, 3), (k * 21,)
    assert shapes == expected
    assert len(ref.vgg) == 35 and ref.source_index == 23  # ssd.pytorch: range(23) -> L2Norm
    assert ref.vgg[16].ceil_mode and not ref.vgg[23].ceil_mode
    assert (ref.vgg[30].kernel_size, ref.vgg[30].stride, ref.vgg[30].padding) == (3, 1, 1)
    assert ref.vgg[31].dilation == (6, 6) and ref.vgg[31].padding == (6, 6)
    assert [m.stride for m in ref.extras] == [(1, 1), (2, 2)] * 2 + [(1, 1)] * 4
    assert [m.padding for m in ref.extras] == [(0, 0), (1, 1)] * 2 + [(0, 0)] * 4
