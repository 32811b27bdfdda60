import numpy as np
import pytest

from minissd import backend


def test_numpy_is_default_module():
    assert backend.get_array_module(np.zeros(3), 1.0) is np


def test_to_device_cpu_roundtrip():
    a = np.arange(6.0).reshape(2, 3)
    b = backend.to_device(a, "cpu")
    assert isinstance(b, np.ndarray) and np.array_equal(a, b)
    assert backend.device_of(b) == "cpu"


def test_bad_device_name_is_named():
    with pytest.raises(ValueError, match="device must be 'cpu' or 'gpu'"):
        backend.xp_for("tpu")


def test_gpu_request_without_gpu_says_why():
    if backend.gpu_available():
        pytest.skip("a GPU is available here")
    with pytest.raises(RuntimeError, match="GPU backend was requested"):
        backend.cupy()


@pytest.mark.gpu
def test_gpu_roundtrip():
    cp = backend.cupy()
    a = np.arange(6.0)
    g = backend.to_device(a, "gpu")
    assert backend.get_array_module(g) is cp
    assert np.array_equal(backend.to_numpy(g), a)
