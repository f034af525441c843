"""Every saved whitebox_hf folder loads through the Auto classes it advertises, with no missing or unexpected
weights and the same outputs.

One case per model family and task head the package registers (`whitebox_hf/models/auto.py`); the last test
fails when a registration has no case here. Each case saves a tiny model and reloads it through `AutoConfig`,
its task Auto class (exact: nothing missing, unexpected or mismatched, equal outputs) and `AutoModel`. For a task
folder `AutoModel` gives the base model, as in transformers (`AutoModel` on a `ViTForImageClassification` folder):
every base weight must be loaded (the head is left over, "unexpected") and the base outputs must equal the task
model's own base model's.
"""

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageClassification,
    AutoModelForMaskedImageModeling,
)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.utils import ModelOutput

from whitebox_hf import (
    AoTConfig,
    AoTForCausalLM,
    AoTModel,
    CausalCrateConfig,
    CausalCrateForCausalLM,
    CausalCrateModel,
    CrateConfig,
    CrateForImageClassification,
    CrateForMaskedImageModeling,
    CrateModel,
    CupidAppearanceConfig,
    CupidAppearanceModel,
    CupidFlowConfig,
    CupidFlowModel,
    MotionPriorConfig,
    MotionPriorModel,
    SitaVaeConfig,
    SitaVaeModel,
    ToSTConfig,
    ToSTForCausalLM,
    ToSTForImageClassification,
    ToSTModel,
    ToSTVisionConfig,
    ToSTVisionModel,
    WhiteboxClipConfig,
    WhiteboxClipModel,
)

TASK_AUTO_CLASSES = (AutoModel, AutoModelForCausalLM, AutoModelForImageClassification, AutoModelForMaskedImageModeling)

IMAGE = dict(image_size=16, patch_size=4, num_channels=3)
VISION = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, **IMAGE)
LANGUAGE = dict(vocab_size=61, max_position_embeddings=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)


def crate(**overrides):
    return CrateConfig(**VISION, num_labels=3, **overrides)


def crate_alpha():
    return crate(block_type="odl", patch_embedding_type="conv", attention_output_bias=False, layer_norm_eps=1e-6,
                 position_embedding_init_std=0.02)


def crate_mae():
    return crate(patch_embedding_type="conv", ista_lambda=0.5, mask_ratio=0.75, decoder_num_hidden_layers=1)


def tost_vision():
    return ToSTVisionConfig(**VISION, num_labels=3)


def clip(text_tower):
    return lambda: WhiteboxClipConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, image_size=8, patch_size=4),
        text_config=dict(vocab_size=100, hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=48, max_position_embeddings=16),
        text_tower=text_tower, projection_dim=16)


def pixels(size=16):
    return dict(pixel_values=torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1)))


def token_ids():
    return dict(input_ids=torch.randint(0, 61, (2, 7), generator=torch.Generator().manual_seed(2)), use_cache=False)


def masked_pixels():
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, ::2] = mask[1, 1::3] = True
    return dict(**pixels(), bool_masked_pos=mask)


def sita_vae():
    return SitaVaeConfig(num_latents=4, hidden_size=16, num_attention_heads=2, num_encoder_layers=1,
                         num_decoder_layers=1, latent_channels=3, alignment_dim=8)


def shape_points():
    generator = torch.Generator().manual_seed(4)
    return dict(surface_points=torch.randn(2, 12, 6, generator=generator),
                query_points=torch.randn(2, 6, 3, generator=generator))


def cupid_flow():
    return CupidFlowConfig(cube_resolution=4, patch_size=2, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           image_encoder_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                     image_size=8, patch_size=4, num_channels=3))


def noisy_cube():
    generator = torch.Generator().manual_seed(5)
    return dict(sample=torch.randn(2, 3, 4, 4, 4, generator=generator), timestep=torch.rand(2, generator=generator),
                pixel_values=torch.randn(2, 3, 8, 8, generator=generator))


def cupid_appearance():
    return CupidAppearanceConfig(cube_resolution=4, patch_size=2, hidden_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, pixel_feature_layers=1,
                                 image_encoder_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                           image_size=8, patch_size=4, num_channels=3))


def noisy_colors():
    generator = torch.Generator().manual_seed(7)
    return dict(sample=torch.randn(2, 3, 4, 4, 4, generator=generator), timestep=torch.rand(2, generator=generator),
                occupancy=torch.rand(2, 4, 4, 4, generator=generator) > 0.4,
                pixel_values=torch.randn(2, 3, 8, 8, generator=generator),
                intrinsics=torch.tensor([[1.4, 0.0, 0.5], [0.0, 1.4, 0.5], [0.0, 0.0, 1.0]]).repeat(2, 1, 1),
                rotations=torch.eye(3).repeat(2, 1, 1), translations=torch.tensor([0.0, 0.0, 2.5]).repeat(2, 1))


def motion_prior():
    return MotionPriorConfig(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_encoder_layers=1,
                             num_decoder_layers=1, noise_embedding_dim=8)


def noisy_motion():
    generator = torch.Generator().manual_seed(6)
    head_poses = torch.eye(4).repeat(2, 5, 1, 1)
    head_poses[..., :3, 3] = torch.randn(2, 5, 3, generator=generator)
    return dict(sample=torch.randn(2, 5, 21 * 9 + 4, generator=generator), timestep=torch.tensor([3, 900]),
                head_poses=head_poses)


def image_text():
    generator = torch.Generator().manual_seed(3)
    attention_mask = torch.ones(2, 6, dtype=torch.long)
    attention_mask[0, 4:] = 0
    return dict(pixel_values=torch.randn(2, 3, 8, 8, generator=generator),
                input_ids=torch.randint(1, 100, (2, 6), generator=generator), attention_mask=attention_mask)


# id: (model class, configuration, inputs of the model, inputs of its base model)
CASES = {
    "crate": (CrateModel, crate, pixels, pixels),
    "crate-classification": (CrateForImageClassification, crate, pixels, pixels),
    "crate-alpha": (CrateModel, crate_alpha, pixels, pixels),
    "crate-alpha-classification": (CrateForImageClassification, crate_alpha, pixels, pixels),
    "crate-mae": (CrateForMaskedImageModeling, crate_mae, masked_pixels, pixels),
    "causal-crate": (CausalCrateModel, lambda: CausalCrateConfig(**LANGUAGE), token_ids, token_ids),
    "causal-crate-lm": (CausalCrateForCausalLM, lambda: CausalCrateConfig(**LANGUAGE), token_ids, token_ids),
    "crate-alpha-lm": (CausalCrateForCausalLM, lambda: CausalCrateConfig(**LANGUAGE, block_type="odl"), token_ids,
                       token_ids),
    "aot-mssa": (AoTModel, lambda: AoTConfig(**LANGUAGE), token_ids, token_ids),
    "aot-mssa-lm": (AoTForCausalLM, lambda: AoTConfig(**LANGUAGE), token_ids, token_ids),
    "aot-mhsa-lm": (AoTForCausalLM, lambda: AoTConfig(**LANGUAGE, attention_type="mhsa"), token_ids, token_ids),
    "tost": (ToSTModel, lambda: ToSTConfig(**LANGUAGE, layer_scale_init=1.0), token_ids, token_ids),
    "tost-lm": (ToSTForCausalLM, lambda: ToSTConfig(**LANGUAGE, layer_scale_init=1.0), token_ids, token_ids),
    "tost-vision": (ToSTVisionModel, tost_vision, pixels, pixels),
    "tost-vision-classification": (ToSTForImageClassification, tost_vision, pixels, pixels),
    "whitebox-clip": (WhiteboxClipModel, clip("clip"), image_text, image_text),
    "whitebox-lift": (WhiteboxClipModel, clip("lift"), image_text, image_text),
    "sita-vae": (SitaVaeModel, sita_vae, shape_points, shape_points),
    "cupid-flow": (CupidFlowModel, cupid_flow, noisy_cube, noisy_cube),
    "cupid-appearance": (CupidAppearanceModel, cupid_appearance, noisy_colors, noisy_colors),
    "motion-prior": (MotionPriorModel, motion_prior, noisy_motion, noisy_motion),
}


def registered_model_classes() -> dict[type, type]:
    """Every whitebox_hf model class registered with a model Auto class, mapped to that Auto class."""
    registered = {}
    for auto_class in TASK_AUTO_CLASSES:
        for model_class in auto_class._model_mapping._extra_content.values():
            if model_class.__module__.startswith("whitebox_hf."):
                registered[model_class] = auto_class
    return registered


def tensors(output) -> list[torch.Tensor]:
    """Every tensor of a model output, nested outputs and tuples included, in a fixed order."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, ModelOutput):
        output = output.to_tuple()
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in tensors(item)]
    return []


def assert_same_outputs(first, second):
    first, second = tensors(first), tensors(second)
    assert len(first) == len(second) > 0
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def assert_exact(info):
    assert {name: set(info[name]) for name in ("missing_keys", "unexpected_keys", "mismatched_keys")} == {
        "missing_keys": set(), "unexpected_keys": set(), "mismatched_keys": set()}


@pytest.mark.parametrize("case", list(CASES))
def test_saved_folder_loads_through_auto_config_its_task_auto_class_and_auto_model(case, tmp_path):
    model_class, make_config, make_inputs, make_base_inputs = CASES[case]
    torch.manual_seed(0)
    model = model_class(make_config()).eval()
    model.save_pretrained(tmp_path)

    assert type(AutoConfig.from_pretrained(tmp_path)) is type(model.config)

    task_auto_class = registered_model_classes()[model_class]
    loaded, info = task_auto_class.from_pretrained(tmp_path, output_loading_info=True)
    assert type(loaded) is model_class
    assert_exact(info)
    with torch.no_grad():
        assert_same_outputs(loaded.eval()(**make_inputs()), model(**make_inputs()))

    base, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert type(base) is type(model.base_model)
    if model.base_model is model:
        assert_exact(info)  # a base-model folder: the same exact promise
    else:
        # A task folder: every base weight is loaded; only the task's own weights are left over.
        assert set(info["missing_keys"]) == set() and set(info["mismatched_keys"]) == set()
        base_keys = {f"{model.base_model_prefix}.{key}" for key in base.state_dict()}
        assert not set(info["unexpected_keys"]) & base_keys
    with torch.no_grad():
        assert_same_outputs(base.eval()(**make_base_inputs()), model.base_model(**make_base_inputs()))


def test_every_registered_model_class_has_a_case():
    covered = {model_class for model_class, *_ in CASES.values()}
    assert set(registered_model_classes()) <= covered
    # And every whitebox_hf configuration registered with AutoConfig is exercised.
    registered_configs = {c for c in CONFIG_MAPPING._extra_content.values() if c.__module__.startswith("whitebox_hf.")}
    assert registered_configs <= {type(make_config()) for _, make_config, *_ in CASES.values()}
