import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None)
settings.register_profile(
    "stress", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def _gpu_reason():
    from minissd.backend import gpu_unavailable_reason

    return gpu_unavailable_reason()


def pytest_collection_modifyitems(config, items):
    reason = None
    for item in items:
        if "gpu" in item.keywords:
            if reason is None:
                reason = _gpu_reason() or ""
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"GPU test: {reason}"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The built-in dataset at toy size (6 train, 2 test images of 128 px), for training
    tests; tests must not modify it."""
    from minissd.data import make_synthetic_voc

    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_voc(root, num_train=6, num_test=2, image_size=128, seed=3)
    return root
