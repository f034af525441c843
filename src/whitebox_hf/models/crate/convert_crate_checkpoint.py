"""Convert the authors' released CRATE and CRATE-α weights to `CrateForImageClassification`.

In the manner of transformers' ``convert_*_to_pytorch.py`` scripts; the command is ``whitebox-hf convert``.
Two source layouts are read (spec ``crate_family.md`` §1-§2):

* ``"crate"``: the state dict of Ma-Lab-Berkeley/CRATE ``model/crate.py`` (``CRATE_tiny`` ... ``CRATE_large``), as
  saved by its ``main.py`` (``{"state_dict": ..., "epoch": ...}``, keys prefixed ``module.`` by DataParallel) or
  bare.
* ``"crate-alpha"``: the state dict of UCSC-VLAA/CRATE-alpha ``torch_inference/model/crate_alpha.py``.

Key mapping (``i`` = layer; left the authors' names, right ours under ``CrateForImageClassification``):

=============================================  ==============================================================
CRATE / CRATE-α                                 whitebox_hf
=============================================  ==============================================================
``cls_token`` (1, 1, d)                         ``crate.embeddings.cls_token``
``pos_embedding`` (1, N+1, d)                   ``crate.embeddings.position_embeddings``
``to_patch_embedding.1`` LN(P)                  ``crate.embeddings.patch_embeddings.patch_norm``
``to_patch_embedding.2`` Linear(P→d)            ``crate.embeddings.patch_embeddings.projection``
``to_patch_embedding.3`` LN(d)                  ``crate.embeddings.patch_embeddings.embedding_norm``
``conv1`` Conv2d (CRATE-α)                      ``crate.embeddings.patch_embeddings.projection``
``transformer.layers.i.0.norm``                 ``crate.layers.i.attention_norm``
``transformer.layers.i.0.fn.qkv.weight``        ``crate.layers.i.attention.subspace_projection.weight``
``transformer.layers.i.0.fn.to_out.0``          ``crate.layers.i.attention.output_projection`` (identity if absent)
``transformer.layers.i.1.norm``                 ``crate.layers.i.sparse_coding_norm``
``transformer.layers.i.1.fn.weight`` (d, d)     ``crate.layers.i.sparse_coding.dictionary`` (same layout)
``transformer.layers.i.1.fn.D`` (d, s)          ``crate.layers.i.sparse_coding.encoder_dictionary`` (transposed)
``transformer.layers.i.1.fn.D1`` (d, s)         ``crate.layers.i.sparse_coding.decoder_dictionary``
``mlp_head.0`` LN(d)                            ``crate.pooler_norm``
``mlp_head.1`` Linear(d→C)                      ``classifier``
=============================================  ==============================================================

What the weights do not say is taken from the authors' constructors: η = λ = 0.1, class-token pooling, ODL with
two steps, LayerNorm eps 1e-5 (CRATE) or 1e-6 in the layers and 1e-5 in the head (the CRATE-α torch port), and
the number of heads, which the shapes cannot tell (``qkv`` is ``(K·p, d)``): it is looked up from the authors'
variants by width unless given.
"""

from __future__ import annotations

import math
import pickle
import re
import zipfile
from pathlib import Path

import torch

from .configuration_crate import CrateConfig
from .image_processing_crate import CrateImageProcessor
from .modeling_crate import CrateForImageClassification

__all__ = [
    "ORIGINAL_LAYOUTS",
    "load_original_state_dict",
    "detect_original_layout",
    "crate_config_from_original",
    "convert_original_state_dict",
    "convert_crate_checkpoint",
]

ORIGINAL_LAYOUTS = ("crate", "crate-alpha")

# Heads per width in the authors' variants (model/crate.py CRATE_*; CRATE-alpha decode_variant), all with K·p = d.
_CRATE_HEADS = {384: 6, 576: 12, 768: 12, 1024: 16}
_CRATE_ALPHA_HEADS = {192: 3, 576: 12, 768: 12, 1024: 16, 1280: 16}
# Where training scripts nest the weights in a saved dict (CRATE's main.py: "state_dict").
_NESTING_KEYS = ("state_dict", "model", "model_state_dict", "module")
_LAYER_KEY = re.compile(r"^transformer\.layers\.(\d+)\.")
_IMAGENET_MEAN = [0.485, 0.456, 0.406]
_IMAGENET_STD = [0.229, 0.224, 0.225]


def load_original_state_dict(path) -> dict[str, torch.Tensor]:
    """The tensors of an authors' checkpoint file: ``.safetensors``, or a torch pickle (``.pth``, ``.pt``,
    ``.bin``, ``.ckpt``) read with ``torch.load(weights_only=True)`` so that no code in the file runs.

    A dict nesting the weights under ``state_dict`` / ``model`` / ``model_state_dict`` is unwrapped, and the
    ``module.`` prefix of a DataParallel model is dropped.

    Raises:
        OSError: the file is missing, unreadable, truncated, or holds something other than tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise OSError(f"`checkpoint` {str(path)!r} is not a file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            loaded = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise OSError(f"cannot read the safetensors file {str(path)!r} (truncated or not safetensors?): "
                          f"{error}") from error
    else:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, EOFError, RuntimeError, zipfile.BadZipFile, ValueError, OSError) as error:
            # weights_only refuses pickles that would run code (UnpicklingError); a truncated zip archive gives
            # RuntimeError / BadZipFile / OSError (EINVAL), a truncated legacy pickle EOFError.
            raise OSError(f"cannot read the torch checkpoint {str(path)!r} with torch.load(weights_only=True) "
                          f"(truncated, not a torch file, or holding objects other than tensors): {error}") from error
    return _unwrap(loaded, str(path))


def _unwrap(loaded, source: str) -> dict[str, torch.Tensor]:
    for _ in range(3):  # {"state_dict": {"module": ...}} at most
        # A training checkpoint beside the weights may hold tensors of its own (main.py's `best_acc1`).
        nested = [key for key in _NESTING_KEYS if isinstance(loaded, dict) and isinstance(loaded.get(key), dict)]
        if not nested:
            break
        loaded = loaded[nested[0]]
    if not isinstance(loaded, dict) or not loaded:
        raise OSError(f"{source!r} holds no state dict (got {type(loaded).__name__}); expected a dict of tensors, "
                      f"possibly under one of {list(_NESTING_KEYS)}")
    not_tensors = [key for key, value in loaded.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise OSError(f"{source!r}: entries {not_tensors[:5]} are not tensors; expected a state dict")
    if all(key.startswith("module.") for key in loaded):
        loaded = {key[len("module."):]: value for key, value in loaded.items()}
    return dict(loaded)


def detect_original_layout(state_dict: dict[str, torch.Tensor]) -> str:
    """``"crate"`` (a linear patch stem ``to_patch_embedding.*``) or ``"crate-alpha"`` (a conv stem ``conv1``)."""
    if "to_patch_embedding.2.weight" in state_dict:
        return "crate"
    if "conv1.weight" in state_dict:
        return "crate-alpha"
    raise ValueError(f"`state_dict` is neither an official CRATE checkpoint (expected `to_patch_embedding.2.weight`) "
                     f"nor a CRATE-α one (expected `conv1.weight`); got keys {sorted(state_dict)[:8]}...")


def _get(state_dict: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state_dict:
        raise ValueError(f"the checkpoint lacks `{key}`, which every official checkpoint of this layout holds")
    return state_dict[key]


def _dims(state_dict, key: str, ndim: int) -> tuple[int, ...]:
    tensor = _get(state_dict, key)
    if tensor.ndim != ndim:
        raise ValueError(f"`{key}` must have {ndim} dimensions, got shape {tuple(tensor.shape)}")
    return tuple(tensor.shape)


def crate_config_from_original(
    state_dict: dict[str, torch.Tensor],
    layout: str | None = None,
    num_attention_heads: int | None = None,
    num_channels: int = 3,
    pooling: str = "cls",
    ista_step_size: float = 0.1,
    ista_lambda: float = 0.1,
    id2label: dict[int, str] | None = None,
) -> CrateConfig:
    """The `CrateConfig` an official state dict was built with, read from its shapes.

    Width, depth, patch and image size, number of classes and (CRATE-α) dictionary width come from the tensors;
    the rest from the arguments, whose defaults are the authors' constructors. ``num_attention_heads`` defaults to
    the authors' variant of that width (CRATE 384/576/768/1024 → 6/12/12/16 heads; CRATE-α 192/576/768/1024/1280
    → 3/12/12/16/16).

    Raises:
        ValueError: an unknown ``layout``, a missing key, inconsistent shapes, a width with no known head count and
            no ``num_attention_heads``, or a CRATE-α ODL with other than two steps (the port hard-codes two).
    """
    layout = detect_original_layout(state_dict) if layout is None else layout
    if layout not in ORIGINAL_LAYOUTS:
        raise ValueError(f"`layout` must be one of {ORIGINAL_LAYOUTS}, got {layout!r}")
    if not isinstance(num_channels, int) or num_channels < 1:
        raise ValueError(f"`num_channels` must be a positive int, got {num_channels!r}")
    hidden_size = _dims(state_dict, "cls_token", 3)[-1]
    num_positions = _dims(state_dict, "pos_embedding", 3)[1]
    grid = math.isqrt(num_positions - 1)
    if num_positions < 2 or grid * grid != num_positions - 1:
        raise ValueError(f"`pos_embedding` must hold 1 + a square number of positions, got {num_positions}")
    if layout == "crate":
        _, patch_dim = _dims(state_dict, "to_patch_embedding.2.weight", 2)
        patch_size = math.isqrt(patch_dim // num_channels)
        if patch_size * patch_size * num_channels != patch_dim:
            raise ValueError(f"`to_patch_embedding.2.weight` has {patch_dim} inputs, which is not num_channels × "
                             f"patch² for `num_channels`={num_channels}")
        heads_by_width = _CRATE_HEADS
    else:
        _, channels, patch_size, patch_width = _dims(state_dict, "conv1.weight", 4)
        if patch_size != patch_width:
            raise ValueError(f"`conv1.weight` must have a square kernel, got {patch_size}×{patch_width}")
        num_channels = channels
        heads_by_width = _CRATE_ALPHA_HEADS
    layer_indices = {int(m.group(1)) for key in state_dict if (m := _LAYER_KEY.match(key))}
    if not layer_indices or layer_indices != set(range(max(layer_indices) + 1)):
        raise ValueError(f"`transformer.layers.*` must be numbered 0..L-1, got {sorted(layer_indices)}")
    num_layers = max(layer_indices) + 1
    if num_attention_heads is None:
        if hidden_size not in heads_by_width:
            raise ValueError(f"width {hidden_size} is none of the authors' {layout} variants {sorted(heads_by_width)}: "
                             f"pass `num_attention_heads` (the shapes cannot tell it)")
        num_attention_heads = heads_by_width[hidden_size]
    inner_dim = _dims(state_dict, "transformer.layers.0.0.fn.qkv.weight", 2)[0]
    if inner_dim % num_attention_heads:
        raise ValueError(f"`num_attention_heads`={num_attention_heads} must divide the qkv width {inner_dim} of "
                         f"`transformer.layers.0.0.fn.qkv.weight`")
    num_labels = _dims(state_dict, "mlp_head.1.weight", 2)[0]
    kwargs = dict(
        hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=num_attention_heads,
        head_dim=inner_dim // num_attention_heads, image_size=grid * patch_size, patch_size=patch_size,
        num_channels=num_channels, pooling=pooling, ista_step_size=ista_step_size, ista_lambda=ista_lambda,
        num_labels=num_labels, position_embedding_type="learned",
    )
    if id2label is not None:
        kwargs["id2label"] = id2label
    if layout == "crate":
        kwargs.update(block_type="ista", patch_embedding_type="linear", attention_output_bias=True, layer_norm_eps=1e-5)
    else:
        atoms = _dims(state_dict, "transformer.layers.0.1.fn.D", 2)[1]
        if atoms % hidden_size:
            raise ValueError(f"`transformer.layers.0.1.fn.D` must have a multiple of d={hidden_size} atoms, got {atoms}")
        if pooling != "cls":
            raise ValueError(f"the CRATE-α port always pools the class token: `pooling` must be 'cls', got {pooling!r}")
        kwargs.update(block_type="odl", patch_embedding_type="conv", attention_output_bias=False,
                      odl_expansion=atoms // hidden_size, odl_steps=2, layer_norm_eps=1e-6,
                      pooler_layer_norm_eps=1e-5)
    return CrateConfig(**kwargs)


def _mapping(layout: str, config: CrateConfig) -> list[tuple[str, str, bool]]:
    """``(official key, our key, transpose)`` for every tensor."""
    pairs = [("cls_token", "crate.embeddings.cls_token", False),
             ("pos_embedding", "crate.embeddings.position_embeddings", False)]
    stem = "crate.embeddings.patch_embeddings"
    if layout == "crate":
        for index, name in ((1, "patch_norm"), (2, "projection"), (3, "embedding_norm")):
            pairs += [(f"to_patch_embedding.{index}.{p}", f"{stem}.{name}.{p}", False) for p in ("weight", "bias")]
    else:
        pairs += [(f"conv1.{p}", f"{stem}.projection.{p}", False) for p in ("weight", "bias")]
    for i in range(config.num_hidden_layers):
        source, target = f"transformer.layers.{i}", f"crate.layers.{i}"
        pairs += [(f"{source}.0.norm.{p}", f"{target}.attention_norm.{p}", False) for p in ("weight", "bias")]
        pairs.append((f"{source}.0.fn.qkv.weight", f"{target}.attention.subspace_projection.weight", False))
        pairs.append((f"{source}.0.fn.to_out.0.weight", f"{target}.attention.output_projection.weight", False))
        if config.attention_output_bias:
            pairs.append((f"{source}.0.fn.to_out.0.bias", f"{target}.attention.output_projection.bias", False))
        pairs += [(f"{source}.1.norm.{p}", f"{target}.sparse_coding_norm.{p}", False) for p in ("weight", "bias")]
        if layout == "crate":
            # Both store D like a Linear weight: F.linear(y, D) = D y.
            pairs.append((f"{source}.1.fn.weight", f"{target}.sparse_coding.dictionary", False))
        else:
            # The port keeps D as (d, s) and computes Dᵀ y by einsum; ours stores Dᵀ (s, d) for F.linear.
            pairs.append((f"{source}.1.fn.D", f"{target}.sparse_coding.encoder_dictionary", True))
            pairs.append((f"{source}.1.fn.D1", f"{target}.sparse_coding.decoder_dictionary", False))
    pairs += [(f"mlp_head.0.{p}", f"crate.pooler_norm.{p}", False) for p in ("weight", "bias")]
    pairs += [(f"mlp_head.1.{p}", f"classifier.{p}", False) for p in ("weight", "bias")]
    return pairs


def convert_original_state_dict(
    state_dict: dict[str, torch.Tensor], config: CrateConfig, layout: str | None = None
) -> dict[str, torch.Tensor]:
    """Rename (and where needed transpose) an official state dict into `CrateForImageClassification`'s keys,
    checking every shape against the model ``config`` builds.

    An attention without ``to_out`` (the authors' code drops it when ``heads == 1`` and ``dim_head == dim``) maps to
    an identity output projection with zero bias, which computes the same thing.

    Raises:
        ValueError: a key missing or left over, or a shape that differs from what ``config`` expects (the message
            names the key, the expected and the received shape).
    """
    layout = detect_original_layout(state_dict) if layout is None else layout
    if layout not in ORIGINAL_LAYOUTS:
        raise ValueError(f"`layout` must be one of {ORIGINAL_LAYOUTS}, got {layout!r}")
    with torch.device("meta"):
        expected = {key: tuple(value.shape) for key, value in CrateForImageClassification(config).state_dict().items()}
    state_dict = dict(state_dict)
    converted, used = {}, set()
    for source, target, transpose in _mapping(layout, config):
        if source not in state_dict and ".to_out.0." in source and config.num_attention_heads == 1 \
                and config.head_dim == config.hidden_size:
            width = config.hidden_size
            converted[target] = torch.eye(width) if source.endswith("weight") else torch.zeros(width)
            continue
        tensor = _get(state_dict, source)
        used.add(source)
        if transpose:
            tensor = tensor.t()
        if tuple(tensor.shape) != expected[target]:
            shown = f"{tuple(tensor.shape[::-1])} (transposed to {tuple(tensor.shape)})" if transpose \
                else str(tuple(tensor.shape))
            raise ValueError(f"`{source}` (→ `{target}`) must have shape "
                             f"{expected[target][::-1] if transpose else expected[target]} for this configuration, "
                             f"got {shown}")
        if not tensor.is_floating_point():
            raise ValueError(f"`{source}` must be a floating-point tensor, got dtype {tensor.dtype}")
        converted[target] = tensor.contiguous().clone()
    left_over = sorted(set(state_dict) - used)
    if left_over:
        raise ValueError(f"the checkpoint holds keys the {layout} layout does not have (another architecture?): "
                         f"{left_over[:8]}")
    missing = sorted(set(expected) - set(converted))
    if missing:  # would be a bug in `_mapping`
        raise ValueError(f"no official tensor was mapped to {missing}")
    return converted


def convert_crate_checkpoint(
    checkpoint_path,
    output_dir,
    layout: str | None = None,
    num_attention_heads: int | None = None,
    num_channels: int = 3,
    pooling: str = "cls",
    ista_step_size: float = 0.1,
    ista_lambda: float = 0.1,
    id2label: dict[int, str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> CrateForImageClassification:
    """Read an authors' checkpoint, build the matching `CrateForImageClassification`, load every tensor (strict),
    and write ``output_dir`` with ``save_pretrained`` and a `CrateImageProcessor` of the authors' evaluation
    transform (resize to the image size, ImageNet mean and std; the crop is left to the user: CRATE's main.py
    resizes to 256 and centre-crops 224, the CRATE-α evaluation resizes the short side to 224 and centre-crops). ``AutoModelForImageClassification.from_pretrained(output_dir)`` loads it.

    Returns the converted model (in eval mode).
    """
    state_dict = load_original_state_dict(checkpoint_path)
    layout = detect_original_layout(state_dict) if layout is None else layout
    config = crate_config_from_original(state_dict, layout, num_attention_heads, num_channels, pooling,
                                        ista_step_size, ista_lambda, id2label)
    converted = convert_original_state_dict(state_dict, config, layout)
    model = CrateForImageClassification(config)
    model.load_state_dict(converted, strict=True)
    model = model.to(dtype).eval()
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    if config.num_channels in (1, 3):  # the processor converts images to grey or RGB only
        mean = _IMAGENET_MEAN if config.num_channels == 3 else [0.5]
        std = _IMAGENET_STD if config.num_channels == 3 else [0.5]
        CrateImageProcessor(
            num_channels=config.num_channels, size={"height": config.image_size, "width": config.image_size},
            image_mean=mean, image_std=std,
        ).save_pretrained(output_dir)
    return model
