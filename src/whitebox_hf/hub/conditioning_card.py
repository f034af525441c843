"""Model cards of the parts trained on top of the text-to-image base (book §8.7): a ControlNet
(``train_controlnet.py``) and a personalisation adapter (``train_personalization.py``). Every number comes from
the run's measured results; the card's `model-index` holds the measured metrics."""

from __future__ import annotations

import math

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .model_card import BOOK_CITATION, _portable, _portable_text

__all__ = ["conditioning_model_card"]


def conditioning_model_card(
    model_name: str,
    description: str,
    metrics: dict[str, float],
    facts: dict,
    base_model: str,
    dataset_name: str,
    command: str | None = None,
    usage: str | None = None,
    tags: tuple[str, ...] = (),
    metrics_note: str = "",
) -> ModelCard:
    """A card (``library_name: diffusers``) for a model trained on a frozen text-to-image base.

    Args:
        model_name: the card's title and model-index name.
        description: what the model is (first paragraph).
        metrics: measured metric name → value (listed in the model-index and the results table).
        facts: training facts (steps, minutes, parameters, settings) listed as a table.
        base_model: the base pipeline's folder (written portably, never as a local absolute path).
        dataset_name: the training data.
        command: the exact command that trained it.
        usage: a Python snippet.
        tags: Hub tags besides ``diffusers`` and ``text-to-image``.
        metrics_note: how the metrics were measured.

    Raises:
        ValueError: a metric is not a finite number.
    """
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"`metrics[{name!r}]` must be a finite number, got {value!r}")
    results = [EvalResult(task_type="text-to-image", dataset_type=dataset_name, dataset_name=dataset_name,
                          metric_type=name, metric_value=float(value)) for name, value in metrics.items()]
    data = ModelCardData(library_name="diffusers", tags=["diffusers", "text-to-image", *tags], model_name=model_name,
                         eval_results=results or None, pipeline_tag="text-to-image")
    lines = [f"# {model_name}", "", description, "",
             f"Base: `{_portable(base_model)}` (frozen). Training data: {dataset_name}.", "", "## Results", ""]
    if metrics:
        lines += ["| metric | value |", "|---|---|", *[f"| {name} | {value:.4g} |" for name, value in metrics.items()]]
    else:
        lines.append("No metric was measured by this run.")
    if metrics_note:
        lines += ["", metrics_note]
    lines += ["", "## Training", "", "| setting | value |", "|---|---|",
              *[f"| {key} | {value} |" for key, value in facts.items()]]
    if command:
        lines += ["", "```bash", _portable_text(command), "```"]
    if usage:
        lines += ["", "## How to use", "", "```python", usage.strip(), "```"]
    lines += ["", "## Citation", "", "```bibtex", BOOK_CITATION, "```", ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n" + "\n".join(lines))
