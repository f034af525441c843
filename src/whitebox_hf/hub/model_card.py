"""Model cards built with `huggingface_hub.ModelCard` from a run's measured metrics (offline).

`image_classification_model_card`, `causal_lm_model_card`, `representation_model_card`, `contrastive_model_card`
(CLIP / LIFT), `autoencoder_model_card` (diffusers VAE / RAE) and `pipeline_model_card` (diffusers generation
pipelines) fill a template: a YAML header with a `model-index` holding the metrics (a pipeline card has one only
when sample metrics are given), what the model is and which section of the book it implements, intended use and
limits, the architecture, the results, the training data, recipe and exact command, a usage snippet and the
citation. Every number comes from the caller (the training script passes what it measured) or,
with `model_card_from_folder` / `write_model_card` (used by ``whitebox-hf card``), from the run's metrics file
(``metrics.json`` / ``evaluation.json``), never from the template.

Templates: the per-task templates of the repository's ``model_cards/templates/`` (``image-classification.md``,
``text-generation.md``, ``image-feature-extraction.md``, ``zero-shot-image-classification.md``, ``autoencoder.md``,
``unconditional-image-generation.md``) when the package runs from a checkout, else the generic
``whitebox_hf/templates/modelcard.md`` shipped in the wheel; ``template_path=`` picks any other Jinja file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

__all__ = [
    "BOOK_CITATION",
    "METRICS_FILES",
    "TEMPLATES_DIR",
    "TEMPLATE_PATH",
    "autoencoder_model_card",
    "causal_lm_model_card",
    "contrastive_model_card",
    "image_classification_model_card",
    "model_card_from_folder",
    "pipeline_model_card",
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
    "zero-shot-image-classification": (
        "A small research model: it shows how a white-box image tower learns from captions, for retrieval and "
        "zero-shot classification of clip-art drawings like its training data. It is not meant for photographs "
        "or other image styles, and its captions' biases carry over; do not use it for decisions about people."
    ),
    "autoencoder": (
        "The first stage of a latent generative model: it compresses small images to latents and decodes them "
        "back. Trained on one small grey-scale data set, it reconstructs images unlike that data poorly."
    ),
    "unconditional-image-generation": (
        "A small research generator: it draws class-conditional images like its training data, to compare "
        "denoisers and latent spaces under one budget. Its samples are low-resolution and often imperfect; "
        "do not use them as real data."
    ),
    "image-feature-extraction": (
        "A backbone trained without labels; its features are for k-NN / linear-probe evaluation and for studying "
        "what self-supervised white-box networks learn. It is small and trained on a small data set, so its "
        "features do not transfer to unrelated images."
    ),
}

BOOK_SOURCE = ("The architecture follows *Learning Deep Representations of Data Distributions*, Chapter 8.")
BASELINE_SOURCE = "The architecture is the transformers baseline, trained with the same recipe as the white-box models."
DIFFUSERS_SOURCE = "Built from diffusers components and trained with the whitebox_hf training scripts."


def _slug(*parts: str) -> str:
    """A Hub-style model name: lower case, runs of other characters replaced by one ``-``."""
    return re.sub(r"[^a-z0-9.]+", "-", "-".join(parts).lower()).strip("-")

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


def _fields(config, names: tuple[str, ...]) -> dict:
    """``{name: value}`` of the ``names`` a config (object or mapping, e.g. a diffusers `FrozenDict`) sets."""
    get = config.get if isinstance(config, Mapping) else (lambda key: getattr(config, key, None))
    return {name: get(name) for name in names if get(name) is not None}


def _build_card(model_type: str, metrics: dict | None, task: str, dataset_name: str, dataset_id: str | None,
                eval_split: str, model_name: str, description: str, architecture: dict, hyperparameters: dict | None,
                training_summary: str, usage: str, architecture_source: str, extra_tags: tuple[str, ...] = (),
                command: str | None = None, book_section: str | None = None, intended_use: str | None = None,
                template_path=None, metrics_source: str | None = None, library_name: str = "transformers",
                template: str | None = None, pipeline_tag: bool = True, results_note: str = "",
                require_metrics: bool = True):
    """The shared card builder. ``task`` is the `model-index` task (and the pipeline tag unless ``pipeline_tag``
    is False); ``template`` names the template (default ``task``); without ``metrics`` (allowed only when
    ``require_metrics`` is False) the card has no `model-index` and shows ``results_note`` instead."""
    if require_metrics and not metrics:
        raise ValueError("`metrics` must hold at least one measured value")
    metrics = metrics or {}
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
        library_name=library_name,
        pipeline_tag=task if pipeline_tag else None,
        tags=list(dict.fromkeys(["whitebox_hf", model_type, *extra_tags, task])),
        datasets=[dataset_id or dataset_name],
        metrics=list(metrics) or None,
        model_name=model_name,
        eval_results=eval_results or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path or template_for_task(template or task)),
        model_name=model_name,
        model_description=description,
        architecture=architecture,
        results={k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in metrics.items()},
        results_note=results_note,
        dataset_name=dataset_name,
        eval_split=eval_split,
        hyperparameters=hyperparameters or {},
        training_summary=training_summary,
        usage=usage,
        architecture_source=architecture_source,
        command=command,
        book_section=book_section,
        intended_use=intended_use or INTENDED_USE.get(template or task, ""),
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
        config.model_type, metrics, "image-classification", dataset_name, dataset_id, eval_split, model_name,
        description, _fields(config, ("model_type", "block_type", "hidden_size", "num_hidden_layers",
                                      "num_attention_heads", "patch_size", "image_size", "num_channels", "num_labels",
                                      "pooling")),
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
        config.model_type, metrics, "text-generation", dataset_name, dataset_id, eval_split, model_name, description,
        _fields(config, ("model_type", "block_type", "attention_type", "hidden_size", "num_hidden_layers",
                         "num_attention_heads", "max_position_embeddings", "vocab_size", "final_layer_norm",
                         "tie_word_embeddings")),
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
        config.model_type, metrics, "image-feature-extraction", dataset_name, dataset_id, eval_split, model_name,
        description, _fields(config, ("model_type", "block_type", "hidden_size", "num_hidden_layers",
                                      "num_attention_heads", "patch_size", "image_size", "num_channels", "pooling",
                                      "mask_ratio")),
        hyperparameters, training_summary, REPRESENTATION_USAGE.format(repo_path=repo_path),
        BOOK_SOURCE if white_box else BASELINE_SOURCE, extra_tags=(method.lower(), *(("white-box",) if white_box else ())),
        command=command, template_path=template_path, metrics_source=metrics_source,
        book_section=section if white_box else None,
    )


CONTRASTIVE_USAGE = '''```python
import whitebox_hf  # registers the architecture with the Auto classes
from transformers import AutoModel, AutoProcessor

processor = AutoProcessor.from_pretrained("{repo_path}")
model = AutoModel.from_pretrained("{repo_path}")
inputs = processor(text=["a clip art of food", "a clip art of plants"], images=image, return_tensors="pt")
probabilities = model(**inputs).logits_per_image.softmax(dim=-1)
```'''

# Numbers of train_clip.py's metrics.json that go into the card (retrieval in both directions, zero-shot).
CONTRASTIVE_METRICS = ("image_to_text_R@1", "image_to_text_R@5", "text_to_image_R@1", "text_to_image_R@5",
                       "zero_shot_accuracy", "zero_shot_balanced_accuracy")


def contrastive_model_card(
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
    """A card for a `WhiteboxClipModel` (CRATE image tower, LIFT or CLIP text tower) whose `model-index` holds
    the retrieval and zero-shot metrics (e.g. ``{"image_to_text_R@1": 0.2, "zero_shot_accuracy": 0.4}``).

    Raises:
        ValueError: ``metrics`` is empty.
    """
    tower = getattr(config, "text_tower", "clip")
    model_name = model_name or _slug("crate", tower, dataset_name)
    text = ("the frozen pretrained all-MiniLM-L6-v2 sentence encoder (LIFT: only the image side trains)"
            if tower == "lift" else "a small BERT trained from scratch with it (CLIP)")
    description = (f"A contrastive image-text model trained on {dataset_name}: a CRATE image tower paired with "
                   f"{text}, trained with the symmetric InfoNCE loss and a learnable temperature. It embeds images "
                   "and captions in one space, for retrieval and zero-shot classification.")
    architecture = {**_fields(config, ("model_type", "text_tower", "projection_dim", "image_head_hidden_dim")),
                    **{f"vision_{k}": v for k, v in _fields(config.vision_config, (
                        "hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size", "image_size",
                        "num_channels")).items()},
                    **{f"text_{k}": v for k, v in _fields(config.text_config, (
                        "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")).items()}}
    return _build_card(
        config.model_type, metrics, "zero-shot-image-classification", dataset_name, dataset_id, eval_split,
        model_name, description, architecture, hyperparameters, training_summary,
        CONTRASTIVE_USAGE.format(repo_path=repo_path), BOOK_SOURCE, extra_tags=("white-box", "crate", tower),
        command=command, template_path=template_path, metrics_source=metrics_source,
        book_section="§8.3.8 (contrastive image-text learning: CLIP and LIFT)",
    )


AUTOENCODER_USAGE = {
    "AutoencoderKL": '''```python
from diffusers import AutoencoderKL

vae = AutoencoderKL.from_pretrained("{repo_path}")
latents = vae.encode(pixels).latent_dist.mode()  # pixels in [-1, 1], shape (n, C, H, W)
reconstruction = vae.decode(latents).sample
```''',
    "CrateRepresentationAutoencoder": '''```python
from whitebox_hf.models.autoencoders import CrateRepresentationAutoencoder

rae = CrateRepresentationAutoencoder.from_pretrained("{repo_path}")
reconstruction = rae.decode(rae.encode(pixels))  # pixels in [-1, 1], shape (n, C, H, W)
```''',
}

AUTOENCODER_DESCRIPTIONS = {
    "AutoencoderKL": (
        ("A small diffusers `AutoencoderKL` (VAE) trained on {dataset} with an L1 + KL + perceptual loss; its "
         "latents feed the latent generative models of this repository."),
        False,
    ),
    "CrateRepresentationAutoencoder": (
        ("A representation autoencoder (RAE) for {dataset}: a frozen CRATE encoder (trained with labels) whose "
         "tokens are the latents, and a ViT decoder trained to reconstruct the image from them (L1 + perceptual "
         "loss, noise-augmented tokens)."),
        True,
    ),
}

AUTOENCODER_FIELDS = ("in_channels", "block_out_channels", "layers_per_block", "latent_channels", "sample_size",
                      "scaling_factor", "shift_factor", "decoder_hidden_size", "decoder_num_layers",
                      "decoder_num_heads", "noise_tau")


def autoencoder_model_card(
    config,
    metrics: dict[str, float],
    dataset_name: str,
    class_name: str,
    latent_shape: list[int] | tuple[int, ...] | None = None,
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
    """A card (``library_name: diffusers``) for an autoencoder saved with ``save_pretrained``: a diffusers
    `AutoencoderKL` or a `CrateRepresentationAutoencoder` (``class_name``), its `model-index` holding the
    reconstruction metrics (e.g. ``{"test_l1": 0.05, "test_psnr": 24.0, "test_rfd_effnet": 3.1}``).

    Raises:
        ValueError: ``metrics`` is empty.
    """
    short = "rae" if class_name == "CrateRepresentationAutoencoder" else "vae"
    model_name = model_name or _slug(short, dataset_name)
    text, white_box = AUTOENCODER_DESCRIPTIONS.get(class_name, (f"A `{class_name}` trained on {{dataset}}.", False))
    architecture = {"class": class_name, **_fields(config, AUTOENCODER_FIELDS)}
    encoder = config.get("encoder_config") if isinstance(config, Mapping) else getattr(config, "encoder_config", None)
    if isinstance(encoder, Mapping):
        architecture.update({f"encoder_{k}": v for k, v in _fields(encoder, (
            "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size")).items()})
    if latent_shape is not None:
        architecture["latent_shape"] = " × ".join(str(d) for d in latent_shape)
    usage = AUTOENCODER_USAGE.get(class_name, AUTOENCODER_USAGE["AutoencoderKL"]).format(repo_path=repo_path)
    return _build_card(
        short, metrics, "image-to-image", dataset_name, dataset_id, eval_split, model_name,
        text.format(dataset=dataset_name), architecture, hyperparameters, training_summary, usage,
        BOOK_SOURCE if white_box else DIFFUSERS_SOURCE,
        extra_tags=("diffusers", "autoencoder", *(("white-box", "crate") if white_box else ())),
        command=command, template_path=template_path, metrics_source=metrics_source, library_name="diffusers",
        template="autoencoder", pipeline_tag=False,
        book_section="the representation-autoencoder part of §8.6" if white_box else None,
    )


PIPELINE_USAGE = '''```python
import whitebox_hf  # noqa: F401  (the pipeline's components)
from whitebox_hf.pipelines import {pipeline_class}

pipe = {pipeline_class}.from_pretrained("{repo_path}")
images = pipe({labels!r}, num_inference_steps={steps}, guidance_scale=2.0).images
```'''

# Denoiser of a generation run (results.json ``denoiser``) -> (pipeline class, description, white-box).
PIPELINE_DENOISERS = {
    "dit": ("WhiteboxFlowPipeline",
            "a class-conditional DiT (diffusers `DiTTransformer2DModel`, adaLN-Zero) trained with rectified flow",
            False),
    "crate": ("WhiteboxFlowPipeline",
              ("a class-conditional CRATE denoiser (`CrateDenoiserTransformer`: multi-head subspace self-attention "
               "and ISTA blocks in a DiT frame) trained with rectified flow"),
              True),
    "unet": ("WhiteboxDDPMPipeline",
             "a class-conditional diffusers `UNet2DModel` trained with DDPM (ε-prediction), the pixel-space baseline",
             False),
}

GENERATION_RESULTS = "docs/results/generation.md"


def pipeline_model_card(
    results: dict,
    dataset_name: str,
    metrics: dict[str, float] | None = None,
    dataset_id: str | None = None,
    autoencoder_class: str | None = None,
    class_names: list[str] | None = None,
    hyperparameters: dict | None = None,
    model_name: str | None = None,
    repo_path: str = "path/to/this/folder",
    eval_split: str = "test",
    command: str | None = None,
    template_path=None,
    metrics_source: str | None = None,
    usage: str | None = None,
) -> ModelCard:
    """A card (``library_name: diffusers``) for a generation pipeline saved by ``training/train_latent_flow.py``
    or ``training/train_ddpm_unet.py``, from the run's ``results.json`` (``results``: steps, batch_size,
    train_seconds_total, num_parameters, denoiser, autoencoder). Training measures no sample quality, so the
    card has a `model-index` only when ``metrics`` are given (e.g. FD-EffNet and class accuracy of the samples,
    from ``training/report_generation.py``); otherwise it points to ``docs/results/generation.md``. ``usage``
    replaces the "How to use" snippet (default: ``from_pretrained(repo_path)`` and a call with two class names).

    Raises:
        KeyError: ``results`` lacks ``steps``, ``batch_size`` or ``denoiser``.
    """
    denoiser = results["denoiser"]
    pipeline_class, what, white_box = PIPELINE_DENOISERS.get(
        denoiser, ("WhiteboxFlowPipeline", f"a class-conditional `{denoiser}` denoiser", False))
    autoencoder = results.get("autoencoder") or "none"
    latent = autoencoder != "none"
    space = (f"in the latent space of a saved autoencoder (`{autoencoder_class or 'autoencoder'}`, trained "
             f"separately: `{autoencoder}`)" if latent else "in pixel space")
    model_name = model_name or _slug(denoiser, "latent" if latent else "pixel", dataset_name)
    description = (f"A `{pipeline_class}` for {dataset_name}: {what}, {space}. Give it class labels (ids or names) "
                   "and it draws images, with classifier-free guidance.")
    facts = [f"{results['steps']:,} steps of batch {results['batch_size']}"]
    if isinstance(results.get("epochs"), (int, float)):
        facts.append(f"{results['epochs']:.2f} epochs")
    if isinstance(results.get("train_seconds_total"), (int, float)):
        facts.append(f"{results['train_seconds_total'] / 60:.1f} min of training")
    summary = f"Trained from scratch ({', '.join(facts)}); the pipeline holds the EMA weights of the denoiser."
    architecture = {"pipeline": pipeline_class, "denoiser": denoiser,
                    **_fields(results, ("num_parameters", "input_shape")),
                    "autoencoder": autoencoder_class or autoencoder}
    if "input_shape" in architecture:
        architecture["input_shape"] = " × ".join(str(d) for d in architecture["input_shape"])
    note = ("No sample-quality metric is measured at training time. FD-EffNet (Fréchet distance between "
            "EfficientNet-Lite0 features of samples and test images; not FID) and the class accuracy of a "
            f"classifier on the samples, per guidance scale, are in `{GENERATION_RESULTS}` "
            "(`training/report_generation.py`).")
    usage = usage or PIPELINE_USAGE.format(pipeline_class=pipeline_class, repo_path=repo_path,
                                  labels=list(class_names[:2]) if class_names else [0, 1],
                                  steps=25 if pipeline_class == "WhiteboxFlowPipeline" else 100)
    return _build_card(
        denoiser, metrics, "unconditional-image-generation", dataset_name, dataset_id, eval_split, model_name,
        description, architecture, hyperparameters, summary, usage,
        BOOK_SOURCE if white_box else DIFFUSERS_SOURCE,
        extra_tags=("diffusers", "class-conditional", "ddpm" if pipeline_class == "WhiteboxDDPMPipeline"
                    else "flow-matching", *(("white-box", "crate") if white_box else ())),
        command=command, template_path=template_path, metrics_source=metrics_source or (
            GENERATION_RESULTS if metrics else None),
        library_name="diffusers", results_note=note, require_metrics=False,
        book_section="§8.6 (generation with a white-box denoiser)" if white_box else None,
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
    "zero-shot-image-classification": {name: (name,) for name in CONTRASTIVE_METRICS},
}


def _task_of(architectures: list[str]) -> str:
    name = architectures[0] if architectures else ""
    if name == "WhiteboxClipModel":
        return "zero-shot-image-classification"
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
        from ..data import DATASETS
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
    if task == "zero-shot-image-classification":
        return contrastive_model_card(config, measured, dataset_name, **common)
    method = metrics.get("method") or ("mae" if "reconstruction_loss" in measured else "self-supervised")
    return representation_model_card(config, measured, dataset_name, method, **common)


def write_model_card(model_dir, **kwargs) -> Path:
    """`model_card_from_folder` saved as ``model_dir/README.md``; returns its path."""
    card = model_card_from_folder(model_dir, **kwargs)
    path = Path(model_dir) / "README.md"
    card.save(str(path))
    return path
