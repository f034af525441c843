"""Edge agreement of a controlled generation: F1 between the control edges and the Canny edges of the generated
image, each edge pixel allowed to miss by ``tolerance`` pixels (the boundary F-measure of BSDS-style benchmarks,
with a square tolerance window instead of a bipartite matching).

```python
>>> from whitebox_hf.evaluation.edges import edge_agreement
>>> edge_agreement(control_edges, generated_images)["f1"]   # bool (n, H, W), uint8 (n, H, W, 3)
```
"""

from __future__ import annotations

import numpy as np

from ..pipelines.control import canny_edges

__all__ = ["edge_agreement", "edge_f1"]


def _edge_maps(name: str, value) -> np.ndarray:
    import torch

    if isinstance(value, torch.Tensor):
        value = value.cpu().numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(f"`{name}` must be a bool (n, H, W) array or tensor, got {type(value).__name__}")
    if value.dtype != np.bool_:
        raise ValueError(f"`{name}` must be a bool edge map, got dtype {value.dtype}")
    if value.ndim == 2:
        value = value[None]
    if value.ndim != 3 or value.shape[0] == 0:
        raise ValueError(f"`{name}` must have shape (n, H, W) or (H, W), got {value.shape}")
    return value


def edge_f1(reference, predicted, tolerance: int = 1) -> dict:
    """Precision, recall and F1 of ``predicted`` edges against ``reference`` edges.

    A predicted edge pixel is correct when a reference edge pixel lies within ``tolerance`` pixels of it
    (Chebyshev distance: a (2·tolerance + 1)² window); a reference pixel is recovered when a predicted one lies
    that close. Counts are pooled over the batch (micro average), so images with few edges weigh little. An image
    pair without any edge on either side agrees perfectly (precision = recall = 1); no edge on one side only
    scores 0 on that side.

    Args:
        reference, predicted: bool ``(n, H, W)`` (or ``(H, W)``) edge maps of the same shape.
        tolerance: allowed displacement in pixels (≥ 0).

    Returns:
        ``precision``, ``recall``, ``f1`` (pooled), ``f1_per_image`` (list), ``num_images``.
    """
    from scipy.ndimage import binary_dilation

    reference, predicted = _edge_maps("reference", reference), _edge_maps("predicted", predicted)
    if reference.shape != predicted.shape:
        raise ValueError(f"`predicted` must have the shape of `reference` {reference.shape}, got {predicted.shape}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
        raise ValueError(f"`tolerance` must be a non-negative integer (pixels), got {tolerance!r}")
    window = np.ones((1, 2 * tolerance + 1, 2 * tolerance + 1), dtype=bool)  # no reach across the batch axis
    near_reference = binary_dilation(reference, structure=window) if tolerance else reference
    near_predicted = binary_dilation(predicted, structure=window) if tolerance else predicted
    matched_predicted = (predicted & near_reference).sum(axis=(1, 2))
    matched_reference = (reference & near_predicted).sum(axis=(1, 2))
    num_predicted, num_reference = predicted.sum(axis=(1, 2)), reference.sum(axis=(1, 2))

    def ratio(matched, total):
        return np.where(total > 0, matched / np.maximum(total, 1), 1.0)

    def f1(p, r):
        return np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)

    precision_i = ratio(matched_predicted, num_predicted)
    recall_i = ratio(matched_reference, num_reference)
    # Pooled counts; an empty side counts as perfect only when both sides are empty everywhere.
    precision = float(ratio(matched_predicted.sum(), num_predicted.sum()))
    recall = float(ratio(matched_reference.sum(), num_reference.sum()))
    if num_predicted.sum() == 0 and num_reference.sum() > 0:
        precision = 0.0
    if num_reference.sum() == 0 and num_predicted.sum() > 0:
        recall = 0.0
    per_image = f1(np.where((num_predicted == 0) & (num_reference > 0), 0.0, precision_i),
                   np.where((num_reference == 0) & (num_predicted > 0), 0.0, recall_i))
    return {"precision": precision, "recall": recall, "f1": float(f1(np.float64(precision), np.float64(recall))),
            "f1_per_image": [float(v) for v in per_image], "num_images": len(reference)}


def edge_agreement(control_edges, generated_images, tolerance: int = 1, sigma: float = 1.0) -> dict:
    """`edge_f1` of the Canny edges (`canny_edges` with ``sigma``) of ``generated_images`` (uint8 ``(n, H, W, 3)``
    or RGB PIL images) against ``control_edges`` (bool ``(n, H, W)``: the edges the generation was conditioned on).
    """
    return edge_f1(control_edges, canny_edges(generated_images, sigma=sigma), tolerance=tolerance)
