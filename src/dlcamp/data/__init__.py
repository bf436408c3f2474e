"""Offline datasets (verified by SHA-256) and fast in-memory loaders."""

from dlcamp.data.datasets import DATASETS, ImageSet, get_spec, list_datasets, load_dataset
from dlcamp.data.fetch import fetch_fashion_mnist
from dlcamp.data.loader import TensorLoader, make_loaders

__all__ = ["DATASETS", "ImageSet", "TensorLoader", "fetch_fashion_mnist", "get_spec",
           "list_datasets", "load_dataset", "make_loaders"]
