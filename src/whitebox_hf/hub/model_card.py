"""The model-card builder: `huggingface_hub.ModelCard` from a run's measured metrics (offline).

`image_classification_model_card`, `causal_lm_model_card`, `representation_model_card`, `contrastive_model_card`
(CLIP / LIFT), `autoencoder_model_card` (diffusers VAE / RAE) and `pipeline_model_card` (diffusers generation
pipelines) fill a template: a YAML header with a `model-index` holding the metrics (a pipeline card has one only
when sample metrics are given), what the model is and which section of the book it implements, intended use and
limits, the architecture, the results, the training data, recipe and exact command, a usage snippet and the
citation. Every number comes from the caller (the training script passes what it measured) or,
with `model_card_from_folder` / `write_model_card` (used by ``whitebox-hf card``), from the run's metrics file
(``metrics.json`` / ``evaluation.json``), never from the template.

Where each part lives:

- what a card says about a model family (its first paragraph, book section, Hub tags, pipeline tag) sits beside
  the model, in ``whitebox_hf/models/<family>/card.py`` (``CARD_METADATA``); the transformers / diffusers
  baselines (GPT-2, ViT, VAE, U-Net) have theirs here, in `BASELINE_METADATA`;
- the prose and the layout are templates shipped in the package (``whitebox_hf/templates/``): one Jinja card
  template per task (``image-classification.md``, ``text-generation.md``, ``image-feature-extraction.md``,
  ``zero-shot-image-classification.md``, ``autoencoder.md``, ``unconditional-image-generation.md``; the generic
  ``modelcard.md`` for any other), the intended-use paragraph per task (``intended_use/<task>.md``) and the
  usage snippets (``usage/<name>.md``); ``template_path=`` picks any other Jinja file.

A card never holds a local absolute path: a folder, metrics file or command argument under the working
directory is written relative to it, any other as its name (a folder as ``path/to/this/folder``).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path

import jinja2
from huggingface_hub import EvalResult, ModelCard, ModelCardData

__all__ = [
    "BASELINE_METADATA",
    "BOOK_CITATION",
    "METRICS_FILES",
    "TEMPLATES_DIR",
    "TEMPLATE_PATH",
    "autoencoder_model_card",
    "card_metadata",
    "causal_lm_model_card",
    "contrastive_model_card",
    "cupid_flow_model_card",
    "image_classification_model_card",
    "model_card_from_folder",
    "motion_prior_model_card",
    "pipeline_model_card",
    "representation_model_card",
    "shape_autoencoder_model_card",
    "template_for_task",
    "write_model_card",
]

# The templates shipped with the package (package-data in pyproject.toml): the same in a checkout and a wheel.
TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
TEMPLATE_PATH = TEMPLATES_DIR / "modelcard.md"

BOOK_CITATION = """@book{buchanan2025learning,
  title     = {Learning Deep Representations of Data Distributions},
  author    = {Buchanan, Sam and Pai, Druv and Wang, Peng and Ma, Yi},
  year      = {2025},
  url       = {https://ma-lab-berkeley.github.io/deep-representation-learning-book/}
}"""

BOOK_SOURCE = "The architecture follows *Learning Deep Representations of Data Distributions*, Chapter 8."
BASELINE_SOURCE = "The architecture is the transformers baseline, trained with the same recipe as the white-box models."
MICHELANGELO_SOURCE = ("The architecture is Michelangelo's SITA-VAE (Zhao et al. 2023), as the book describes it "
                       "(§8.8), trained with the whitebox_hf training scripts.")
DIFFUSERS_SOURCE = "Built from diffusers components and trained with the whitebox_hf training scripts."
DEFAULT_REPO_PATH = "path/to/this/folder"

# The card metadata of the models that are not whitebox_hf's own (same keys as ``models/<family>/card.py``).
BASELINE_METADATA = {
    "gpt2": {"white_box": False, "tags": (), "pipeline_tag": "text-generation", "book_section": None,
             "name": "A GPT-2 language model", "summary": "The baseline: transformers' `GPT2LMHeadModel`."},
    "AutoencoderKL": {
        "white_box": False, "short_name": "vae", "tags": (), "book_section": None, "usage": "vae",
        "description": ("A small diffusers `AutoencoderKL` (VAE) trained on {dataset} with an L1 + KL + perceptual "
                        "loss; its latents feed the latent generative models of this repository."),
    },
    "unet": {"white_box": False, "pipeline_class": "WhiteboxDDPMPipeline", "tags": (), "book_section": None,
             "description": ("a class-conditional diffusers `UNet2DModel` trained with DDPM (ε-prediction), the "
                             "pixel-space baseline")},
}

REPRESENTATION_METHODS = {
    "simdino": ("SimDINO", "§8.2-§8.3 (self-supervised learning with a coding-rate regulariser)"),
    "dino": ("DINO", None),
    "mae": ("masked autoencoding (CRATE-MAE / ViT-MAE)", "Chapter 8 (CRATE-MAE)"),
}

# Numbers of train_clip.py's metrics.json that go into the card (retrieval in both directions, zero-shot).
CONTRASTIVE_METRICS = ("image_to_text_R@1", "image_to_text_R@5", "text_to_image_R@1", "text_to_image_R@5",
                       "zero_shot_accuracy", "zero_shot_balanced_accuracy")

AUTOENCODER_FIELDS = ("in_channels", "block_out_channels", "layers_per_block", "latent_channels", "sample_size",
                      "scaling_factor", "shift_factor", "decoder_hidden_size", "decoder_num_layers",
                      "decoder_num_heads", "noise_tau")

GENERATION_RESULTS = "docs/results/generation.md"
SHAPES_RESULTS = "docs/results/shapes.md"
SHAPE_TASK = "shape-reconstruction"  # the model-index task of a shape autoencoder (no Hub pipeline tag fits)
SHAPE_AUTOENCODER_FIELDS = ("block_type", "num_latents", "latent_channels", "hidden_size", "num_attention_heads",
                            "num_encoder_layers", "num_decoder_layers", "num_fourier_frequencies", "alignment_dim")
# Card metric name -> where training/train_sita_vae.py or training/report_shapes.py put it (a nested key is
# "outer.inner").
SHAPE_METRIC_KEYS = {
    "volumetric_iou": ("volumetric_iou", "iou"),
    "chamfer_l1": ("chamfer_l1",),
    "f_score": ("f_score",),
    "shape_to_text_R@1": ("retrieval.shape_to_text.r@1",),
    "shape_to_text_R@5": ("retrieval.shape_to_text.r@5",),
    "shape_to_text_mean_similarity": ("retrieval.shape_to_text.mean_similarity",),
    "shape_to_image_R@1": ("retrieval.shape_to_image.r@1",),
    "shape_to_image_R@5": ("retrieval.shape_to_image.r@5",),
    "shape_to_image_mean_similarity": ("retrieval.shape_to_image.mean_similarity",),
}

IMAGE_TO_3D_TASK = "image-to-3d"  # Cupid's stage-1 flow (the Hub's pipeline tag of that name)
CUPID_FLOW_FIELDS = ("cube_resolution", "patch_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "time_shift", "guidance_scale", "guidance_interval")
CUPID_SOURCE = ("The architecture is Cupid's stage-1 flow (Huang et al. 2025; book §8.9) on the occupancy + UV cube, "
                "with a CRATE image encoder in place of DINOv2, trained with the whitebox_hf training scripts.")
# Card metric name -> where the Cupid evaluation puts it (pose by PnP from the generated cube, geometry in the
# canonical frame; a nested key is "outer.inner"). The flow's validation loss is reported when nothing else is.
CUPID_METRIC_KEYS = {
    "rotation_error_median_deg": ("rotation_error_median_deg", "pose.rotation_error_median_deg"),
    "rotation_within_5deg": ("rotation_within_5deg", "pose.rotation_within_5deg"),
    "rotation_within_15deg": ("rotation_within_15deg", "pose.rotation_within_15deg"),
    "translation_error": ("translation_error", "pose.translation_error"),
    "focal_error": ("focal_error", "pose.focal_error"),
    "volumetric_iou": ("volumetric_iou", "geometry.volumetric_iou"),
    "chamfer_l1": ("chamfer_l1", "geometry.chamfer_l1"),
    "flow_loss": ("eval_loss", "val_loss", "flow_loss"),
}


@functools.cache
def card_metadata() -> dict[str, dict]:
    """Every family's ``CARD_METADATA`` (the ``models/<family>/card.py`` files) and `BASELINE_METADATA`, by
    kind: ``language``, ``image``, ``contrastive``, ``autoencoder``, ``denoiser``, ``shape_autoencoder`` and
    ``image_to_3d``."""
    from ..models.aot.card import CARD_METADATA as aot
    from ..models.autoencoders.card import CARD_METADATA as autoencoders
    from ..models.causal_crate.card import CARD_METADATA as causal_crate
    from ..models.crate.card import CARD_METADATA as crate
    from ..models.cupid.card import CARD_METADATA as cupid
    from ..models.denoisers.card import CARD_METADATA as denoisers
    from ..models.motion_prior.card import CARD_METADATA as motion_prior
    from ..models.sita_vae.card import CARD_METADATA as sita_vae
    from ..models.tost.card import CARD_METADATA as tost
    from ..models.whitebox_clip.card import CARD_METADATA as whitebox_clip

    baselines = BASELINE_METADATA
    return {
        "language": {**causal_crate, **aot, **tost, "gpt2": baselines["gpt2"]},
        "image": crate,
        "contrastive": whitebox_clip,
        "autoencoder": {**autoencoders, "AutoencoderKL": baselines["AutoencoderKL"]},
        "denoiser": {**denoisers, "unet": baselines["unet"]},
        "shape_autoencoder": sita_vae,
        "image_to_3d": cupid,
        "motion": motion_prior,
    }


def _prose(folder: str, name: str) -> str:
    """A paragraph of ``templates/<folder>/<name>.md`` as one line (the files are wrapped for reading)."""
    path = TEMPLATES_DIR / folder / f"{name}.md"
    return " ".join(path.read_text(encoding="utf-8").split()) if path.is_file() else ""


def _usage(name: str, **variables) -> str:
    """The usage snippet ``templates/usage/<name>.md`` filled with ``variables``."""
    text = (TEMPLATES_DIR / "usage" / f"{name}.md").read_text(encoding="utf-8")
    return jinja2.Template(text, keep_trailing_newline=False).render(**variables).rstrip("\n")


# An absolute POSIX path of two or more components: a "/" not preceded by a word character, a dot, a colon, a
# slash or "~" (so URLs, "a/b" and fractions such as "1/√d" are not matched). One component ("/s" in "tokens /s")
# is left alone: it is more often prose than a folder.
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[\w.@+-]+(?:/[\w.@+-]+)+/?")


def _portable(path, fallback: str | None = None) -> str:
    """``path`` as a card may show it: relative as given, under the working directory relative to it, else
    ``fallback`` (default: its last component)."""
    path = str(path)
    if not os.path.isabs(path):
        return path
    cwd = os.path.abspath(os.getcwd())
    absolute = os.path.abspath(path)
    if absolute == cwd or absolute.startswith(cwd.rstrip(os.sep) + os.sep):
        return os.path.relpath(absolute, cwd)
    return fallback if fallback is not None else (os.path.basename(absolute.rstrip(os.sep)) or ".")


def _portable_text(text: str | None) -> str | None:
    """Every absolute path inside ``text`` (a command line, a snippet) made `_portable`."""
    return None if text is None else ABSOLUTE_PATH.sub(lambda match: _portable(match.group(0)), text)


def _slug(*parts: str) -> str:
    """A Hub-style model name: lower case, runs of other characters replaced by one ``-``."""
    return re.sub(r"[^a-z0-9.]+", "-", "-".join(parts).lower()).strip("-")


def _family(config) -> str:
    """The language-model card key: ``model_type``, or ``model_type/variant`` where the family has variants."""
    variant = getattr(config, "attention_type", None) or (
        "odl" if getattr(config, "block_type", None) == "odl" else None
    )
    key = f"{config.model_type}/{variant}" if variant else config.model_type
    return key if key in card_metadata()["language"] else config.model_type


def _image_family(config) -> dict | None:
    """The image family's metadata (``crate`` or ``crate/odl``), None for a baseline."""
    families = card_metadata()["image"]
    if getattr(config, "block_type", None) == "odl" and f"{config.model_type}/odl" in families:
        return families[f"{config.model_type}/odl"]
    return families.get(config.model_type)


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
    """The one card builder. ``task`` is the `model-index` task (and the pipeline tag unless ``pipeline_tag``
    is False); ``template`` names the template and the intended-use paragraph (default ``task``); without
    ``metrics`` (allowed only when ``require_metrics`` is False) the card has no `model-index` and shows
    ``results_note`` instead."""
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
    hyperparameters = {k: (_portable_text(v) if isinstance(v, str) else v) for k, v in (hyperparameters or {}).items()}
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
        hyperparameters=hyperparameters,
        training_summary=_portable_text(training_summary),
        usage=_portable_text(usage),
        architecture_source=architecture_source,
        command=_portable_text(command),
        book_section=book_section,
        intended_use=intended_use or _prose("intended_use", template or task),
        citation=BOOK_CITATION,
        dataset_id=dataset_id,
        metrics_source=_portable_text(metrics_source),
    )


def _family_card(metadata: dict, metrics: dict | None, task: str, architecture: dict, usage: str, source: str,
                 name_parts: tuple[str, ...], dataset_name: str, dataset_id: str | None, hyperparameters: dict | None,
                 training_summary: str, model_name: str | None, repo_path: str, eval_split: str, command: str | None,
                 template_path, metrics_source: str | None, template: str | None = None):
    """`_build_card` for a family described by its ``CARD_METADATA`` entry (``metadata``) alone: the card is named
    after its short name, ``name_parts`` and the data set unless ``model_name`` is given, its description is the
    metadata's for ``dataset_name``, its usage is the ``usage/<usage>.md`` snippet, ``source`` is the
    architecture's origin when the family is not white-box, and it has no Hub pipeline tag (none fits)."""
    short_name = metadata["short_name"]
    return _build_card(
        short_name, metrics, task, dataset_name, dataset_id, eval_split,
        model_name or _slug(short_name, *name_parts, dataset_name), metadata["description"].format(dataset=dataset_name),
        architecture, hyperparameters, training_summary, _usage(usage, repo_path=_portable(repo_path, DEFAULT_REPO_PATH)),
        BOOK_SOURCE if metadata["white_box"] else source,
        extra_tags=metadata["tags"], command=command, template_path=template_path, metrics_source=metrics_source,
        template=template, pipeline_tag=False, book_section=metadata["book_section"],
    )


def template_for_task(task: str) -> Path:
    """``whitebox_hf/templates/<task>.md`` if there is one, else the generic ``modelcard.md``."""
    candidate = TEMPLATES_DIR / f"{task}.md"
    return candidate if candidate.is_file() and candidate != TEMPLATE_PATH else TEMPLATE_PATH


def image_classification_model_card(
    config,
    metrics: dict[str, float],
    dataset_name: str,
    dataset_id: str | None = None,
    hyperparameters: dict | None = None,
    training_summary: str = "",
    model_name: str | None = None,
    repo_path: str = DEFAULT_REPO_PATH,
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
    family = _image_family(config)
    description = (family["descriptions"]["image-classification"].format(dataset=dataset_name) if family
                   else f"A `{config.model_type}` image classifier trained on {dataset_name} (baseline).")
    return _build_card(
        config.model_type, metrics, "image-classification", dataset_name, dataset_id, eval_split, model_name,
        description, _fields(config, ("model_type", "block_type", "hidden_size", "num_hidden_layers",
                                      "num_attention_heads", "patch_size", "image_size", "num_channels", "num_labels",
                                      "pooling")),
        hyperparameters, training_summary, _usage("image-classification", repo_path=_portable(repo_path, DEFAULT_REPO_PATH)),
        BOOK_SOURCE if family else BASELINE_SOURCE, extra_tags=family["tags"] if family else (),
        command=command, template_path=template_path, metrics_source=metrics_source,
        book_section=family["book_section"] if family else None,
    )


def causal_lm_model_card(
    config,
    metrics: dict[str, float],
    dataset_name: str,
    dataset_id: str | None = None,
    hyperparameters: dict | None = None,
    training_summary: str = "",
    model_name: str | None = None,
    repo_path: str = DEFAULT_REPO_PATH,
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
    metadata = card_metadata()["language"].get(family) or {
        "white_box": False, "tags": (), "book_section": None, "name": f"A `{config.model_type}` language model",
        "summary": ""}
    description = f"{metadata['name']} trained from scratch on {dataset_name}. {metadata['summary']}".strip()
    return _build_card(
        config.model_type, metrics, "text-generation", dataset_name, dataset_id, eval_split, model_name, description,
        _fields(config, ("model_type", "block_type", "attention_type", "hidden_size", "num_hidden_layers",
                         "num_attention_heads", "max_position_embeddings", "vocab_size", "final_layer_norm",
                         "tie_word_embeddings")),
        hyperparameters, training_summary, _usage("text-generation", repo_path=_portable(repo_path, DEFAULT_REPO_PATH)),
        BASELINE_SOURCE if family == "gpt2" else BOOK_SOURCE, extra_tags=metadata["tags"],
        command=command, template_path=template_path, metrics_source=metrics_source,
        book_section=metadata["book_section"],
    )


def representation_model_card(
    config,
    metrics: dict[str, float],
    dataset_name: str,
    method: str,
    dataset_id: str | None = None,
    hyperparameters: dict | None = None,
    training_summary: str = "",
    model_name: str | None = None,
    repo_path: str = DEFAULT_REPO_PATH,
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
    family = _image_family(config)
    description = (f"A `{config.model_type}` backbone trained with {method_name} on {dataset_name} without labels. "
                   "Its quality is measured on frozen features: k-NN and linear-probe accuracy on the test split.")
    return _build_card(
        config.model_type, metrics, "image-feature-extraction", dataset_name, dataset_id, eval_split, model_name,
        description, _fields(config, ("model_type", "block_type", "hidden_size", "num_hidden_layers",
                                      "num_attention_heads", "patch_size", "image_size", "num_channels", "pooling",
                                      "mask_ratio")),
        hyperparameters, training_summary, _usage("image-feature-extraction", repo_path=_portable(repo_path, DEFAULT_REPO_PATH)),
        BOOK_SOURCE if family else BASELINE_SOURCE,
        extra_tags=(method.lower(), *(family["tags"] if family else ())),
        command=command, template_path=template_path, metrics_source=metrics_source,
        book_section=section if family else None,
    )


def contrastive_model_card(
    config,
    metrics: dict[str, float],
    dataset_name: str,
    dataset_id: str | None = None,
    hyperparameters: dict | None = None,
    training_summary: str = "",
    model_name: str | None = None,
    repo_path: str = DEFAULT_REPO_PATH,
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
    metadata = card_metadata()["contrastive"]["whitebox_clip"]
    tower = getattr(config, "text_tower", "clip")
    model_name = model_name or _slug("crate", tower, dataset_name)
    text = metadata["text_towers"].get(tower, f"a `{tower}` text tower")
    description = metadata["description"].format(dataset=dataset_name, text_tower=text)
    architecture = {**_fields(config, ("model_type", "text_tower", "projection_dim", "image_head_hidden_dim")),
                    **{f"vision_{k}": v for k, v in _fields(config.vision_config, (
                        "hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size", "image_size",
                        "num_channels")).items()},
                    **{f"text_{k}": v for k, v in _fields(config.text_config, (
                        "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")).items()}}
    return _build_card(
        config.model_type, metrics, metadata["pipeline_tag"], dataset_name, dataset_id, eval_split,
        model_name, description, architecture, hyperparameters, training_summary,
        _usage("zero-shot-image-classification", repo_path=_portable(repo_path, DEFAULT_REPO_PATH)), BOOK_SOURCE,
        extra_tags=(*metadata["tags"], tower), command=command, template_path=template_path,
        metrics_source=metrics_source, book_section=metadata["book_section"],
    )


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
    repo_path: str = DEFAULT_REPO_PATH,
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
    known = card_metadata()["autoencoder"]
    metadata = known.get(class_name) or {**known["AutoencoderKL"],
                                         "description": f"A `{class_name}` trained on {{dataset}}."}
    short = metadata["short_name"]
    model_name = model_name or _slug(short, dataset_name)
    architecture = {"class": class_name, **_fields(config, AUTOENCODER_FIELDS)}
    encoder = config.get("encoder_config") if isinstance(config, Mapping) else getattr(config, "encoder_config", None)
    if isinstance(encoder, Mapping):
        architecture.update({f"encoder_{k}": v for k, v in _fields(encoder, (
            "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size")).items()})
    if latent_shape is not None:
        architecture["latent_shape"] = " × ".join(str(d) for d in latent_shape)
    return _build_card(
        short, metrics, "image-to-image", dataset_name, dataset_id, eval_split, model_name,
        metadata["description"].format(dataset=dataset_name), architecture, hyperparameters, training_summary,
        _usage(metadata["usage"], repo_path=_portable(repo_path, DEFAULT_REPO_PATH)),
        BOOK_SOURCE if metadata["white_box"] else DIFFUSERS_SOURCE,
        extra_tags=("diffusers", "autoencoder", *metadata["tags"]),
        command=command, template_path=template_path, metrics_source=metrics_source, library_name="diffusers",
        template="autoencoder", pipeline_tag=False, book_section=metadata["book_section"],
    )


def shape_autoencoder_model_card(
    config,
    metrics: dict[str, float],
    dataset_name: str = "procedural-shapes",
    dataset_id: str | None = None,
    hyperparameters: dict | None = None,
    training_summary: str = "",
    model_name: str | None = None,
    repo_path: str = DEFAULT_REPO_PATH,
    eval_split: str = "test",
    command: str | None = None,
    template_path=None,
    metrics_source: str | None = None,
) -> ModelCard:
    """A card for a `SitaVaeModel` (Michelangelo's shape autoencoder; the CRATE-block variant when
    ``config.block_type == "crate"``), its `model-index` holding the measured reconstruction (and, for an aligned
    run, retrieval) metrics, e.g. ``{"volumetric_iou": 0.93, "chamfer_l1": 0.012, "shape_to_text_R@1": 0.2}``.

    Raises:
        ValueError: ``metrics`` is empty.
    """
    families = card_metadata()["shape_autoencoder"]
    metadata = families.get(f"{config.model_type}/{config.block_type}") or families[config.model_type]
    return _family_card(
        metadata, metrics, SHAPE_TASK, {"class": "SitaVaeModel", **_fields(config, SHAPE_AUTOENCODER_FIELDS)},
        "sita-vae", MICHELANGELO_SOURCE, (), dataset_name, dataset_id, hyperparameters, training_summary, model_name,
        repo_path, eval_split, command, template_path, metrics_source, template="shape-autoencoder",
    )


def cupid_flow_model_card(
    config,
    metrics: dict[str, float],
    dataset_name: str = "procedural-shapes",
    dataset_id: str | None = None,
    hyperparameters: dict | None = None,
    training_summary: str = "",
    model_name: str | None = None,
    repo_path: str = DEFAULT_REPO_PATH,
    eval_split: str = "test",
    command: str | None = None,
    template_path=None,
    metrics_source: str | None = None,
) -> ModelCard:
    """A card for a `CupidFlowModel` (Cupid's stage 1), its `model-index` holding the measured pose and geometry
    numbers (`CUPID_METRIC_KEYS`), e.g. ``{"rotation_error_median_deg": 4.2, "rotation_within_15deg": 0.8,
    "volumetric_iou": 0.6}``.

    Raises:
        ValueError: ``metrics`` is empty.
    """
    encoder = config.image_encoder_config
    architecture = {"class": "CupidFlowModel", **_fields(config, CUPID_FLOW_FIELDS),
                    "image_encoder": (f"CrateModel ({encoder.image_size} px, {encoder.patch_size}×{encoder.patch_size} "
                                      f"patches, width {encoder.hidden_size}, {encoder.num_hidden_layers} layers)")}
    return _family_card(
        card_metadata()["image_to_3d"][config.model_type], metrics, IMAGE_TO_3D_TASK, architecture, "cupid",
        CUPID_SOURCE, (), dataset_name, dataset_id, hyperparameters, training_summary, model_name, repo_path,
        eval_split, command, template_path, metrics_source,
    )


def pipeline_model_card(
    results: dict,
    dataset_name: str,
    metrics: dict[str, float] | None = None,
    dataset_id: str | None = None,
    autoencoder_class: str | None = None,
    class_names: list[str] | None = None,
    hyperparameters: dict | None = None,
    model_name: str | None = None,
    repo_path: str = DEFAULT_REPO_PATH,
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
    metadata = card_metadata()["denoiser"].get(denoiser) or {
        "white_box": False, "pipeline_class": "WhiteboxFlowPipeline", "tags": (), "book_section": None,
        "description": f"a class-conditional `{denoiser}` denoiser"}
    pipeline_class = metadata["pipeline_class"]
    autoencoder = results.get("autoencoder") or "none"
    latent = autoencoder != "none"
    space = (f"in the latent space of a saved autoencoder (`{autoencoder_class or 'autoencoder'}`, trained "
             f"separately: `{_portable(autoencoder)}`)" if latent else "in pixel space")
    model_name = model_name or _slug(denoiser, "latent" if latent else "pixel", dataset_name)
    call_hint = metadata.get("call_hint", "Give it class labels (ids or names) and it draws images, with "
                                          "classifier-free guidance.")
    description = f"A `{pipeline_class}` for {dataset_name}: {metadata['description']}, {space}. {call_hint}"
    facts = [f"{results['steps']:,} steps of batch {results['batch_size']}"]
    if isinstance(results.get("epochs"), (int, float)):
        facts.append(f"{results['epochs']:.2f} epochs")
    if isinstance(results.get("train_seconds_total"), (int, float)):
        facts.append(f"{results['train_seconds_total'] / 60:.1f} min of training")
    summary = f"Trained from scratch ({', '.join(facts)}); the pipeline holds the EMA weights of the denoiser."
    architecture = {"pipeline": pipeline_class, "denoiser": denoiser,
                    **_fields(results, ("num_parameters", "input_shape")),
                    "autoencoder": autoencoder_class or _portable(autoencoder)}
    if "input_shape" in architecture:
        architecture["input_shape"] = " × ".join(str(d) for d in architecture["input_shape"])
    note = ("No sample-quality metric is measured at training time. FD-EffNet (Fréchet distance between "
            "EfficientNet-Lite0 features of samples and test images; not FID) and the class accuracy of a "
            f"classifier on the samples, per guidance scale, are in `{GENERATION_RESULTS}` "
            "(`training/report_generation.py`).")
    note = metadata.get("results_note", note)  # a family whose samples are not images says its own
    usage = usage or _usage("pipeline", pipeline_class=pipeline_class, repo_path=_portable(repo_path, DEFAULT_REPO_PATH),
                            labels=repr(list(class_names[:2]) if class_names else [0, 1]),
                            steps=25 if pipeline_class == "WhiteboxFlowPipeline" else 100)
    return _build_card(
        denoiser, metrics, metadata.get("task", "unconditional-image-generation"), dataset_name, dataset_id, eval_split, model_name,
        description, architecture, hyperparameters, summary, usage,
        BOOK_SOURCE if metadata["white_box"] else DIFFUSERS_SOURCE,
        extra_tags=(*metadata.get("pipeline_tags", (
            "diffusers", "class-conditional", "ddpm" if pipeline_class == "WhiteboxDDPMPipeline"
            else "flow-matching")), *metadata["tags"]),
        command=command, template_path=template_path, metrics_source=metrics_source or (
            GENERATION_RESULTS if metrics else None),
        library_name="diffusers", results_note=note, require_metrics=False,
        book_section=metadata["book_section"],
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
    SHAPE_TASK: SHAPE_METRIC_KEYS,
    IMAGE_TO_3D_TASK: CUPID_METRIC_KEYS,
}


MOTION_TASK = "motion-estimation"  # the model-index task of a motion prior (no Hub pipeline tag fits)
MOTION_PRIOR_FIELDS = ("head_conditioning", "hidden_size", "intermediate_size", "num_attention_heads",
                       "num_encoder_layers", "num_decoder_layers", "num_fourier_frequencies", "num_body_joints",
                       "num_contacts", "num_train_timesteps")
EGOALLO_SOURCE = ("The architecture is EgoAllo's motion prior (Yi et al. 2024; book §8.10) on a 22-joint BVH skeleton "
                  "in place of SMPL-H, trained with the whitebox_hf training scripts.")


def motion_prior_model_card(
    config,
    metrics: dict[str, float],
    dataset_name: str = "assimp-bvh",
    dataset_id: str | None = None,
    hyperparameters: dict | None = None,
    training_summary: str = "",
    model_name: str | None = None,
    repo_path: str = DEFAULT_REPO_PATH,
    eval_split: str = "test",
    command: str | None = None,
    template_path=None,
    metrics_source: str | None = None,
) -> ModelCard:
    """A card for a `MotionPriorModel` (EgoAllo's motion prior), its `model-index` holding the measured held-out
    motion metrics, e.g. ``{"mpjpe_mm": 180.0, "pa_mpjpe_mm": 120.0, "gnd": 1.0}``.

    Raises:
        ValueError: ``metrics`` is empty.
    """
    return _family_card(
        card_metadata()["motion"][config.model_type], metrics, MOTION_TASK,
        {"class": "MotionPriorModel", **_fields(config, MOTION_PRIOR_FIELDS)}, "motion-prior", EGOALLO_SOURCE,
        (config.head_conditioning,), dataset_name, dataset_id, hyperparameters, training_summary, model_name,
        repo_path, eval_split, command, template_path, metrics_source,
    )


def _lookup(metrics: dict, key: str):
    """``metrics[key]``, a dotted key going into nested dicts (``retrieval.shape_to_text.r@1``); None if absent."""
    value = metrics
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _task_of(architectures: list[str]) -> str:
    name = architectures[0] if architectures else ""
    if name == "SitaVaeModel":
        return SHAPE_TASK
    if name == "CupidFlowModel":
        return IMAGE_TO_3D_TASK
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
    from ..data.image_datasets import dataset_hub_id

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} holds no config.json; pass a folder written by save_pretrained")
    source = None
    if metrics is None:
        metrics_path = Path(metrics_file) if metrics_file else _find_metrics_file(model_dir)
        try:
            metrics = json.loads(metrics_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise OSError(f"the metrics file {metrics_path} is not valid JSON ({error})") from None
        if not isinstance(metrics, dict):
            raise OSError(f"the metrics file {metrics_path} must hold a JSON object, got a {type(metrics).__name__}")
        source = metrics_path.name if metrics_path.parent in (model_dir, model_dir.parent) else _portable(metrics_path)
    config = AutoConfig.from_pretrained(model_dir)
    task = _task_of(list(getattr(config, "architectures", None) or []))
    measured = {}
    for card_name, keys in METRIC_KEYS[task].items():
        for key in keys:
            value = _lookup(metrics, key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                measured[card_name] = float(value)
                break
    if not measured:
        raise ValueError(f"the metrics hold none of {sorted(k for keys in METRIC_KEYS[task].values() for k in keys)} "
                         f"(a {task} model); found {sorted(metrics)}")
    dataset_name = dataset_name or metrics.get("dataset")
    if not dataset_name:
        raise ValueError("the metrics name no data set; pass dataset_name (--dataset)")
    dataset_id = dataset_id or dataset_hub_id(dataset_name)
    command = command or metrics.get("command")
    run_config = metrics.get("config") if isinstance(metrics.get("config"), dict) else {}
    hyperparameters = {k: v for k, v in run_config.items() if isinstance(v, (int, float, str, bool)) and v != ""}
    facts = [f"{metrics[k]:,.2f} {k}" if isinstance(metrics[k], float) else f"{metrics[k]:,} {k}"
             for k in ("steps", "epochs") if isinstance(metrics.get(k), (int, float))]
    summary = (f"Trained with the whitebox_hf training scripts ({', '.join(facts)})." if facts
               else "Trained with the whitebox_hf training scripts.")
    common = dict(dataset_id=dataset_id, hyperparameters=hyperparameters, training_summary=summary,
                  model_name=model_name, repo_path=repo_path or _portable(model_dir, DEFAULT_REPO_PATH), command=command,
                  template_path=template_path, metrics_source=source)
    if task == "image-classification":
        return image_classification_model_card(config, measured, dataset_name, **common)
    if task == "text-generation":
        return causal_lm_model_card(config, measured, dataset_name, **common)
    if task == "zero-shot-image-classification":
        return contrastive_model_card(config, measured, dataset_name, **common)
    if task == SHAPE_TASK:
        # The training script scores its validation split; the results page the test split.
        return shape_autoencoder_model_card(config, measured, dataset_name, eval_split=metrics.get("eval_split") or "test",
                                            **common)
    if task == IMAGE_TO_3D_TASK:
        return cupid_flow_model_card(config, measured, dataset_name, eval_split=metrics.get("eval_split") or "test",
                                     **common)
    method = metrics.get("method") or ("mae" if "reconstruction_loss" in measured else "self-supervised")
    return representation_model_card(config, measured, dataset_name, method, **common)


def write_model_card(model_dir, **kwargs) -> Path:
    """`model_card_from_folder` saved as ``model_dir/README.md``; returns its path."""
    card = model_card_from_folder(model_dir, **kwargs)
    path = Path(model_dir) / "README.md"
    card.save(str(path))
    return path
