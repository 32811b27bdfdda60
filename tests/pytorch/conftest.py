"""Fixtures shared by the PyTorch interop tests."""

import pytest


@pytest.fixture
def torch_threads():
    """torch on two threads for the test (the machine's cores), restored after."""
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle of these tests")
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def ssd300_taps():
    """minissd's tap names in forward order for SSD300's topology, written out by hand."""
    return (["conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "pool2", "conv3_1", "conv3_2",
             "conv3_3", "pool3", "conv4_1", "conv4_2", "conv4_3", "pool4", "conv5_1", "conv5_2",
             "conv5_3", "pool5", "fc6", "fc7", "l2norm"]
            + [f"conv{i}_{j}" for i in range(8, 12) for j in (1, 2)]
            + [f"{h}{i}" for i in range(6) for h in ("loc", "conf")])
