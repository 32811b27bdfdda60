"""Evaluation with the PASCAL VOC devkit semantics."""
