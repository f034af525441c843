"""Shared pieces of the training scripts and the demo: which data set, which model, which processor."""

from __future__ import annotations

import numpy as np
from transformers import ViTConfig, ViTForImageClassification

from .data import FASHION_MNIST_CLASSES, load_fashion_mnist, load_sklearn_digits
from .models.crate import CrateConfig, CrateForImageClassification, CrateImageProcessor

__all__ = ["DATASETS", "load_image_dataset", "build_image_classifier", "build_image_processor"]

# Per-channel statistics of the training split (Fashion-MNIST: the commonly quoted 0.2860 / 0.3530).
DATASETS = {
    "fashion-mnist": {"name": "Fashion-MNIST", "hub_id": "zalando-datasets/fashion_mnist",
                      "class_names": FASHION_MNIST_CLASSES, "image_mean": [0.2860], "image_std": [0.3530], "horizontal_flip_ok": True},
    "digits": {"name": "sklearn digits (16x16)", "hub_id": "sklearn-digits",
               "class_names": [str(i) for i in range(10)], "image_mean": None, "image_std": None,
               "horizontal_flip_ok": False},  # a mirrored digit is a different (or no) digit
}


def load_image_dataset(name: str, data_dir: str | None = None, accelerator=None):
    """``(DatasetDict, info)`` for ``name`` in `DATASETS`. With an Accelerator, the main process prepares
    the cache first so that several processes never write it at once."""
    if name not in DATASETS:
        raise ValueError(f"`dataset` must be one of {sorted(DATASETS)}, got {name!r}")
    info = dict(DATASETS[name])
    loader = (lambda: load_fashion_mnist(data_dir=data_dir)) if name == "fashion-mnist" else load_sklearn_digits
    if accelerator is not None:
        with accelerator.main_process_first():
            dataset = loader()
    else:
        dataset = loader()
    if info["image_mean"] is None:
        pixels = np.stack([np.asarray(image) for image in dataset["train"]["image"]]).astype(np.float64) / 255.0
        info["image_mean"], info["image_std"] = [float(pixels.mean())], [float(pixels.std())]
    return dataset, info


def build_image_classifier(args: dict, image_size: int, num_channels: int, class_names: list[str]):
    """A freshly initialised `CrateForImageClassification` or `ViTForImageClassification` from the training
    arguments (`model_type`, `hidden_size`, `num_hidden_layers`, `num_attention_heads`, `patch_size`, ...)."""
    labels = dict(
        num_labels=len(class_names),
        id2label=dict(enumerate(class_names)),
        label2id={name: i for i, name in enumerate(class_names)},
    )
    shape = dict(
        hidden_size=args["hidden_size"],
        num_hidden_layers=args["num_hidden_layers"],
        num_attention_heads=args["num_attention_heads"],
        image_size=image_size,
        patch_size=args["patch_size"],
        num_channels=num_channels,
    )
    if args["model_type"] == "crate":
        if args.get("preset"):
            config = CrateConfig.from_preset(args["preset"], **shape, **labels)
        else:
            alpha = args["block_type"] == "odl"
            config = CrateConfig(
                **shape, **labels,
                block_type=args["block_type"],
                pooling=args.get("pooling", "cls"),
                patch_embedding_type="conv" if alpha else "linear",
                attention_output_bias=not alpha,
                layer_norm_eps=1e-6 if alpha else 1e-5,
                position_embedding_init_std=0.02 if alpha else 1.0,
            )
        return CrateForImageClassification(config)
    if args["model_type"] == "vit":
        config = ViTConfig(**shape, **labels, intermediate_size=args.get("mlp_ratio", 4) * args["hidden_size"],
                           layer_norm_eps=1e-6)
        return ViTForImageClassification(config)
    raise ValueError(f"`model_type` must be 'crate' or 'vit', got {args['model_type']!r}")


def build_image_processor(image_size: int, image_mean, image_std) -> CrateImageProcessor:
    """The preprocessing the model was trained with: to the model's channels, resize, rescale, normalise."""
    return CrateImageProcessor(
        num_channels=len(image_mean), do_resize=True, size={"height": image_size, "width": image_size},
        image_mean=list(image_mean), image_std=list(image_std),
    )
