"""A tiny random text-to-image pipeline in the format of the package's text-to-image base (a diffusers
`StableDiffusionPipeline` folder): `AutoencoderKL` on RGB 32×32 images (latents 4×8×8), a `BertModel` text encoder
with MiniLM's tokenizer (``model_max_length`` 32), a `UNet2DConditionModel` with cross-attention, a DDPM-family
scheduler and no safety checker. Small enough to run a few sampling steps in a fraction of a second."""

from __future__ import annotations

from pathlib import Path

import torch


def tiny_text_to_image_pipeline(seed: int = 0, text_width: int = 16):
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import AutoTokenizer, BertConfig, BertModel

    from whitebox_hf.models.whitebox_clip import minilm_path

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()), model_max_length=32)
    text_encoder = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=text_width, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=32),
                             ).eval()
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                        layers_per_block=1, norm_num_groups=4, sample_size=32)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=text_width,
                                attention_head_dim=4, norm_num_groups=8)
    scheduler = DDIMScheduler(num_train_timesteps=100, beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_text_to_image_pipeline(folder: Path, seed: int = 0) -> Path:
    tiny_text_to_image_pipeline(seed).save_pretrained(folder)
    return Path(folder)


def caption_data(n_train: int = 8, n_test: int = 6, size: int = 32, seed: int = 0) -> dict:
    """In-memory image–caption pairs in the layout the control and personalisation scripts take: uint8
    ``(n, 3, size, size)`` drawings (a dark square on white, so that Canny finds edges) and captions; the test
    split holds a 3-image series sharing the title ``"Red kite"`` (the subject)."""
    generator = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    images = torch.full((n, 3, size, size), 255, dtype=torch.uint8)
    for i in range(n):
        top, left = torch.randint(2, size // 2, (2,), generator=generator).tolist()
        side = int(torch.randint(6, size // 2, (1,), generator=generator))
        images[i, :, top: top + side, left: left + side] = torch.randint(0, 120, (3, 1, 1), generator=generator,
                                                                          dtype=torch.uint8)
    words = ["apple", "arrow", "star", "tree", "car", "house"]
    titles = [words[i % len(words)].title() for i in range(n_train)]
    titles += ["Red kite"] * 3 + [f"{words[i % len(words)].title()} {i}" for i in range(n_test - 3)]
    captions = [f"{t}. Keywords: {t.lower()}" for t in titles]
    return {"train_images": images[:n_train], "train_captions": captions[:n_train], "train_titles": titles[:n_train],
            "test_images": images[n_train:], "test_captions": captions[n_train:], "test_titles": titles[n_train:]}
