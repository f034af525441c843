"""Cupid's stage-1 flow (`CupidFlowModel`): shapes, the rectified-flow helpers, a few steps of overfitting one cube,
classifier-free guidance on its interval only, save/load, and bad inputs."""

import itertools
import math

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from whitebox_hf import CUPID_FLOW_PRESETS, CupidFlowConfig, CupidFlowModel
from whitebox_hf.models.cupid.modeling_cupid_flow import (
    flow_matching_target,
    interpolate_flow_path,
    sample_logit_normal_timesteps,
    shift_timesteps,
)

ENCODER = dict(image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=1, num_attention_heads=4)


def tiny_config(**overrides):
    return CupidFlowConfig(**{**dict(cube_resolution=8, patch_size=2, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, image_encoder_config=ENCODER), **overrides})


def randomised(model):
    """The model with every weight random: AdaLN-zero starts at zero velocity for every input, under which the
    guidance tests could not fail."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def inputs(batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return dict(sample=torch.randn(batch, 3, 8, 8, 8, generator=generator),
                timestep=torch.rand(batch, generator=generator),
                pixel_values=torch.randn(batch, 3, 16, 16, generator=generator))


def test_output_shapes_loss_and_zero_initial_velocity():
    torch.manual_seed(0)
    model = CupidFlowModel(tiny_config()).eval()
    batch = inputs()
    output = model(**batch)
    assert output.velocity.shape == (2, 3, 8, 8, 8) and output.loss is None
    assert torch.count_nonzero(output.velocity) == 0  # AdaLN-zero: the output layer starts at zero
    target = torch.randn(2, 3, 8, 8, 8)
    with_target = model(**batch, target=target)
    torch.testing.assert_close(with_target.loss, target.pow(2).mean())
    # Image tokens may come from another encoder of the same width.
    tokens = model.encode_image(batch["pixel_values"])
    assert tokens.shape == (2, 1 + 16, 32)
    model = randomised(model)
    torch.testing.assert_close(model(sample=batch["sample"], timestep=batch["timestep"],
                                     encoder_hidden_states=model.encode_image(batch["pixel_values"])).velocity,
                               model(**batch).velocity)


def test_presets_build_configs_and_the_cpu_preset_has_512_tokens():
    assert CupidFlowConfig.from_preset("cupid-flow-cpu").num_tokens == 512
    assert CupidFlowConfig.from_preset("cupid-flow-l").num_tokens == 16**3  # TRELLIS's stage-1 token grid
    assert set(CUPID_FLOW_PRESETS) == {"cupid-flow-cpu", "cupid-flow-l"}
    with pytest.raises(ValueError, match="unknown preset"):
        CupidFlowConfig.from_preset("cupid-flow-xl")


def test_rectified_flow_helpers_match_the_spec_and_diffusers():
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    # TRELLIS's rescale_t and diffusers' shift are the same warp.
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    scheduler.set_timesteps(sigmas=torch.linspace(1, 0, 5)[:-1].numpy())
    torch.testing.assert_close(scheduler.sigmas, shift_timesteps(torch.linspace(1, 0, 5), 3.0))
    torch.testing.assert_close(shift_timesteps(t, 3.0), 3 * t / (1 + 2 * t))
    clean, noise = torch.randn(4, 3, 2, 2, 2), torch.randn(4, 3, 2, 2, 2)
    path = interpolate_flow_path(clean, noise, t, sigma_min=1e-5)
    torch.testing.assert_close(path[0], clean[0] + 1e-5 * noise[0])
    torch.testing.assert_close(path[3], noise[3])
    # The target is the path's time derivative.
    h = 1e-3
    derivative = (interpolate_flow_path(clean, noise, t + h) - interpolate_flow_path(clean, noise, t - h)) / (2 * h)
    torch.testing.assert_close(derivative, flow_matching_target(clean, noise), atol=1e-4, rtol=1e-4)
    samples = sample_logit_normal_timesteps(20000, 1.0, 1.0, generator=torch.Generator().manual_seed(0))
    logits = torch.logit(samples)
    assert abs(logits.mean().item() - 1.0) < 0.05 and abs(logits.std().item() - 1.0) < 0.05


def test_loss_decreases_when_overfitting_one_cube():
    torch.manual_seed(0)
    model = CupidFlowModel(tiny_config(condition_dropout_prob=0.0)).train()
    cube = (torch.rand(1, 3, 8, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float() * 2 - 1
    image = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    assert not any(p.requires_grad for p in model.image_encoder.parameters())  # frozen encoder

    def evaluation_loss():
        generator = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return sum(model.flow_matching_loss(cube.expand(8, -1, -1, -1, -1), pixel_values=image.expand(8, -1, -1,
                       -1), generator=generator).item() for _ in range(2)) / 2

    before = evaluation_loss()
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        loss = model.flow_matching_loss(cube.expand(4, -1, -1, -1, -1), pixel_values=image.expand(4, -1, -1, -1),
                                        generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = evaluation_loss()
    assert after < 0.6 * before, (before, after)


def test_guidance_off_equals_the_conditional_velocity_and_applies_only_on_its_interval():
    model = randomised(CupidFlowModel(tiny_config()))
    batch = inputs()
    tokens = model.encode_image(batch["pixel_values"])
    with torch.no_grad():
        for time in (0.3, 0.7):
            t = torch.full((2,), time)
            conditional = model(sample=batch["sample"], timestep=t, encoder_hidden_states=tokens).velocity
            unconditional = model(sample=batch["sample"], timestep=t,
                                  encoder_hidden_states=torch.zeros_like(tokens)).velocity
            assert (conditional - unconditional).abs().max() > 1e-3  # the condition matters
            off = model.guided_velocity(batch["sample"], t, tokens, 1.0, (0.5, 1.0))
            torch.testing.assert_close(off, conditional, atol=0, rtol=0)
            guided = model.guided_velocity(batch["sample"], t, tokens, 4.0, (0.5, 1.0))
            if time < 0.5:  # outside the interval: the conditional velocity alone
                torch.testing.assert_close(guided, conditional, atol=0, rtol=0)
            else:
                torch.testing.assert_close(guided, unconditional + 4.0 * (conditional - unconditional))
        # The null condition is zero image tokens; drop_condition applies it per row.
        dropped = model(**batch, drop_condition=torch.tensor([True, False])).velocity
        zero = model(sample=batch["sample"], timestep=batch["timestep"],
                     encoder_hidden_states=torch.zeros_like(tokens)).velocity
        torch.testing.assert_close(dropped[0], zero[0])
        torch.testing.assert_close(dropped[1], model(**batch).velocity[1])


def test_sampler_is_euler_on_the_shifted_grid_with_interval_guidance():
    model = randomised(CupidFlowModel(tiny_config(time_shift=3.0)))
    batch = inputs(batch=1)
    tokens = model.encode_image(batch["pixel_values"])
    start = torch.randn(1, 3, 8, 8, 8, generator=torch.Generator().manual_seed(5))
    sampled = model.sample(encoder_hidden_states=tokens, num_inference_steps=4, guidance_scale=3.0, latents=start)
    # By hand: t on linspace(1, 0, 5) warped by the shift, guided only where t ∈ [0.5, 1].
    grid = shift_timesteps(torch.linspace(1, 0, 5), 3.0)
    x = start
    with torch.no_grad():
        for t, t_next in itertools.pairwise(grid):
            velocity = model.guided_velocity(x, t.expand(1), tokens, 3.0, (0.5, 1.0))
            x = x + (t_next - t) * velocity
    torch.testing.assert_close(sampled, x, atol=1e-5, rtol=1e-5)
    assert math.isclose(grid[3].item(), 0.5)  # the 4th step starts on the interval's edge: still guided
    unguided = model.sample(encoder_hidden_states=tokens, num_inference_steps=4, guidance_scale=1.0, latents=start)
    assert (unguided - sampled).abs().max() > 1e-4


def test_save_and_load_round_trip(tmp_path):
    model = randomised(CupidFlowModel(tiny_config()))
    model.save_pretrained(tmp_path)
    loaded, info = CupidFlowModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert loaded.config.guidance_interval == [0.5, 1.0]
    assert not any(p.requires_grad for p in loaded.image_encoder.parameters())
    batch = inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(**batch).velocity, model(**batch).velocity, atol=0, rtol=0)


@pytest.mark.parametrize("overrides, match", [
    (dict(patch_size=3), "`patch_size`"),
    (dict(num_attention_heads=5), "`num_attention_heads`"),
    (dict(guidance_interval=[0.8, 0.2]), "`guidance_interval`"),
    (dict(guidance_scale=0.5), "`guidance_scale`"),
    (dict(condition_dropout_prob=1.5), "`condition_dropout_prob`"),
    (dict(sigma_min=1.0), "`sigma_min`"),
])
def test_bad_configurations_raise_naming_the_argument(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**overrides)


def test_bad_inputs_raise_naming_the_argument():
    model = CupidFlowModel(tiny_config()).eval()
    batch = inputs()
    cases = [
        (dict(batch, sample=torch.randn(2, 3, 8, 8, 4)), "`sample` must have shape"),
        (dict(batch, timestep=torch.rand(3)), "`timestep` must have shape"),
        (dict(batch, timestep=torch.tensor([0.2, 1.5])), r"`timestep` must lie in \[0, 1\]"),
        (dict(batch, pixel_values=torch.randn(1, 3, 16, 16)), "`pixel_values` must have batch size 2"),
        (dict(batch, encoder_hidden_states=torch.randn(2, 5, 32)), "exactly one of `pixel_values`"),
        (dict(sample=batch["sample"], timestep=batch["timestep"], encoder_hidden_states=torch.randn(2, 5, 7)),
         "`encoder_hidden_states` must have shape"),
        (dict(batch, target=torch.randn(2, 3, 8, 8, 8)[:1]), "`target` must have batch size 2"),
        (dict(batch, drop_condition=torch.tensor([1, 0])), "`drop_condition` must be a bool tensor"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            model(**kwargs)
    with pytest.raises(ValueError, match="`guidance_scale`"):
        model.sample(pixel_values=batch["pixel_values"], num_inference_steps=2, guidance_scale=0.0)
    with pytest.raises(ValueError, match="`num_inference_steps`"):
        model.sample(pixel_values=batch["pixel_values"], num_inference_steps=0)
