"""Tests of training/train_mae.py (CRATE-MAE vs ViT-MAE) on a small fake image set."""

import json

import pytest
import torch
from transformers import AutoModelForMaskedImageModeling, ViTMAEForPreTraining

from tests.conftest import load_training_script

train_mae = load_training_script("train_mae")

TINY = ["--hidden_size", "32", "--num_hidden_layers", "2", "--decoder_num_hidden_layers", "1",
        "--num_attention_heads", "4", "--patch_size", "4", "--batch_size", "8", "--learning_rate", "0.001",
        "--warmup_steps", "1", "--num_threads", "1", "--log_every", "1", "--eval_train_subset", "0"]


def fake_data(n_train=32, n_test=16, size=16):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_train + n_test, 1, size, size), generator=generator, dtype=torch.uint8)
    labels = torch.arange(n_train + n_test) % 3
    return {"train_images": images[:n_train], "train_labels": labels[:n_train], "test_images": images[n_train:],
            "test_labels": labels[n_train:], "image_mean": [0.5], "image_std": [0.25]}


def tiny_model(model: str):
    args = train_mae.parse_args(TINY + ["--model", model])
    return train_mae.build_model(args, image_size=16, num_channels=1), args


@pytest.mark.parametrize("model", ["crate", "vit"])
def test_three_step_run_changes_weights_and_saves_loadable_model(tmp_path, monkeypatch, model):
    captured = {}
    original_build = train_mae.build_model

    def spy(*args, **kwargs):
        captured["model"] = original_build(*args, **kwargs)
        captured["initial"] = {k: v.clone() for k, v in captured["model"].state_dict().items()}
        return captured["model"]

    monkeypatch.setattr(train_mae, "build_model", spy)
    results = train_mae.main(TINY + ["--model", model, "--max_steps", "3", "--output_dir", str(tmp_path)],
                             data=fake_data())
    assert results["steps"] == 3
    assert 0 < results["reconstruction_loss"] < float("inf")
    assert 0 <= results["linear_probe_accuracy"] <= 1 and 0 <= results["knn20_accuracy"] <= 1
    trained = captured["model"]
    changed = [k for k, v in trained.state_dict().items() if not torch.equal(v, captured["initial"][k])]
    assert changed, "three optimiser steps changed nothing"
    assert all(torch.isfinite(v).all() for v in trained.state_dict().values() if v.is_floating_point())
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len([r for r in records if "train_loss" in r]) == 3
    assert (tmp_path / "reconstructions.png").stat().st_size > 0
    loader = AutoModelForMaskedImageModeling if model == "crate" else ViTMAEForPreTraining
    reloaded = loader.from_pretrained(tmp_path / "model").eval()
    pixels = torch.randn(4, 1, 16, 16)
    mask = train_mae.evaluation_masks(4, 16, 0.75, seed=1)
    with torch.no_grad():
        expected, _ = train_mae.reconstruct(trained.eval(), pixels, mask)
        actual, _ = train_mae.reconstruct(reloaded, pixels, mask)
    torch.testing.assert_close(actual, expected)


def test_both_models_are_scored_on_the_same_masks():
    model, _ = tiny_model("vit")
    mask = train_mae.evaluation_masks(3, 16, 0.75, seed=0)
    assert mask.sum(dim=1).tolist() == [16 - int(16 * 0.25)] * 3
    with torch.no_grad():
        noise = mask.float() + 0.5 * torch.rand(mask.shape, generator=torch.Generator().manual_seed(0))
        output = model.eval()(pixel_values=torch.randn(3, 1, 16, 16), noise=noise)
    # ViT-MAE reports its own mask (1 = removed): it must be exactly the one we asked for.
    assert torch.equal(output.mask.bool(), mask)


def test_encoder_features_do_not_depend_on_vit_masking():
    model, args = tiny_model("vit")
    model.eval().config.mask_ratio = 0.0
    pixels = torch.randn(5, 1, 16, 16)
    torch.manual_seed(0)
    first = train_mae.encoder_features(model, pixels, batch_size=5)
    torch.manual_seed(1)  # a different token shuffle: the mean over tokens must not notice
    second = train_mae.encoder_features(model, pixels, batch_size=5)
    torch.testing.assert_close(first, second)


@pytest.mark.parametrize("flag,value", [("--model", "beit"), ("--mask_ratio", "1.0"), ("--mask_ratio", "0")])
def test_bad_arguments_raise(flag, value):
    with pytest.raises(ValueError, match=flag.lstrip("-")):
        train_mae.parse_args([flag, value])


def test_vit_mae_starts_with_mae_initialisation():
    """transformers 5.x builds ViT-MAE with all-zero position tables and tokens; `build_model` must give it MAE's
    fixed sin-cos tables (one distinct row per patch, shared by encoder and decoder) and N(0, 0.02) tokens."""
    model, _ = tiny_model("vit")
    encoder_table = model.vit.embeddings.position_embeddings[0]
    decoder_table = model.decoder.decoder_pos_embed[0]
    assert encoder_table.shape == (1 + 16, 32)
    torch.testing.assert_close(encoder_table, decoder_table)
    patches = encoder_table[1:]
    distances = torch.cdist(patches, patches) + torch.eye(16) * 1e3
    assert distances.min() > 0.1, "two patches share a position code"
    assert patches.abs().max() <= 1.0 and not patches.requires_grad  # sin-cos values, frozen
    assert 0.01 < model.vit.embeddings.cls_token.std() < 0.03
    assert 0.01 < model.decoder.mask_token.std() < 0.03


def test_vit_mae_beats_the_position_blind_plateau_on_a_fixed_batch():
    """With positions, a few steps on one batch of a position-dependent pattern fit the hidden patches far better
    than any decoder blind to where they are can: the best such decoder predicts, per image, the mean of the hidden
    patches (the grey-patch plateau). Fails with ViT-MAE's zero position tables."""
    torch.manual_seed(0)
    model, _ = tiny_model("vit")
    ramp = torch.linspace(-1.5, 1.5, 16)
    pattern = ramp.view(1, -1) + torch.sin(3 * ramp).view(-1, 1)
    pixels = pattern.expand(8, 1, 16, 16) + 0.05 * torch.randn(8, 1, 16, 16)
    mask = train_mae.evaluation_masks(8, 16, 0.75, seed=0)
    target = model.patchify(pixels)
    hidden = mask.unsqueeze(-1).float()
    per_image_mean = (target * hidden).sum((1, 2), keepdim=True) / (hidden.sum((1, 2), keepdim=True) * 16)
    plateau = (((target - per_image_mean) ** 2).mean(-1) * mask).sum() / mask.sum()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        _, loss = train_mae.reconstruct(model, pixels, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        _, loss = train_mae.reconstruct(model, pixels, mask)
    assert loss < 0.3 * plateau, (loss.item(), plateau.item())
