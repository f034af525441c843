"""Real data sets, loaded offline as `datasets.DatasetDict`."""

from .digits import load_sklearn_digits
from .fashion_mnist import (
    FASHION_MNIST_CLASSES,
    DataUnavailableError,
    default_cache_dir,
    fetch_fashion_mnist,
    load_fashion_mnist,
    read_idx_images,
    read_idx_labels,
)
from .python_docs import fetch_python_docs, load_python_docs
from .image_datasets import DATASETS, dataset_hub_id, load_image_dataset, load_image_tensors, normalise_images
from .tensors import dataset_to_tensors

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "DataUnavailableError",
    "dataset_hub_id",
    "dataset_to_tensors",
    "default_cache_dir",
    "fetch_fashion_mnist",
    "fetch_python_docs",
    "load_fashion_mnist",
    "load_image_dataset",
    "load_image_tensors",
    "load_python_docs",
    "load_sklearn_digits",
    "normalise_images",
    "read_idx_images",
    "read_idx_labels",
]

from .augmentation import AugmentedTensorDataset, EpochPermutationSampler, image_classification_transforms

__all__ += ["AugmentedTensorDataset", "EpochPermutationSampler", "image_classification_transforms"]

from .language_modeling import PackedTokenBlocks, tokenize_and_concatenate

__all__ += ["PackedTokenBlocks", "tokenize_and_concatenate"]

from .multicrop import FASHION_MNIST_MEAN, FASHION_MNIST_STD, MultiCropTransform, multicrop_collate

__all__ += ["FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "MultiCropTransform", "multicrop_collate"]

from .openclipart import load_openclipart, make_caption, parse_openclipart_metadata, split_of

__all__ += ["load_openclipart", "make_caption", "parse_openclipart_metadata", "split_of"]
