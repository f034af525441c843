"""Model cards built with `huggingface_hub.ModelCard` from a run's measured metrics (offline).

`image_classification_model_card`, `causal_lm_model_card` and `representation_model_card` fill a template: a YAML
header with a `model-index` holding the metrics, what the model is and which section of the book it implements,
intended use and limits, the architecture, the results, the training data, recipe and exact command, a usage
snippet and the citation. Every number comes from the caller (the training script passes what it measured) or,
with `model_card_from_folder` / `write_model_card` (used by ``whitebox-hf card``), from the run's metrics file
(``metrics.json`` / ``evaluation.json``), never from the template.

Templates: the per-task templates of the repository's ``model_cards/templates/`` (``image-classification.md``,
``text-generation.md``, ``image-feature-extraction.md``) when the package runs from a checkout, else the generic
``whitebox_hf/templates/modelcard.md`` shipped in the wheel; ``template_path=`` picks any other Jinja file.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

__all__ = [
    "BOOK_CITATION",
    "METRICS_FILES",
    "TEMPLATES_DIR",
    "TEMPLATE_PATH",
    "causal_lm_model_card",
    "image_classification_model_card",
    "model_card_from_folder",
    "representation_model_card",
    "template_for_task",
    "write_model_card",
]

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "templates" / "modelcard.md"
# model_cards/templates of a source checkout (absent from an installed wheel).
TEMPLATES_DIR = Path(__file__).resolve().parents[3] / "model_cards" / "templates"

BOOK_CITATION = """@book{buchanan2025learning,
  title     = {Learning Deep Representations of Data Distributions},
  author    = {Buchanan, Sam and Pai, Druv and Wang, Peng and Ma, Yi},
  year      = {2025},
  url       = {https://ma-lab-berkeley.github.io/deep-representation-learning-book/}
}"""

INTENDED_USE = {
    "image-classification": (
        "A small research model: it shows how a white-box network's layers compress and sparsify image tokens, "
        "and is a baseline for comparisons on the data set it was trained on. It is not meant for images unlike "
        "its training data (other resolutions, colour photographs, other classes) nor for any decision about "
        "people."
    ),
    "text-generation": (
        "A small research language model trained from scratch on a narrow corpus: use it to study white-box "
        "attention and sparse coding in language modelling, or as a baseline. Its text is often wrong or "
        "repetitive; do not use it to produce facts, advice or user-facing content."
    ),
    "image-feature-extraction": (
        "A backbone trained without labels; its features are for k-NN / linear-probe evaluation and for studying "
        "what self-supervised white-box networks learn. It is small and trained on a small data set, so its "
        "features do not transfer to unrelated images."
    ),
}

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
                training_summary: str, usage: str, architecture_source: str, extra_tags: tuple[str, ...] = (),
                command: str | None = None, book_section: str | None = None, intended_use: str | None = None,
                template_path=None, metrics_source: str | None = None):
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
        template_path=str(template_path or template_for_task(task)),
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
        command=command,
        book_section=book_section,
        intended_use=intended_use or INTENDED_USE.get(task, ""),
        citation=BOOK_CITATION,
        dataset_id=dataset_id,
        metrics_source=metrics_source,
    )


def template_for_task(task: str) -> Path:
    """``model_cards/templates/<task>.md`` of a source checkout if present, else the packaged template."""
    candidate = TEMPLATES_DIR / f"{task}.md"
    return candidate if candidate.is_file() else TEMPLATE_PATH


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
    command: str | None = None,
    template_path=None,
    metrics_source: str | None = None,
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
        command=command, template_path=template_path, metrics_source=metrics_source,
        book_section=_book_section(config) if white_box else None,
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
    command: str | None = None,
    template_path=None,
    metrics_source: str | None = None,
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
        command=command, template_path=template_path, metrics_source=metrics_source,
        book_section=_book_section(config) if white_box else None,
    )


def _book_section(config) -> str | None:
    if getattr(config, "block_type", None) == "odl" and f"{config.model_type}/odl" in BOOK_SECTIONS:
        return BOOK_SECTIONS[f"{config.model_type}/odl"]
    return BOOK_SECTIONS.get(config.model_type)


# Which part of the book each white-box family implements (for the card's first paragraph).
BOOK_SECTIONS = {
    "crate": "§8.4.1 (CRATE)",
    "crate/odl": "the CRATE-α section of Chapter 8 (overcomplete dictionary learning blocks)",
    "causal_crate": "§8.4 (causal CRATE language model, Table 8.18)",
    "tost": "§8.4 (Token Statistics Transformer, Table 8.24)",
    "aot": "Chapter 8 (attention-only transformer: compression without sparsification)",
}

REPRESENTATION_USAGE = '''```python
import whitebox_hf  # registers the architecture with the Auto classes
from transformers import AutoImageProcessor, AutoModel

processor = AutoImageProcessor.from_pretrained("{repo_path}")
model = AutoModel.from_pretrained("{repo_path}")
features = model(**processor(images=image, return_tensors="pt")).pooler_output
```'''

REPRESENTATION_METHODS = {
    "simdino": ("SimDINO", "§8.2-§8.3 (self-supervised learning with a coding-rate regulariser)"),
    "dino": ("DINO", None),
    "mae": ("masked autoencoding (CRATE-MAE / ViT-MAE)", "Chapter 8 (CRATE-MAE)"),
}


def representation_model_card(
    config,
    metrics: dict[str, float],
    dataset_name: str,
    method: str,
    dataset_id: str | None = None,
    hyperparameters: dict | None = None,
    training_summary: str = "",
    model_name: str | None = None,
    repo_path: str = "path/to/this/folder",
    eval_split: str = "test",
    command: str | None = None,
    template_path=None,
    metrics_source: str | None = None,
) -> ModelCard:
    """A card for a backbone trained without labels (SimDINO / DINO / MAE), whose `model-index` holds the
    frozen-feature metrics (e.g. ``{"knn20_accuracy": 0.8, "linear_probe_accuracy": 0.83}``).

    Raises:
        ValueError: ``metrics`` is empty.
    """
    method_name, section = REPRESENTATION_METHODS.get(method.lower(), (method, None))
    model_name = model_name or f"{config.model_type}-{method}-{dataset_name}".lower().replace(" ", "-")
    white_box = config.model_type == "crate"
    description = (f"A `{config.model_type}` backbone trained with {method_name} on {dataset_name} without labels. "
                   "Its quality is measured on frozen features: k-NN and linear-probe accuracy on the test split.")
    return _build_card(
        config, metrics, "image-feature-extraction", dataset_name, dataset_id, eval_split, model_name, description,
        ("model_type", "block_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size",
         "image_size", "num_channels", "pooling", "mask_ratio"),
        hyperparameters, training_summary, REPRESENTATION_USAGE.format(repo_path=repo_path),
        BOOK_SOURCE if white_box else BASELINE_SOURCE, extra_tags=(method.lower(), *(("white-box",) if white_box else ())),
        command=command, template_path=template_path, metrics_source=metrics_source,
        book_section=section if white_box else None,
    )


# Files a training run writes its measured numbers to, searched in the model folder, then its parent.
METRICS_FILES = ("metrics.json", "evaluation.json")

# Card metric name -> keys it may have in a metrics file, per task.
METRIC_KEYS = {
    "image-classification": {"accuracy": ("accuracy", "test_accuracy", "eval_accuracy")},
    "text-generation": {"loss": ("loss", "val_loss", "eval_loss"),
                        "perplexity": ("perplexity", "val_perplexity", "eval_perplexity")},
    "image-feature-extraction": {"knn20_accuracy": ("knn20_accuracy", "eval_knn20_accuracy"),
                                 "linear_probe_accuracy": ("linear_probe_accuracy", "eval_linear_probe_accuracy"),
                                 "reconstruction_loss": ("reconstruction_loss",)},
}


def _task_of(architectures: list[str]) -> str:
    name = architectures[0] if architectures else ""
    if name.endswith("ForImageClassification"):
        return "image-classification"
    if name.endswith(("ForCausalLM", "LMHeadModel")):
        return "text-generation"
    return "image-feature-extraction"  # backbones, masked-image-modeling and pre-training heads


def _find_metrics_file(model_dir: Path) -> Path:
    for folder in (model_dir, model_dir.parent):
        for name in METRICS_FILES:
            if (folder / name).is_file():
                return folder / name
    raise FileNotFoundError(f"no {' or '.join(METRICS_FILES)} in {model_dir} or {model_dir.parent}; pass the run's "
                            "metrics file (--metrics PATH)")


def _dataset_id(dataset_name: str) -> str | None:
    try:
        from ..training_setup import DATASETS
    except ImportError:  # pragma: no cover
        return None
    for key, info in DATASETS.items():
        if dataset_name in (key, info["name"]):
            return info["hub_id"]
    return None


def model_card_from_folder(model_dir, metrics: dict | None = None, metrics_file=None, dataset_name: str | None = None,
                           dataset_id: str | None = None, command: str | None = None, template_path=None,
                           model_name: str | None = None, repo_path: str | None = None) -> ModelCard:
    """The card of a saved model, its results read from the run's metrics (never typed by hand).

    Args:
        model_dir: a folder written by ``save_pretrained`` (its config decides the task and the template).
        metrics: the measured numbers, as a training script holds them; default: read ``metrics_file``.
        metrics_file: default ``metrics.json`` / ``evaluation.json`` in ``model_dir`` or its parent.
        dataset_name: default the metrics' ``dataset`` entry.
        command: the exact training command; default the metrics' ``command`` entry.
        template_path: a Jinja template; default `template_for_task`.

    Raises:
        FileNotFoundError: no config.json, or no metrics file.
        ValueError: the metrics hold none of the numbers the task reports, or no data set name is known.
    """
    import json

    from transformers import AutoConfig

    from .. import models  # noqa: F401  (registers the architectures)

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} holds no config.json; pass a folder written by save_pretrained")
    source = None
    if metrics is None:
        metrics_path = Path(metrics_file) if metrics_file else _find_metrics_file(model_dir)
        metrics = json.loads(metrics_path.read_text())
        source = metrics_path.name if metrics_path.parent in (model_dir, model_dir.parent) else str(metrics_path)
    config = AutoConfig.from_pretrained(model_dir)
    task = _task_of(list(getattr(config, "architectures", None) or []))
    measured = {}
    for card_name, keys in METRIC_KEYS[task].items():
        for key in keys:
            if isinstance(metrics.get(key), (int, float)) and not isinstance(metrics.get(key), bool):
                measured[card_name] = float(metrics[key])
                break
    if not measured:
        raise ValueError(f"the metrics hold none of {sorted(k for keys in METRIC_KEYS[task].values() for k in keys)} "
                         f"(a {task} model); found {sorted(metrics)}")
    dataset_name = dataset_name or metrics.get("dataset")
    if not dataset_name:
        raise ValueError("the metrics name no data set; pass dataset_name (--dataset)")
    dataset_id = dataset_id or _dataset_id(dataset_name)
    command = command or metrics.get("command")
    run_config = metrics.get("config") if isinstance(metrics.get("config"), dict) else {}
    hyperparameters = {k: v for k, v in run_config.items() if isinstance(v, (int, float, str, bool)) and v != ""}
    facts = [f"{metrics[k]:,.2f} {k}" if isinstance(metrics[k], float) else f"{metrics[k]:,} {k}"
             for k in ("steps", "epochs") if isinstance(metrics.get(k), (int, float))]
    summary = (f"Trained with the whitebox_hf training scripts ({', '.join(facts)})." if facts
               else "Trained with the whitebox_hf training scripts.")
    common = dict(dataset_id=dataset_id, hyperparameters=hyperparameters, training_summary=summary,
                  model_name=model_name, repo_path=repo_path or str(model_dir), command=command,
                  template_path=template_path, metrics_source=source)
    if task == "image-classification":
        return image_classification_model_card(config, measured, dataset_name, **common)
    if task == "text-generation":
        return causal_lm_model_card(config, measured, dataset_name, **common)
    method = metrics.get("method") or ("mae" if "reconstruction_loss" in measured else "self-supervised")
    return representation_model_card(config, measured, dataset_name, method, **common)


def write_model_card(model_dir, **kwargs) -> Path:
    """`model_card_from_folder` saved as ``model_dir/README.md``; returns its path."""
    card = model_card_from_folder(model_dir, **kwargs)
    path = Path(model_dir) / "README.md"
    card.save(str(path))
    return path
