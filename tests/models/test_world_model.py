"""WorldModel: the action reaches the output, the regressor is the same network, bad inputs name the argument,
save/load round trip, and a few steps of training fit one transition."""

import pytest
import torch
from diffusers import DDPMScheduler

from whitebox_hf.models.world_model import (
    WorldModel,
    frames_to_pixels,
    pixels_to_frames,
    world_model_loss,
)

TINY = {"sample_size": 8, "num_context_frames": 2, "block_out_channels": (8, 16), "norm_num_groups": 4,
        "cross_attention_dim": 16, "attention_head_dim": 8}


def tiny(prediction="diffusion", seed=0):
    torch.manual_seed(seed)
    return WorldModel(prediction=prediction, **TINY).eval()


def inputs(batch=2):
    g = torch.Generator().manual_seed(1)
    return (torch.rand(batch, 2, 3, 8, 8, generator=g) * 2 - 1, torch.tensor([0, 2][:batch]),
            torch.randn(batch, 3, 8, 8, generator=g), torch.tensor([10, 500][:batch]))


def test_the_action_changes_the_prediction_and_regressor_has_the_same_parameters():
    model = tiny()
    context, actions, noisy, t = inputs()
    with torch.no_grad():
        # The U-Net's output layer is not zero at init here, but the attention output is: move the embedding far.
        model.action_embedding.weight.normal_(0, 3)
        for module in model.modules():
            if hasattr(module, "to_out"):
                torch.nn.init.normal_(module.to_out[0].weight, std=0.5)
        one = model(context, actions, noisy, t).sample
        other = model(context, (actions + 1) % 3, noisy, t).sample
    assert one.shape == (2, 3, 8, 8)
    assert not torch.allclose(one, other)
    regressor = tiny("regressor")
    assert [p.shape for p in regressor.parameters()] == [p.shape for p in model.parameters()]
    assert regressor(context, actions).sample.shape == (2, 3, 8, 8)


@pytest.mark.parametrize("change, error, name", [
    (lambda c, a: (c, torch.tensor([0, 3])), ValueError, "actions"),
    (lambda c, a: (c, torch.tensor([0, -1])), ValueError, "actions"),
    (lambda c, a: (c, torch.tensor([0.0, 1.0])), TypeError, "actions"),
    (lambda c, a: (c, torch.tensor([], dtype=torch.long)), ValueError, "actions"),
    (lambda c, a: (c[:, :1], a), ValueError, "context_frames"),
    (lambda c, a: (c[..., :4], a), ValueError, "context_frames"),
    (lambda c, a: (pixels_to_frames(c).movedim(-1, -3), a), TypeError, "context_frames"),
])
def test_bad_inputs_name_the_argument(change, error, name):
    context, actions, noisy, t = inputs()
    context, actions = change(context, actions)
    with pytest.raises(error, match=f"`{name}`"):
        tiny()(context, actions, noisy, t)


def test_noisy_frame_is_refused_by_the_regressor_and_required_by_diffusion():
    context, actions, noisy, t = inputs()
    with pytest.raises(ValueError, match="`noisy_frame`"):
        tiny("regressor")(context, actions, noisy, t)
    with pytest.raises(ValueError, match="`noisy_frame`"):
        tiny()(context, actions)
    with pytest.raises(ValueError, match="`prediction`"):
        WorldModel(prediction="autoregressive", **TINY)


def test_frame_conversion_is_exact_and_strict():
    frames = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    assert torch.equal(pixels_to_frames(frames_to_pixels(frames)), frames)
    with pytest.raises(TypeError, match="`frames`"):
        frames_to_pixels(frames.float())
    with pytest.raises(ValueError, match="`frames`"):
        frames_to_pixels(frames[..., :2])


def test_save_load_round_trip(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = WorldModel.from_pretrained(tmp_path / "m").eval()
    context, actions, noisy, t = inputs()
    with torch.no_grad():
        assert torch.equal(loaded(context, actions, noisy, t).sample, model(context, actions, noisy, t).sample)


@pytest.mark.parametrize("prediction", ["diffusion", "regressor"])
def test_a_few_steps_lower_the_loss_on_one_transition(prediction):
    model = tiny(prediction).train()
    scheduler = DDPMScheduler(num_train_timesteps=100)
    context, actions, _, _ = inputs()
    target = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss_at(seed):
        return world_model_loss(model, scheduler, context, actions, target, torch.Generator().manual_seed(seed))

    with torch.no_grad():
        before = sum(loss_at(s).item() for s in range(4))
    for step in range(40):
        optimizer.zero_grad()
        loss_at(step % 4).backward()
        optimizer.step()
    with torch.no_grad():
        after = sum(loss_at(s).item() for s in range(4))
    assert after < 0.7 * before


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_diffusion_loss_targets_the_schedulers_prediction_type(prediction_type):
    from types import SimpleNamespace

    from diffusers import DDPMScheduler

    from whitebox_hf.models.world_model.modeling_world_model import world_model_loss

    scheduler = DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2",
                              prediction_type=prediction_type)
    next_frame = torch.rand(4, 3, 8, 8) * 2 - 1
    seen = {}

    class Oracle:  # predicts exactly the target of `prediction_type`, from the noisy frame it is given
        config = SimpleNamespace(prediction="diffusion")

        def __call__(self, context, actions, noisy, timesteps):
            alpha = scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
            noise = (noisy - alpha.sqrt() * next_frame) / (1 - alpha).sqrt()
            seen["noisy"] = noisy
            target = {"epsilon": noise, "sample": next_frame,
                      "v_prediction": alpha.sqrt() * noise - (1 - alpha).sqrt() * next_frame}[prediction_type]
            return SimpleNamespace(sample=target)

    loss = world_model_loss(Oracle(), scheduler, torch.zeros(4, 2, 3, 8, 8), torch.zeros(4, dtype=torch.long),
                            next_frame, generator=torch.Generator().manual_seed(0))
    assert loss.item() < 1e-8
    wrong = "sample" if prediction_type != "sample" else "epsilon"
    scheduler.register_to_config(prediction_type=wrong)
    assert world_model_loss(Oracle(), scheduler, torch.zeros(4, 2, 3, 8, 8), torch.zeros(4, dtype=torch.long),
                            next_frame, generator=torch.Generator().manual_seed(0)).item() > 1e-3
