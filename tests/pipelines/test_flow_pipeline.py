"""WhiteboxFlowPipeline: outputs, determinism, guidance, the null class, exact ODE recovery, save/reload in a fresh
process, pixel and latent space, validation, LoRA adapters."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from PIL import Image

from whitebox_hf import WhiteboxFlowPipeline
from whitebox_hf.models.denoisers import CrateDenoiserTransformer, build_dit_transformer
from whitebox_hf.pipelines import decode_latents, encode_to_latents

NUM_CLASSES = 3
ID2LABEL = {0: "shirt", 1: "shoe", 2: "bag"}


def perturb(model, scale=0.05, seed=0):
    """Fresh denoisers output exactly 0; give them random weights so the samples depend on them."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def tiny_crate(sample_size=8, in_channels=1):
    return perturb(CrateDenoiserTransformer(sample_size=sample_size, in_channels=in_channels, num_classes=NUM_CLASSES,
                                            hidden_size=32, num_layers=2, num_attention_heads=4, patch_size=2))


def tiny_dit(sample_size=4, in_channels=2):
    return perturb(build_dit_transformer(sample_size, in_channels, NUM_CLASSES, hidden_size=32, num_layers=2,
                                         num_attention_heads=4, patch_size=2))


def tiny_vae():
    torch.manual_seed(0)
    return AutoencoderKL(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                         latent_channels=2, norm_num_groups=4, sample_size=8, scaling_factor=0.5,
                         shift_factor=0.1).eval()


def make_pipeline(transformer=None, autoencoder=None):
    pipe = WhiteboxFlowPipeline(transformer=transformer if transformer is not None else tiny_crate(),
                                scheduler=FlowMatchEulerDiscreteScheduler(), autoencoder=autoencoder,
                                num_classes=NUM_CLASSES, id2label=ID2LABEL)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, labels=(0, 1, 2), seed=0, **kwargs):
    kwargs = {"num_inference_steps": 3, "guidance_scale": 2.0, "output_type": "pt", **kwargs}
    return pipe(list(labels), generator=torch.Generator().manual_seed(seed), **kwargs).images


class FakeVelocity(ModelMixin, ConfigMixin):
    """Stand-in transformer. ``mode="oracle"``: the exact velocity (x_σ − x₀)/σ = noise − x₀ towards a known
    ``target`` x₀. ``mode="label"``: a constant field equal to the class id (shows the guidance formula).
    Records the labels and batch sizes it is called with."""

    @register_to_config
    def __init__(self, in_channels=1, sample_size=8, num_classes=NUM_CLASSES, mode="oracle"):
        super().__init__()
        self.register_buffer("target", torch.zeros(1, in_channels, sample_size, sample_size))
        self.calls = []

    def forward(self, hidden_states, timestep, class_labels=None, return_dict=True):
        self.calls.append(class_labels.tolist())
        if self.config.mode == "label":
            output = class_labels.float().view(-1, 1, 1, 1).expand_as(hidden_states).clone()
        else:
            sigma = (timestep / 1000.0).view(-1, 1, 1, 1)
            output = (hidden_states - self.target) / sigma
        return (output,)


class FakeRAE(ModelMixin, ConfigMixin):
    """An RAE-like autoencoder: ``encode`` returns normalised latents, ``decode`` pixels (both plain tensors)."""

    @register_to_config
    def __init__(self, latent_channels=3):
        super().__init__()
        self.proj = torch.nn.Conv2d(1, latent_channels, 2, stride=2)
        self.back = torch.nn.ConvTranspose2d(latent_channels, 1, 2, stride=2)

    def encode(self, pixel_values):
        return self.proj(pixel_values)

    def decode(self, latents):
        return self.back(latents)


# -- outputs -----------------------------------------------------------------------------------------------------


def test_output_types_shapes_and_dtypes():
    pipe = make_pipeline()
    pt = run(pipe)
    assert pt.shape == (3, 1, 8, 8) and pt.dtype == torch.float32 and 0 <= pt.min() and pt.max() <= 1
    np_images = run(pipe, output_type="np")
    assert isinstance(np_images, np.ndarray) and np_images.shape == (3, 8, 8, 1) and np_images.dtype == np.float32
    np.testing.assert_allclose(np_images, pt.permute(0, 2, 3, 1).numpy(), atol=1e-6)
    pil = run(pipe, output_type="pil")
    assert len(pil) == 3 and all(isinstance(im, Image.Image) and im.mode == "L" and im.size == (8, 8) for im in pil)
    latents = run(pipe, output_type="latent")
    assert latents.shape == (3, 1, 8, 8)
    out = pipe([1], num_inference_steps=2, return_dict=False)
    assert isinstance(out, tuple) and len(out[0]) == 1
    # Class names from id2label work like ids.
    torch.testing.assert_close(run(pipe, labels=("shirt", "shoe", "bag")), pt)


def test_seeded_generator_is_deterministic():
    pipe = make_pipeline()
    torch.testing.assert_close(run(pipe, seed=3), run(pipe, seed=3), rtol=0, atol=0)
    assert not torch.equal(run(pipe, seed=3), run(pipe, seed=4))


def test_oracle_velocity_recovers_x0_exactly_through_the_scheduler():
    fake = FakeVelocity()
    fake.target.copy_(torch.rand(1, 1, 8, 8) * 2 - 1)
    pipe = make_pipeline(transformer=fake)
    for steps in (1, 4, 25):
        latents = pipe([0, 1], num_inference_steps=steps, guidance_scale=1.0, output_type="latent",
                       generator=torch.Generator().manual_seed(0)).images
        torch.testing.assert_close(latents, fake.target.expand(2, -1, -1, -1), rtol=0, atol=1e-5)


def test_null_class_is_num_classes_and_guidance_formula():
    fake = FakeVelocity(mode="label")
    pipe = make_pipeline(transformer=fake)
    assert pipe.null_class_id == NUM_CLASSES == pipe.config.num_classes
    zeros = torch.zeros(2, 1, 8, 8)
    labels = torch.tensor([0, 2], dtype=torch.float32).view(-1, 1, 1, 1)
    for g in (0.0, 1.0, 2.0, 4.5):
        fake.calls.clear()
        # One Euler step from σ=1 to σ=0: x = 0 + (0 − 1)·v, so the output is −v_guided.
        out = pipe([0, 2], num_inference_steps=1, guidance_scale=g, latents=zeros, output_type="latent").images
        expected = NUM_CLASSES + g * (labels - NUM_CLASSES)  # uncond + g·(cond − uncond)
        torch.testing.assert_close(out, -expected.expand(2, 1, 8, 8))
        if g == 1.0:  # conditional pass only
            assert fake.calls == [[0, 2]]
        elif g == 0.0:  # unconditional pass only
            assert fake.calls == [[NUM_CLASSES] * 2]
        else:  # one batched pass: conditional then null labels (never 1000)
            assert fake.calls == [[0, 2, NUM_CLASSES, NUM_CLASSES]]


def test_guidance_one_equals_the_conditional_prediction():
    pipe = make_pipeline()
    x, t, labels = torch.randn(3, 1, 8, 8), torch.tensor(700.0), torch.tensor([0, 1, 2])
    guided = pipe._guided_prediction(pipe.transformer, x, t, labels, 1.0)
    torch.testing.assert_close(guided, pipe.transformer(x, t.expand(3), class_labels=labels).sample, rtol=0, atol=0)
    # And a full sampling run at g = 1 equals a hand-written conditional Euler loop.
    noise = torch.randn(3, 1, 8, 8)
    scheduler = FlowMatchEulerDiscreteScheduler()
    scheduler.set_timesteps(4)
    sample = noise.clone()
    with torch.no_grad():
        for timestep in scheduler.timesteps:
            velocity = pipe.transformer(sample, timestep.expand(3), class_labels=labels).sample
            sample = scheduler.step(velocity, timestep, sample).prev_sample
    out = pipe([0, 1, 2], num_inference_steps=4, guidance_scale=1.0, latents=noise, output_type="latent").images
    torch.testing.assert_close(out, sample, rtol=0, atol=0)


# -- autoencoders ------------------------------------------------------------------------------------------------


def test_latent_helpers_follow_the_autoencoderkl_convention():
    vae = tiny_vae()
    pixels = torch.rand(2, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        latents = encode_to_latents(vae, pixels)
        expected = (vae.encode(pixels).latent_dist.mode() - 0.1) * 0.5
        torch.testing.assert_close(latents, expected)
        torch.testing.assert_close(decode_latents(vae, latents), vae.decode(latents / 0.5 + 0.1).sample)
    vae.register_to_config(shift_factor=None)  # None means 0
    with torch.no_grad():
        torch.testing.assert_close(encode_to_latents(vae, pixels), vae.encode(pixels).latent_dist.mode() * 0.5)
    assert encode_to_latents(None, pixels) is pixels and decode_latents(None, pixels) is pixels


@pytest.mark.parametrize("kind", ["vae", "rae"])
def test_latent_space_sampling(kind):
    if kind == "vae":
        pipe = make_pipeline(transformer=tiny_dit(sample_size=4, in_channels=2), autoencoder=tiny_vae())
    else:
        pipe = make_pipeline(transformer=tiny_dit(sample_size=4, in_channels=3), autoencoder=FakeRAE().eval())
    images = run(pipe)
    assert images.shape == (3, 1, 8, 8)
    latents = run(pipe, output_type="latent")
    assert latents.shape == (3, 2 if kind == "vae" else 3, 4, 4)
    with torch.no_grad():
        decoded = pipe.decode(latents)
    torch.testing.assert_close(images, (decoded / 2 + 0.5).clamp(0, 1))


# -- save / reload -----------------------------------------------------------------------------------------------


def test_save_and_reload_in_a_fresh_process_gives_identical_images(tmp_path):
    from whitebox_hf import CrateConfig
    from whitebox_hf.models.autoencoders import CrateRepresentationAutoencoder

    encoder = CrateConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=8, patch_size=2,
                          num_channels=1)
    rae = CrateRepresentationAutoencoder(encoder_config=encoder.to_dict(), decoder_hidden_size=16,
                                         decoder_num_layers=1, decoder_num_heads=2).eval()
    pipes = {"pixel": make_pipeline(),
             "latent": make_pipeline(transformer=tiny_dit(), autoencoder=tiny_vae()),
             "rae": make_pipeline(transformer=tiny_dit(sample_size=4, in_channels=16), autoencoder=rae)}
    for name, pipe in pipes.items():
        pipe.save_pretrained(tmp_path / name)
        torch.save(run(pipe, seed=7), tmp_path / f"{name}_expected.pt")
    script = textwrap.dedent(f"""
        import torch
        import whitebox_hf  # imports the component modules diffusers resolves by path
        from whitebox_hf import WhiteboxFlowPipeline
        for name in ("pixel", "latent", "rae"):
            pipe = WhiteboxFlowPipeline.from_pretrained(r"{tmp_path}" + "/" + name)
            pipe.set_progress_bar_config(disable=True)
            assert pipe.config.num_classes == {NUM_CLASSES} and pipe.config.id2label[0] == "shirt"
            assert (pipe.autoencoder is None) == (name == "pixel")
            images = pipe([0, 1, 2], num_inference_steps=3, guidance_scale=2.0, output_type="pt",
                          generator=torch.Generator().manual_seed(7)).images
            torch.save(images, r"{tmp_path}" + "/" + name + "_reloaded.pt")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    for name in pipes:
        torch.testing.assert_close(torch.load(tmp_path / f"{name}_reloaded.pt"),
                                   torch.load(tmp_path / f"{name}_expected.pt"), rtol=0, atol=0)


# -- validation --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,argument", [
    (dict(class_labels=[0, NUM_CLASSES]), "class_labels"),
    (dict(class_labels=[-1]), "class_labels"),
    (dict(class_labels=["hat"]), "hat"),
    (dict(num_inference_steps=0), "num_inference_steps"),
    (dict(guidance_scale=-0.5), "guidance_scale"),
    (dict(latents=torch.zeros(3, 1, 4, 4)), "latents"),
    (dict(latents=torch.zeros(2, 1, 8, 8)), "latents"),
    (dict(output_type="jpg"), "output_type"),
])
def test_bad_inputs_raise_value_error_naming_the_argument(kwargs, argument):
    pipe = make_pipeline()
    call = {"class_labels": [0, 1, 2], "num_inference_steps": 2, **kwargs}
    with pytest.raises(ValueError, match=argument):
        pipe(**call)


def test_num_classes_must_match_the_transformer():
    with pytest.raises(ValueError, match="num_classes"):
        WhiteboxFlowPipeline(transformer=tiny_crate(), scheduler=FlowMatchEulerDiscreteScheduler(), num_classes=5)


# -- LoRA --------------------------------------------------------------------------------------------------------


def test_lora_adapter_round_trip_through_the_pipeline(tmp_path):
    from peft import LoraConfig

    base = make_pipeline(transformer=tiny_dit(), autoencoder=tiny_vae())
    base.save_pretrained(tmp_path / "base")
    base_images = run(base)
    tuned = WhiteboxFlowPipeline.from_pretrained(tmp_path / "base")
    tuned.set_progress_bar_config(disable=True)
    tuned.add_lora_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                      target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    torch.testing.assert_close(run(tuned), base_images)  # LoRA B = 0: no change yet
    with torch.no_grad():
        for name, parameter in tuned.transformer.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
    tuned_images = run(tuned)
    assert not torch.allclose(tuned_images, base_images)
    path = tuned.save_lora_weights(tmp_path / "lora")
    assert path.name == "pytorch_lora_weights.safetensors" and (tmp_path / "lora" / "adapter_config.json").is_file()

    reloaded = WhiteboxFlowPipeline.from_pretrained(tmp_path / "base")
    reloaded.set_progress_bar_config(disable=True)
    torch.testing.assert_close(run(reloaded), base_images, rtol=0, atol=0)
    reloaded.load_lora_weights(tmp_path / "lora")
    torch.testing.assert_close(run(reloaded), tuned_images, rtol=0, atol=0)
    reloaded.unload_lora_weights()
    torch.testing.assert_close(run(reloaded), base_images, rtol=0, atol=0)
    with pytest.raises(ValueError):
        reloaded.save_lora_weights(tmp_path / "none")
