"""The bad-input cases for every public configuration and model (issue 12), enumerated from the Auto tables.

Each case is ``(group, name, callable, argument_name)``: calling it feeds one bad value to the public API, and
`_harness.classify` judges the outcome. The families come from `whitebox_hf.models.auto` (``CONFIGS`` and
``MODELS``), so a new family is fuzzed as soon as it is registered, once it has a tiny configuration in `TINY`
(tests/fuzz/test_fuzz_models.py fails until it does).

Used by tests/fuzz/test_fuzz_models.py and benchmarks/fuzz_report.py; it must also run against older trees of the
package (the report counts the tree before issue 12), so it uses the public API only.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import tempfile
import typing
from pathlib import Path

import torch
from transformers import PreTrainedConfig

import whitebox_hf
from whitebox_hf.models.auto import CONFIGS, MODELS, register_auto_classes

# Registering up front is harmless here, and lets the tree before issue 12 import its CLIP model at all (there a
# first import of BertModel read the Auto mappings mid-import and ran into a circular import).
register_auto_classes()

# A tiny, valid configuration per registered config class (floats written as floats).
_TINY_VISION = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=8, patch_size=4,
                    num_channels=1)
_TINY_LM = dict(vocab_size=32, max_position_embeddings=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
TINY: dict[str, dict] = {
    "CrateConfig": dict(_TINY_VISION, num_labels=3),
    "CausalCrateConfig": dict(_TINY_LM),
    "AoTConfig": dict(_TINY_LM),
    "ToSTConfig": dict(_TINY_LM),
    "ToSTVisionConfig": dict(_TINY_VISION, num_labels=3, num_class_attention_layers=1, fourier_channels=8),
    "WhiteboxClipConfig": dict(
        text_tower="clip", projection_dim=8, vision_config=dict(_TINY_VISION),
        text_config=dict(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=16),
    ),
    "SitaVaeConfig": dict(num_latents=4, hidden_size=16, num_attention_heads=2, num_encoder_layers=1,
                          num_decoder_layers=1, latent_channels=3, alignment_dim=8),
    "CupidFlowConfig": dict(cube_resolution=4, patch_size=2, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            image_encoder_config=dict(_TINY_VISION)),
    "CupidAppearanceConfig": dict(cube_resolution=4, patch_size=2, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, pixel_feature_layers=1,
                                  image_encoder_config=dict(_TINY_VISION, num_channels=3)),
    "MotionPriorConfig": dict(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_encoder_layers=1,
                              num_decoder_layers=1, noise_embedding_dim=8),
}
BATCH, SEQUENCE = 2, 5
POINTS, QUERIES = 12, 6  # surface points and query points of a shape model
NAN, INF = float("nan"), float("inf")


def config_class(name: str):
    return getattr(whitebox_hf, name)


def tiny_config(name: str, **overrides):
    return config_class(name)(**{**TINY[name], **overrides})


def own_fields(cls) -> list[dataclasses.Field]:
    """The fields a whitebox_hf configuration declares (not `PreTrainedConfig`'s own)."""
    base = {field.name for field in dataclasses.fields(PreTrainedConfig)}
    return [field for field in dataclasses.fields(cls) if field.name not in base]


def _field_kind(cls, field: dataclasses.Field) -> str:
    """"int", "float", "bool", "str", "config" or "interval" from the declared annotation (strings resolved)."""
    annotation = field.type
    if isinstance(annotation, str):  # postponed annotations (older trees): read the names in the string
        names = set(re.findall(r"[A-Za-z_][A-Za-z_0-9.]*", annotation))
        if "dict" in names or any(name.endswith("Config") for name in names):
            return "config"
        return next(kind for kind in ("bool", "int", "float", "str") if kind in names)
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)] or [annotation]
    if any(isinstance(arg, type) and issubclass(arg, PreTrainedConfig) for arg in args) or dict in args:
        return "config"
    for kind in (bool, int, float, str):
        if kind in args:
            return kind.__name__
    if any(typing.get_origin(arg) is list for arg in args):
        return "interval"  # a [low, high] pair of numbers (CupidFlowConfig.guidance_interval)
    raise AssertionError(f"{cls.__name__}.{field.name}: no fuzz values for annotation {annotation!r}")


# Bad values per declared kind: a wrong type, and for numbers a value no field accepts. Every int field is a size
# or a count (positive); every str field is a choice among names.
BAD_VALUES: dict[str, tuple] = {
    "int": ("8", 2.5, True, -3, NAN),
    "float": ("0.1", True, None, NAN, INF, -INF),
    "bool": ("yes", 2),
    "str": ("no-such-choice", 3),
    "config": ("crate", 3),
    "interval": ("0.5", 3, [0.5], [0.8, 0.2], [NAN, 1.0], [0.5, "1"]),
}


def config_cases():
    for name in CONFIGS:
        cls = config_class(name)
        for field in own_fields(cls):
            for value in BAD_VALUES[_field_kind(cls, field)]:
                if value is None and field.default is None:
                    continue  # None is this optional field's documented default ("same as ..."), not a bad value
                yield ("config", f"{name}({field.name}={value!r})",
                       functools.partial(tiny_config, name, **{field.name: value}), field.name)
            typo = field.name[:-2] + field.name[-1] + field.name[-2]  # hidden_size -> hidden_siez
            if typo != field.name:
                yield ("config", f"{name}({typo}=...)", functools.partial(tiny_config, name, **{typo: 1}), typo)
        for value in (0, -1, "3", 2.0):
            yield ("config", f"{name}(num_labels={value!r})",
                   functools.partial(tiny_config, name, num_labels=value), "num_labels")


# ------------------------------------------------------------------------------------------------ model forwards


@functools.cache
def tiny_model(model_name: str):
    config_name = next(config for _, config, model in MODELS if model == model_name)
    torch.manual_seed(0)
    return getattr(whitebox_hf, model_name)(tiny_config(config_name)).eval()


def _vision_config(config, kind: str):
    """The configuration of the model's image encoder (the model's own for a vision model)."""
    return (config.vision_config if kind == "clip" else config.image_encoder_config if kind in ("cube", "appearance")
            else config)


def _kind(model) -> str:
    if model.config.model_type == "whitebox_clip":
        return "clip"
    if model.config.model_type == "motion_prior":
        return "motion"
    if model.config.model_type == "cupid_appearance":
        return "appearance"
    if model.main_input_name == "surface_points":
        return "shape"
    if model.main_input_name == "sample":
        return "cube"
    return "text" if "input_ids" == model.main_input_name else "vision"


def valid_inputs(model) -> dict:
    """A valid batch for ``model`` (fixed seed)."""
    generator = torch.Generator().manual_seed(0)
    config, kind, inputs = model.config, _kind(model), {}
    if kind == "shape":
        # Surface points (xyz + normals) and occupancy query points, with 0/1 labels (first half volume points).
        inputs["surface_points"] = torch.randn(BATCH, POINTS, 6, generator=generator)
        inputs["query_points"] = torch.randn(BATCH, QUERIES, 3, generator=generator)
        inputs["occupancy_labels"] = (torch.rand(BATCH, QUERIES, generator=generator) > 0.5).float()
        return inputs
    if kind == "motion":
        # A noisy motion window, its diffusion steps, the head poses of its frames and the clean target.
        inputs["sample"] = torch.randn(BATCH, SEQUENCE, config.motion_size, generator=generator)
        inputs["timestep"] = torch.tensor([0, config.num_train_timesteps - 1])
        head_poses = torch.eye(4).repeat(BATCH, SEQUENCE, 1, 1)
        head_poses[..., :3, 3] = torch.randn(BATCH, SEQUENCE, 3, generator=generator)
        inputs["head_poses"] = head_poses
        inputs["floor_height"] = torch.zeros(BATCH)
        inputs["attention_mask"] = torch.ones(BATCH, SEQUENCE, dtype=torch.long)
        inputs["target"] = torch.randn(BATCH, SEQUENCE, config.motion_size, generator=generator)
        return inputs
    if kind == "cube":
        # A noisy occupancy + UV cube, its flow times, the condition image and a velocity target.
        side = config.cube_resolution
        inputs["sample"] = torch.randn(BATCH, config.cube_channels, side, side, side, generator=generator)
        inputs["timestep"] = torch.rand(BATCH, generator=generator)
        inputs["target"] = torch.randn(BATCH, config.cube_channels, side, side, side, generator=generator)
        inputs["drop_condition"] = torch.tensor([True, False])
    if kind == "appearance":
        # Noisy per-voxel colours, their flow times, the occupied voxels, a camera looking at them, a target.
        side = config.cube_resolution
        inputs["sample"] = torch.randn(BATCH, config.color_channels, side, side, side, generator=generator)
        inputs["timestep"] = torch.rand(BATCH, generator=generator)
        inputs["occupancy"] = torch.rand(BATCH, side, side, side, generator=generator) > 0.5
        inputs["intrinsics"] = torch.tensor([[1.4, 0.0, 0.5], [0.0, 1.4, 0.5], [0.0, 0.0, 1.0]]).repeat(BATCH, 1, 1)
        inputs["rotations"] = torch.eye(3).repeat(BATCH, 1, 1)
        inputs["translations"] = torch.tensor([0.0, 0.0, 2.5]).repeat(BATCH, 1)
        inputs["target"] = torch.randn(BATCH, config.color_channels, side, side, side, generator=generator)
        inputs["drop_condition"] = torch.tensor([True, False])
    if kind in ("vision", "clip", "cube", "appearance"):
        vision = _vision_config(config, kind)
        side = vision.image_size
        inputs["pixel_values"] = torch.randn(BATCH, vision.num_channels, side, side, generator=generator)
    if kind in ("text", "clip"):
        vocab = config.text_config.vocab_size if kind == "clip" else config.vocab_size
        inputs["input_ids"] = torch.randint(0, vocab, (BATCH, SEQUENCE), generator=generator)
        inputs["attention_mask"] = torch.ones(BATCH, SEQUENCE, dtype=torch.long)
    if type(model).__name__.endswith("ForImageClassification"):
        inputs["labels"] = torch.tensor([0, 1])
    if type(model).__name__.endswith("ForCausalLM"):
        inputs["labels"] = inputs["input_ids"].clone()
    return inputs


def _with_value_at_first(tensor: torch.Tensor, value) -> torch.Tensor:
    out = tensor.clone()
    out.view(-1)[0] = value
    return out


def bad_inputs(model):
    """``(argument, description, bad value)`` for every input of ``model``."""
    valid, config, kind = valid_inputs(model), model.config, _kind(model)
    if "pixel_values" in valid:
        pixels = valid["pixel_values"]
        patch = _vision_config(config, kind).patch_size
        yield "pixel_values", "uint8 image", (pixels * 40 + 128).clamp(0, 255).to(torch.uint8)
        yield "pixel_values", "int64 image", (pixels * 40 + 128).long()
        yield "pixel_values", "bool image", pixels > 0
        yield "pixel_values", "complex image", pixels.to(torch.complex64)
        yield "pixel_values", "a NaN pixel", _with_value_at_first(pixels, NAN)
        yield "pixel_values", "an inf pixel", _with_value_at_first(pixels, INF)
        yield "pixel_values", "wrong channels", pixels.repeat(1, 2, 1, 1)
        yield "pixel_values", "empty batch", pixels[:0]
        yield "pixel_values", "3-D", pixels[0]
        yield "pixel_values", "a list", pixels.tolist()
        yield "pixel_values", "side not divisible by the patch", pixels[..., : patch + 1, : patch + 1]
    if "surface_points" in valid:
        points, queries, labels = valid["surface_points"], valid["query_points"], valid["occupancy_labels"]
        yield "surface_points", "xyz without normals", points[..., :3]
        yield "surface_points", "2-D", points[0]
        yield "surface_points", "int64 points", points.long()
        yield "surface_points", "a NaN coordinate", _with_value_at_first(points, NAN)
        yield "surface_points", "an inf coordinate", _with_value_at_first(points, INF)
        yield "surface_points", "empty batch", points[:0]
        yield "surface_points", "a list", points.tolist()
        yield "query_points", "2-D", queries[0]
        yield "query_points", "4-D", queries[..., None]
        yield "query_points", "4 columns", torch.cat([queries, queries[..., :1]], dim=-1)
        yield "query_points", "another batch size", queries[:1]
        yield "query_points", "a NaN coordinate", _with_value_at_first(queries, NAN)
        yield "query_points", "a list", queries.tolist()
        yield "occupancy_labels", "wrong shape", labels[:, :-1]
        yield "occupancy_labels", "label of 2", _with_value_at_first(labels, 2.0)
        yield "occupancy_labels", "a NaN label", _with_value_at_first(labels, NAN)
        yield "occupancy_labels", "bool labels", labels > 0
        for name in ("image_embeds", "text_embeds"):
            yield name, "wrong width", torch.randn(BATCH, config.alignment_dim + 1)
            yield name, "1-D", torch.randn(config.alignment_dim)
            yield name, "a NaN", _with_value_at_first(torch.randn(BATCH, config.alignment_dim), NAN)
    if kind == "motion":
        for name in ("sample", "target"):
            motion = valid[name]
            yield name, "2-D", motion[0]
            yield name, "wrong width", motion[..., :-1]
            yield name, "int64 motion", motion.long()
            yield name, "a NaN", _with_value_at_first(motion, NAN)
            yield name, "a list", motion.tolist()
        yield "sample", "empty batch", valid["sample"][:0]
        yield "target", "another length", valid["target"][:, :-1]
        timestep = valid["timestep"]
        yield "timestep", "t = num_train_timesteps", _with_value_at_first(timestep, config.num_train_timesteps)
        yield "timestep", "negative t", _with_value_at_first(timestep, -1)
        yield "timestep", "float times", timestep.float()
        yield "timestep", "0-D", timestep[0]
        yield "timestep", "another batch size", timestep[:1]
        head_poses = valid["head_poses"]
        sheared = head_poses.clone()
        sheared[0, 0, 0, 1] = 0.5
        yield "head_poses", "not rigid", sheared
        yield "head_poses", "a NaN", _with_value_at_first(head_poses, NAN)
        yield "head_poses", "one frame", head_poses[:, :1]
        yield "head_poses", "another length", head_poses[:, :-1]
        yield "head_poses", "3-D", head_poses[0]
        yield "head_poses", "int64 poses", head_poses.long()
        yield "head_poses", "a list", head_poses.tolist()
        yield "floor_height", "wrong shape", valid["floor_height"][:1]
        yield "floor_height", "an inf", _with_value_at_first(valid["floor_height"], INF)
        mask = valid["attention_mask"]
        yield "attention_mask", "mask of 2", torch.full_like(mask, 2)
        yield "attention_mask", "wrong shape", mask[:, :-1]
        return
    if "sample" in valid:
        for name in ("sample", "target"):
            cube = valid[name]
            yield name, "4-D", cube[0]
            yield name, "wrong side", cube[..., :-1]
            yield name, "int64 cube", cube.long()
            yield name, "a NaN", _with_value_at_first(cube, NAN)
            yield name, "a list", cube.tolist()
        yield "sample", "empty batch", valid["sample"][:0]
        yield "target", "another batch size", valid["target"][:1]
        timestep = valid["timestep"]
        yield "timestep", "t > 1", _with_value_at_first(timestep, 1.5)
        yield "timestep", "a NaN", _with_value_at_first(timestep, NAN)
        yield "timestep", "int64 times", timestep.long()
        yield "timestep", "0-D", timestep[0]
        yield "timestep", "another batch size", timestep[:1]
        yield "drop_condition", "int64 mask", valid["drop_condition"].long()
        yield "drop_condition", "wrong shape", valid["drop_condition"][:1]
    if "occupancy" in valid:
        occupancy = valid["occupancy"]
        yield "occupancy", "float occupancy", occupancy.float()
        yield "occupancy", "wrong side", occupancy[..., :-1]
        yield "occupancy", "another batch size", occupancy[:1]
        yield "occupancy", "a list", occupancy.tolist()
        for name in ("intrinsics", "rotations", "translations"):
            camera = valid[name]
            yield name, "another batch size", camera[:1]
            yield name, "int64 camera", camera.long()
            yield name, "a NaN", _with_value_at_first(camera, NAN)
            yield name, "missing", None
    if "input_ids" in valid:
        ids = valid["input_ids"]
        vocab = config.text_config.vocab_size if kind == "clip" else config.vocab_size
        yield "input_ids", "float ids", ids.float()
        yield "input_ids", "bool ids", ids > 0
        yield "input_ids", "id = vocab_size", _with_value_at_first(ids, vocab)
        yield "input_ids", "negative id", _with_value_at_first(ids, -1)
        yield "input_ids", "1-D", ids[0]
        yield "input_ids", "a list", ids.tolist()
        if kind == "text":
            yield "input_ids", "empty sequence", ids[:, :0]
    if "attention_mask" in valid:
        mask = valid["attention_mask"]
        yield "attention_mask", "mask of 0.5", torch.full(mask.shape, 0.5)
        yield "attention_mask", "mask of 2", torch.full_like(mask, 2)
        yield "attention_mask", "mask of -1", _with_value_at_first(mask, -1)
        yield "attention_mask", "wrong shape", mask[:, :-1]
    if "labels" in valid:
        labels = valid["labels"]
        high = config.num_labels if labels.ndim == 1 else config.vocab_size
        yield "labels", "label = upper bound", _with_value_at_first(labels, high)
        yield "labels", "negative label", _with_value_at_first(labels, -5)
        yield "labels", "wrong shape", labels[:1]
        yield "labels", "a list", labels.tolist()
    if type(model).__name__ == "CrateForMaskedImageModeling":
        num_patches = (config.image_size // config.patch_size) ** 2
        yield "bool_masked_pos", "mask of 2", torch.full((BATCH, num_patches), 2)
        yield "bool_masked_pos", "mask of 0.5", torch.full((BATCH, num_patches), 0.5)
        yield "bool_masked_pos", "wrong shape", torch.ones(BATCH, num_patches + 1, dtype=torch.bool)


def forward_cases():
    for _, _, model_name in MODELS:
        model = tiny_model(model_name)
        valid = valid_inputs(model)
        for argument, description, value in bad_inputs(model):
            inputs = {**valid, argument: value}

            def call(model=model, inputs=inputs):
                with torch.no_grad():
                    return model(**inputs)

            yield "forward", f"{model_name}({argument}: {description})", call, argument


# -------------------------------------------------------------------------------------------------------- files


@functools.cache
def saved_folders() -> dict[str, Path]:
    """One saved tiny checkpoint per config class (the first model registered for it), in a temporary folder."""
    root = Path(tempfile.mkdtemp(prefix="whitebox_hf_fuzz_"))
    folders = {}
    for name in CONFIGS:
        model_name = next(model for _, config, model in MODELS if config == name)
        folders[name] = root / name
        tiny_model(model_name).save_pretrained(folders[name])
    return folders


def _edited_copy(folder: Path, edit) -> Path:
    """A copy of ``folder``'s config.json (edited by ``edit(dict)``) next to its weights."""
    target = Path(tempfile.mkdtemp(prefix="whitebox_hf_fuzz_edit_"))
    for file in folder.iterdir():
        os.symlink(file, target / file.name)
    (target / "config.json").unlink()
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (target / "config.json").write_text(json.dumps(config))
    return target


def _foreign(config_name: str) -> str:
    """A registered family other than ``config_name`` (a causal LM for image models, CRATE for the others)."""
    return "CausalCrateConfig" if config_name != "CausalCrateConfig" else "CrateConfig"


def file_cases():
    folders = saved_folders()
    for _, config_name, model_name in MODELS:
        model_class = getattr(whitebox_hf, model_name)
        foreign = folders[_foreign(config_name)]
        yield ("files", f"{model_name}.from_pretrained(<{_foreign(config_name)} folder>)",
               functools.partial(model_class.from_pretrained, foreign), "model_type")
    clip_folder = folders["WhiteboxClipConfig"]
    yield ("files", "CrateForImageClassification.from_pretrained(<WhiteboxClipConfig folder>)",
           functools.partial(whitebox_hf.CrateForImageClassification.from_pretrained, clip_folder), "model_type")
    for name in CONFIGS:
        cls, folder = config_class(name), folders[name]
        yield ("files", f"{name}.from_pretrained(<{_foreign(name)} folder>)",
               functools.partial(cls.from_pretrained, folders[_foreign(name)]), "model_type")
        first_int = next(field.name for field in own_fields(cls) if _field_kind(cls, field) == "int")
        first_float = next(field.name for field in own_fields(cls) if _field_kind(cls, field) == "float")
        typo = first_int + "_"
        for description, edit, argument in (
            (f"unknown key {typo}", lambda c, k=typo: c.update({k: 1}), typo),
            (f"{first_int} as a string", lambda c, k=first_int: c.update({k: str(c[k])}), first_int),
            (f"{first_float} = NaN", lambda c, k=first_float: c.update({k: NAN}), first_float),
        ):
            yield ("files", f"{name}.from_pretrained(config.json with {description})",
                   lambda cls=cls, folder=folder, edit=edit: cls.from_pretrained(_edited_copy(folder, edit)),
                   argument)
    model_name = next(model for _, config, model in MODELS if config == "CrateConfig")
    model_class = getattr(whitebox_hf, model_name)
    missing = str(Path(tempfile.gettempdir()) / "whitebox_hf_fuzz_no_such_folder")
    yield ("files", f"{model_name}.from_pretrained(<missing folder>)",
           functools.partial(model_class.from_pretrained, missing), missing)
    broken_json = Path(tempfile.mkdtemp(prefix="whitebox_hf_fuzz_json_"))
    (broken_json / "config.json").write_text('{"model_type": "crate", ')
    yield ("files", f"{model_name}.from_pretrained(<config.json not JSON>)",
           functools.partial(model_class.from_pretrained, broken_json), "config.json")
    truncated = Path(tempfile.mkdtemp(prefix="whitebox_hf_fuzz_weights_"))
    source = folders["CrateConfig"]
    (truncated / "config.json").write_bytes((source / "config.json").read_bytes())
    weights = (source / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    yield ("files", f"{model_name}.from_pretrained(<truncated model.safetensors>)",
           functools.partial(model_class.from_pretrained, truncated), "model.safetensors")


def all_cases():
    """Every case, in a fixed order: configurations, forwards, files."""
    yield from config_cases()
    yield from forward_cases()
    yield from file_cases()
