"""PyTorch interop: other SSD implementations' weights in, and layer-by-layer comparison.

One concept per module:

``layouts``
    THE table of the source layouts (torchvision ``ssd300_vgg16``, torchvision ``vgg16``,
    ssd.pytorch's SSD300 and its ``vgg16_reducedfc``): for every layer of minissd's SSD, the
    state-dict keys of its parameters and the torch module whose output it is; the model
    configurations of the PyTorch layouts (``CONFIGS``). Conversion and parity both read it.
``convert``
    state dicts in (``.pth`` or ``.npz``), layout detection from the keys, the fc6/fc7
    decimation, ``convert_state_dict`` and the ``minissd convert`` command
    (``python -m minissd.pytorch.convert``).
``parity``
    both networks on the same input, compared layer by layer, then heads, decoded boxes and
    detections (``python -m minissd.pytorch.parity``).
``reference_model``
    SSD in ``torch.nn`` in ssd.pytorch's layout, and Caffe's detection output in torch: the
    independent oracle of the tests, the parity harness and the benchmark.

torch is optional: every module imports without it (nothing here imports torch at import
time), and what needs it raises an ``ImportError`` that says how to install it.
"""

from __future__ import annotations

#: What to run to get the optional PyTorch dependency (``pyproject.toml``'s ``oracle`` extra).
INSTALL_TORCH = 'pip install -e ".[oracle]"'


def require_torch(what: str, alternative: str = ""):
    """``torch``, imported now; without it an ``ImportError`` saying that ``what`` needs torch,
    how to install it, and ``alternative`` (a sentence) where there is one."""
    try:
        import torch
    except ImportError:
        raise ImportError(f"{what} needs torch (PyTorch): {INSTALL_TORCH}"
                          + (f"; {alternative}" if alternative else "")) from None
    return torch
