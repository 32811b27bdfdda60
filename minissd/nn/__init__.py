"""Layers and containers on top of ``minissd.autograd``."""

from . import init
from .layers import BatchNorm2d, Conv2d, L2Norm, MaxPool2d, ReLU
from .module import Module, Parameter, Sequential
from .state import load_npz, load_weights, save_npz, save_weights

__all__ = [
    "Module", "Parameter", "Sequential", "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "L2Norm",
    "init",
    "save_npz", "load_npz", "save_weights", "load_weights",
]
