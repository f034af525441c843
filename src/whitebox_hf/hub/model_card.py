"""Model cards built with `huggingface_hub.ModelCard` from a run's measured metrics (offline).

`image_classification_model_card` and `causal_lm_model_card` fill the same template
(``whitebox_hf/templates/modelcard.md``): a YAML header with a `model-index` holding the metrics, the
architecture, the results, the training recipe and a usage snippet. Every number comes from the caller (the
training script passes what it measured), never from the template.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

__all__ = ["causal_lm_model_card", "image_classification_model_card", "TEMPLATE_PATH"]

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "templates" / "modelcard.md"

BOOK_SOURCE = ("The architecture follows *Learning Deep Representations of Data Distributions*, Chapter 8.")
BASELINE_SOURCE = "The architecture is the transformers baseline, trained with the same recipe as the white-box models."

IMAGE_USAGE = '''```python
import whitebox_hf  # registers the architecture with the Auto classes
from transformers import AutoImageProcessor, AutoModelForImageClassification

processor = AutoImageProcessor.from_pretrained("{repo_path}")
model = AutoModelForImageClassification.from_pretrained("{repo_path}")
logits = model(**processor(images=image, return_tensors="pt")).logits
```'''

CAUSAL_LM_USAGE = '''```python
import whitebox_hf  # registers the architecture with the Auto classes
from transformers import pipeline

generator = pipeline("text-generation", model="{repo_path}")
print(generator("The :mod:`os` module", max_new_tokens=50, do_sample=False)[0]["generated_text"])
```'''

# What each language-model family is, for the card's first paragraph: (name with its article, what its
# layers do).
CAUSAL_LM_DESCRIPTIONS = {
    "causal_crate": (
        "A causal CRATE language model",
        "Each layer compresses the tokens with causal multi-head subspace self-attention (one projection shared "
        "by query, key and value) and sparsifies them with one ISTA step against a learned dictionary.",
    ),
    "causal_crate/odl": (
        "A causal CRATE-α language model",
        "Each layer applies causal multi-head subspace self-attention, then a residual overcomplete-dictionary "
        "sparse-coding block (ODL).",
    ),
    "aot/mssa": (
        "An attention-only transformer (AoT-MSSA)",
        "Every layer is a residual causal multi-head subspace self-attention: a compression step, with no MLP.",
    ),
    "aot/mhsa": (
        "An attention-only transformer (AoT-MHSA)",
        "GPT-2 blocks with their MLP removed: the softmax-attention control of AoT-MSSA.",
    ),
    "tost": (
        "A causal Token Statistics Transformer (ToST)",
        "Token statistics self-attention compresses the tokens in time linear in the context length, followed "
        "by an MLP; generation keeps a constant-size recurrent state.",
    ),
    "gpt2": ("A GPT-2 language model", "The baseline: transformers' `GPT2LMHeadModel`."),
}


def _family(config) -> str:
    variant = getattr(config, "attention_type", None) or (
        "odl" if getattr(config, "block_type", None) == "odl" else None
    )
    key = f"{config.model_type}/{variant}" if variant else config.model_type
    return key if key in CAUSAL_LM_DESCRIPTIONS else config.model_type


def _build_card(config, metrics: dict, task: str, dataset_name: str, dataset_id: str | None, eval_split: str,
                model_name: str, description: str, architecture_fields: tuple[str, ...], hyperparameters: dict | None,
                training_summary: str, usage: str, architecture_source: str, extra_tags: tuple[str, ...] = ()):
    if not metrics:
        raise ValueError("`metrics` must hold at least one measured value")
    eval_results = [
        EvalResult(
            task_type=task,
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
        pipeline_tag=task,
        tags=["whitebox_hf", config.model_type, *extra_tags, task],
        datasets=[dataset_id or dataset_name],
        metrics=list(metrics),
        model_name=model_name,
        eval_results=eval_results,
    )
    architecture = {k: getattr(config, k) for k in architecture_fields if hasattr(config, k)}
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
        usage=usage,
        architecture_source=architecture_source,
    )


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
    """A card whose YAML `model-index` and results table hold ``metrics`` (e.g. ``{"accuracy": 0.91}``).

    Raises:
        ValueError: ``metrics`` is empty.
    """
    model_name = model_name or f"{config.model_type}-{dataset_name}".lower().replace(" ", "-")
    white_box = config.model_type == "crate"
    description = (
        f"A `{config.model_type}` image classifier trained on {dataset_name}. "
        "Its layers are unrolled optimisation steps of the sparse rate reduction objective: multi-head subspace "
        "self-attention compresses the tokens and a sparse-coding step (ISTA or ODL) sparsifies them."
        if white_box
        else f"A `{config.model_type}` image classifier trained on {dataset_name} (baseline)."
    )
    return _build_card(
        config, metrics, "image-classification", dataset_name, dataset_id, eval_split, model_name, description,
        ("model_type", "block_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size",
         "image_size", "num_channels", "num_labels", "pooling"),
        hyperparameters, training_summary, IMAGE_USAGE.format(repo_path=repo_path),
        BOOK_SOURCE if white_box else BASELINE_SOURCE, extra_tags=("white-box",) if white_box else (),
    )


def causal_lm_model_card(
    config,
    metrics: dict[str, float],
    dataset_name: str,
    dataset_id: str | None = None,
    hyperparameters: dict | None = None,
    training_summary: str = "",
    model_name: str | None = None,
    repo_path: str = "path/to/this/folder",
    eval_split: str = "validation",
) -> ModelCard:
    """A card for a causal language model (any whitebox_hf family, or the GPT-2 baseline) whose YAML
    `model-index` and results table hold ``metrics`` (e.g. ``{"loss": 3.1, "perplexity": 22.2}``, measured
    on ``eval_split``).

    Raises:
        ValueError: ``metrics`` is empty.
    """
    family = _family(config)
    model_name = model_name or f"{family.replace('/', '-')}-{dataset_name}".lower().replace(" ", "-")
    white_box = family not in ("gpt2", "aot/mhsa")
    name, detail = CAUSAL_LM_DESCRIPTIONS.get(family, (f"A `{config.model_type}` language model", ""))
    description = f"{name} trained from scratch on {dataset_name}. {detail}".strip()
    return _build_card(
        config, metrics, "text-generation", dataset_name, dataset_id, eval_split, model_name, description,
        ("model_type", "block_type", "attention_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
         "max_position_embeddings", "vocab_size", "final_layer_norm", "tie_word_embeddings"),
        hyperparameters, training_summary, CAUSAL_LM_USAGE.format(repo_path=repo_path),
        BASELINE_SOURCE if config.model_type == "gpt2" else BOOK_SOURCE,
        extra_tags=("white-box",) if white_box else (),
    )
