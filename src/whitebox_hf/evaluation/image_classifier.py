"""Accuracy of a saved image classifier on a held-out split, through the Auto classes (shared by
``whitebox-hf eval`` and ``examples/evaluate_image_classifier.py``).

```python
>>> from whitebox_hf.evaluation.image_classifier import evaluate_saved_image_classifier
>>> evaluate_saved_image_classifier("runs/crate/model", dataset="fashion-mnist")
{'accuracy': 0.86, 'num_examples': 10000, ...}
```
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..utils.validation import check_positive_int

__all__ = ["evaluate_saved_image_classifier", "load_saved_image_classifier", "predict_image_labels"]


def predict_image_labels(model, pixel_values: torch.Tensor, batch_size: int = 1000,
                         flip_averaging: bool = False) -> torch.Tensor:
    """The predicted class of each image: the argmax of ``model(pixel_values=...).logits``.

    Args:
        model: an image classifier (``logits`` of shape ``(batch, num_labels)``).
        pixel_values: preprocessed images ``(n, C, H, W)``, floating point, n ≥ 1.
        batch_size: images per forward pass.
        flip_averaging: average the class probabilities of each image and of its mirror image (left-right) before
            the argmax: test-time augmentation for a model trained with horizontal flips.

    Returns:
        ``(n,)`` int64 labels.
    """
    check_positive_int("batch_size", batch_size)
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
        raise ValueError("`pixel_values` must be a 4-d tensor (n, C, H, W), got "
                         f"{getattr(pixel_values, 'shape', type(pixel_values).__name__)}")
    if not pixel_values.is_floating_point():
        raise TypeError(f"`pixel_values` must be floating point (preprocessed images), got {pixel_values.dtype}")
    if len(pixel_values) == 0:
        raise ValueError("`pixel_values` holds no images")
    if not isinstance(flip_averaging, bool):
        raise TypeError(f"`flip_averaging` must be a bool, got {type(flip_averaging).__name__}")
    predictions = []
    with torch.inference_mode():
        for start in range(0, len(pixel_values), batch_size):
            batch = pixel_values[start:start + batch_size]
            probabilities = model(pixel_values=batch).logits.float().softmax(-1)
            if flip_averaging:
                probabilities = probabilities + model(pixel_values=batch.flip(-1)).logits.float().softmax(-1)
            predictions.append(probabilities.argmax(-1))
    return torch.cat(predictions)


def load_saved_image_classifier(model_dir, trust_remote_code: bool = False):
    """``(model in eval mode, image processor)`` from a folder written by the training script.

    Raises:
        FileNotFoundError: no ``config.json`` or ``preprocessor_config.json`` in ``model_dir``.
        OSError: weights only as pickles (``.bin``, refused), or a damaged file (naming it).
    """
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from .. import models  # noqa: F401  (registers the architectures with the Auto classes)

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} holds no config.json: pass a folder written by save_pretrained "
                                "(e.g. runs/<run>/model)")
    if not (model_dir / "preprocessor_config.json").is_file():
        raise FileNotFoundError(f"{model_dir} holds no preprocessor_config.json: save the image processor with the "
                                "model so that images are prepared as in training")
    from ..models.safe_loading import check_no_pickle_only, file_errors

    check_no_pickle_only(model_dir, "model_dir")
    with file_errors(model_dir, f"the image classifier in {model_dir}"):
        model = AutoModelForImageClassification.from_pretrained(model_dir, trust_remote_code=trust_remote_code,
                                                                use_safetensors=True).eval()
        processor = AutoImageProcessor.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    return model, processor


def evaluate_saved_image_classifier(model_dir, dataset: str = "fashion-mnist", split: str = "test",
                                    batch_size: int = 500, limit: int | None = None, data_dir: str | None = None,
                                    progress: bool = False, model=None, processor=None) -> dict:
    """Top-1 accuracy of the classifier saved in ``model_dir`` on ``split`` of ``dataset``.

    Images go through the saved image processor exactly as a user's would (PIL image in, logits out).

    Args:
        model_dir: folder with config.json, weights and preprocessor_config.json.
        dataset: a name of `whitebox_hf.data.DATASETS` (``fashion-mnist``, ``digits``).
        split: the split to measure (default ``test``).
        batch_size: images per forward pass.
        limit: measure only the first ``limit`` images (a positive integer; None: all).
        data_dir: a folder holding the original data files (Fashion-MNIST ``*-ubyte.gz``).
        progress: show a progress bar.
        model, processor: already loaded objects (skip loading ``model_dir``).

    Returns:
        ``{"accuracy", "num_examples", "dataset", "split", "model_class"}``.

    Raises:
        ValueError: ``batch_size`` or ``limit`` not a positive integer, an unknown ``dataset`` or ``split``.
        TypeError: ``split`` not a string.
        OSError: see `load_saved_image_classifier`.
    """
    from ..data import load_image_dataset

    check_positive_int("batch_size", batch_size)
    if limit is not None:
        # `--limit -1` must not measure "-1 images", nor `--limit 0` report an accuracy of nothing.
        check_positive_int("limit", limit)
    if not isinstance(split, str):
        raise TypeError(f"`split` must be a split name (str), got {type(split).__name__}")
    # The data first: a bad `dataset` or `split` is reported before the model is loaded.
    data, info = load_image_dataset(dataset, data_dir)
    if split not in data:
        raise ValueError(f"`split` must be one of {sorted(data)}, got {split!r}")
    if model is None or processor is None:
        model, processor = load_saved_image_classifier(model_dir)
    part = data[split]
    total = len(part) if limit is None else min(limit, len(part))
    if total == 0:
        raise ValueError(f"`split` {split!r} of {info['name']} holds no images")
    starts = range(0, total, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"eval {info['name']} {split}", unit="batch")
    correct = 0
    with torch.inference_mode():
        for start in starts:
            batch = part[start:min(start + batch_size, total)]
            pixels = processor(images=batch["image"], return_tensors="pt")["pixel_values"]
            predictions = model(pixel_values=pixels).logits.argmax(-1)
            correct += (predictions == torch.tensor(batch["label"])).sum().item()
    return {"accuracy": correct / total, "num_examples": total, "dataset": info["name"], "split": split,
            "model_class": type(model).__name__}
