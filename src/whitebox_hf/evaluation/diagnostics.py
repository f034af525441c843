"""Layer-by-layer white-box diagnostics: how sparse and how compressed the tokens are after each layer.

CRATE is derived by unrolling the optimisation of the sparse rate reduction objective (book Ch. 5, §8.4.1):
each layer should lower the coding rate of the tokens (compression, MSSA) and make them sparse (ISTA).
`layerwise_diagnostics` measures both on the output of every layer, so a trained CRATE can be compared
with a ViT trained the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from ..nn import coding_rate
from ..utils.validation import check_positive_int
from ._utils import check_pixel_batch, evaluation_mode, model_device
from .features import get_backbone

__all__ = ["layerwise_diagnostics", "diagnostics_table", "plot_diagnostics"]

_ROW_KEYS = ("layer", "sparsity", "coding_rate")


def layerwise_diagnostics(
    model: nn.Module, pixel_values: torch.Tensor, eps: float = 0.5, batch_size: int = 64
) -> list[dict[str, float]]:
    """Sparsity and coding rate of the output tokens ``Z^ℓ`` of every layer ``ℓ = 1..L``.

    - ``sparsity``: fraction of entries of ``Z^ℓ`` (all images, all tokens including the class token, all
      channels) that are exactly zero. For CRATE with ISTA blocks ``Z^ℓ`` are the non-negative ReLU sparse
      codes; residual-stream models (CRATE-α, ViT) are almost never exactly zero.
    - ``coding_rate``: ``R_ε(Z^ℓ_i) = ½ logdet(I + d/(n ε²) Z^ℓ_iᵀ Z^ℓ_i)`` of each image's raw tokens
      ``Z^ℓ_i ∈ R^{n×d}`` (rows are the ``n = 1 + h·w`` tokens, class token included; no normalisation, so
      the value also grows with the token scale), averaged over the images (`whitebox_hf.nn.rate_distortion`).

    Args:
        model (`nn.Module`): a CRATE or ViT model (base or image-classification), run in eval mode under
            `torch.no_grad()`.
        pixel_values (`torch.Tensor` of shape ``(batch, C, H, W)``): model-ready floating-point images.
        eps (`float`, *optional*, defaults to 0.5): the distortion ``ε`` of the coding rate.
        batch_size (`int`, *optional*, defaults to 64): images per forward pass.

    Returns:
        `list[dict]`: one ``{"layer": ℓ, "sparsity": float, "coding_rate": float}`` per layer, ``ℓ = 1..L``.
    """
    backbone = get_backbone(model)
    check_pixel_batch(pixel_values)
    if not pixel_values.is_floating_point():
        raise TypeError(f"`pixel_values` must be model-ready floating-point images, got dtype {pixel_values.dtype}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"`eps` must be a positive number, got {eps!r}")
    check_positive_int("batch_size", batch_size)

    device = model_device(backbone)
    zeros: list[int] = []
    entries: list[int] = []
    rate_sums: list[float] = []
    with evaluation_mode(backbone):
        for chunk in pixel_values.split(batch_size):
            outputs = backbone(pixel_values=chunk.to(device), output_hidden_states=True, return_dict=True)
            layer_outputs = outputs.hidden_states[1:]  # drop the embedding output Z^0
            if not zeros:
                num_layers = len(layer_outputs)
                zeros, entries, rate_sums = [0] * num_layers, [0] * num_layers, [0.0] * num_layers
            for index, tokens in enumerate(layer_outputs):
                zeros[index] += int((tokens == 0).sum())
                entries[index] += tokens.numel()
                rate_sums[index] += float(coding_rate(tokens, eps).sum())
    num_images = pixel_values.shape[0]
    return [
        {"layer": i + 1, "sparsity": zeros[i] / entries[i], "coding_rate": rate_sums[i] / num_images}
        for i in range(len(zeros))
    ]


def _check_rows(rows, name: str) -> list[Mapping]:
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence):
        raise TypeError(f"`{name}` must be a list of dicts as returned by `layerwise_diagnostics`")
    if not rows:
        raise ValueError(f"`{name}` must not be empty")
    for row in rows:
        if not isinstance(row, Mapping) or any(key not in row for key in _ROW_KEYS):
            raise ValueError(f"every entry of `{name}` must be a dict with keys {_ROW_KEYS}, got {row!r}")
    return list(rows)


def diagnostics_table(rows: Sequence[Mapping[str, float]]) -> str:
    """A markdown table (layer | sparsity | coding rate) of `layerwise_diagnostics` output."""
    rows = _check_rows(rows, "rows")
    lines = ["| layer | sparsity | coding rate |", "|---:|---:|---:|"]
    lines += [f"| {int(r['layer'])} | {float(r['sparsity']):.3f} | {float(r['coding_rate']):.2f} |" for r in rows]
    return "\n".join(lines) + "\n"


def plot_diagnostics(rows_by_model: Mapping[str, Sequence[Mapping[str, float]]], path: str | Path) -> Path:
    """Write a PNG with two panels, sparsity per layer and coding rate per layer, one line per model.

    Args:
        rows_by_model (`dict[str, list[dict]]`): model name → `layerwise_diagnostics` output.
        path (`str` or `Path`): output PNG; parent folders are created.

    Returns:
        `Path`: the written file.
    """
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state

    if not isinstance(rows_by_model, Mapping):
        raise TypeError(f"`rows_by_model` must be a dict of model name → rows, got {type(rows_by_model).__name__}")
    if not rows_by_model:
        raise ValueError("`rows_by_model` must not be empty")
    checked = {str(name): _check_rows(rows, f"rows_by_model[{name!r}]") for name, rows in rows_by_model.items()}

    figure = Figure(figsize=(10, 4))
    sparsity_axis, rate_axis = figure.subplots(1, 2)
    for name, rows in checked.items():
        layers = [int(r["layer"]) for r in rows]
        sparsity_axis.plot(layers, [float(r["sparsity"]) for r in rows], marker="o", label=name)
        rate_axis.plot(layers, [float(r["coding_rate"]) for r in rows], marker="o", label=name)
    sparsity_axis.set(title="Sparsity of layer output", xlabel="layer", ylabel="fraction of zeros", ylim=(-0.02, 1.02))
    rate_axis.set(title="Coding rate of layer output", xlabel="layer", ylabel="R_ε(Z) (nats)")
    for axis in (sparsity_axis, rate_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path
