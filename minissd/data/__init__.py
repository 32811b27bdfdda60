"""Datasets (VOC layout, built-in synthetic set), augmentation, batching."""

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
