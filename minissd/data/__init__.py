"""Datasets (VOC layout, built-in synthetic set), augmentation, batching."""
