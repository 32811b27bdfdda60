"""Every kernels/*.cu compiles to PTX, so a CUDA syntax error fails CI even without a GPU."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from minissd.kernels import cuda

CU_FILES = sorted(cuda.SOURCE_DIR.glob("*.cu"))
# The extern "C" entry points the launchers in kernels/cuda.py look up by name.
ENTRY_POINTS = {
    "iou.cu": {"iou_matrix_f32", "iou_matrix_f64"},
    "nms.cu": {"nms_mask_f32", "nms_mask_f64", "nms_gather_keep"},
}


def _nvcc():
    for candidate in (shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc", "/usr/local/bin/nvcc"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def _oldest_virtual_arch(nvcc):
    """The lowest compute_XX this nvcc supports (CUDA 13 dropped compute_70)."""
    listed = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True).stdout
    archs = sorted(re.findall(r"compute_(\d+)", listed), key=int)
    return f"compute_{archs[0]}" if archs else "compute_75"


def test_every_cu_file_has_known_entry_points():
    assert {p.name for p in CU_FILES} == set(ENTRY_POINTS)


@pytest.mark.parametrize("source", CU_FILES, ids=lambda p: p.name)
def test_cuda_source_compiles_to_ptx(source, tmp_path):
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc is not installed; the CUDA sources are compiled only where it is")
    ptx = tmp_path / (source.stem + ".ptx")
    arch = f"-arch={_oldest_virtual_arch(nvcc)}"
    cmd = [nvcc, "--ptx", arch, *cuda.NVRTC_OPTIONS, str(source), "-o", str(ptx)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"nvcc failed on {source.name}:\n{result.stderr}"
    entries = set(re.findall(r"\.entry\s+(\w+)", ptx.read_text()))
    assert ENTRY_POINTS[source.name] <= entries


@pytest.mark.parametrize("name", ["iou", "nms"])
def test_nvrtc_gets_self_contained_sources(name):
    """NVRTC compiles a string with no include path: cuda_source pastes box_iou.cuh in."""
    text = cuda.cuda_source(name)
    assert not re.search(r'^\s*#include\s+"', text, flags=re.M)
    assert "double iou_d(" in text
