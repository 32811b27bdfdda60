"""Fixtures for the data tests; the helpers live in voc_folders.py."""

import pytest
from voc_folders import SHARED_DATA, VOCFolder


@pytest.fixture
def voc_folder(tmp_path):
    """Factory: ``voc_folder("name")`` makes an empty VOC folder under tmp_path."""
    return lambda name="VOCtiny": VOCFolder(tmp_path / name)


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA.resolve()} is absent (fresh clone)")
    return SHARED_DATA.resolve()
