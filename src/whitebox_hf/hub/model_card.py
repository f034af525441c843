"""Model cards built with `huggingface_hub.ModelCard` from a run's measured metrics (offline)."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

__all__ = ["image_classification_model_card", "TEMPLATE_PATH"]

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "templates" / "modelcard.md"


def image_classification_model_card(
    config,
    metrics: dict[str, float],
    dataset_name: str,
    dataset_id: str | None = None,
    hyperparameters: dict | None = None,
    training_summary: str = "",
    model_name: str | None = None,
    repo_path: str = "path/to/this/folder",
    eval_split: str = "test",
) -> ModelCard:
    """A card whose YAML `model-index` and results table hold ``metrics`` (e.g. ``{"accuracy": 0.91}``)."""
    if not metrics:
        raise ValueError("`metrics` must hold at least one measured value")
    model_name = model_name or f"{config.model_type}-{dataset_name}".lower().replace(" ", "-")
    eval_results = [
        EvalResult(
            task_type="image-classification",
            dataset_type=dataset_id or dataset_name,
            dataset_name=dataset_name,
            dataset_split=eval_split,
            metric_type=name,
            metric_name=name,
            metric_value=float(value),
        )
        for name, value in metrics.items()
    ]
    card_data = ModelCardData(
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=["whitebox_hf", config.model_type, "white-box", "image-classification"],
        datasets=[dataset_id or dataset_name],
        metrics=list(metrics),
        model_name=model_name,
        eval_results=eval_results,
    )
    architecture_fields = ("model_type", "block_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                           "patch_size", "image_size", "num_channels", "num_labels", "pooling")
    architecture = {k: getattr(config, k) for k in architecture_fields if hasattr(config, k)}
    description = (
        f"A `{config.model_type}` image classifier trained on {dataset_name}. "
        "Its layers are unrolled optimisation steps of the sparse rate reduction objective: multi-head subspace "
        "self-attention compresses the tokens and a sparse-coding step (ISTA or ODL) sparsifies them."
        if config.model_type == "crate"
        else f"A `{config.model_type}` image classifier trained on {dataset_name} (baseline)."
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_name=model_name,
        model_description=description,
        architecture=architecture,
        results={k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in metrics.items()},
        dataset_name=dataset_name,
        eval_split=eval_split,
        hyperparameters=hyperparameters or {},
        training_summary=training_summary,
        repo_path=repo_path,
    )
