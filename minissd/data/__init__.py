"""Datasets (VOC layout, built-in synthetic set), augmentation, batching."""

from minissd.data.loader import Batch, BatchShapeError, DataLoader, DataLoaderError
from minissd.data.synthetic import SYNTHETIC_CLASSES, make_synthetic_voc
from minissd.data.transforms import VGG_MEAN, AugmentationConfig, SSDAugmentation, SSDTransformEval
from minissd.data.voc import (
    VOC_CLASSES,
    Annotation,
    ConcatDataset,
    DataReport,
    Sample,
    VOCDataError,
    VOCDataset,
    VOCDataWarning,
    VOCFormatError,
    VOCImageError,
)

__all__ = [
    "SYNTHETIC_CLASSES",
    "VGG_MEAN",
    "AugmentationConfig",
    "Batch",
    "BatchShapeError",
    "DataLoader",
    "DataLoaderError",
    "SSDAugmentation",
    "SSDTransformEval",
    "make_synthetic_voc",
    "VOC_CLASSES",
    "Annotation",
    "ConcatDataset",
    "DataReport",
    "Sample",
    "VOCDataError",
    "VOCDataset",
    "VOCDataWarning",
    "VOCFormatError",
    "VOCImageError",
]
