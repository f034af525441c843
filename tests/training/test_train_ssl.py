"""Tests of training/train_ssl.py (SimDINO / DINO) and the multi-crop augmentation, on a small fake image set."""

import json

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file
from transformers import AutoModel

from whitebox_hf.data import AugmentedTensorDataset, BatchMultiCrop, MultiCropTransform, multicrop_collate
from tests.conftest import load_training_script
from whitebox_hf.data import normalise_images
from whitebox_hf.evaluation import extract_features, feature_std

train_ssl = load_training_script("train_ssl")

IMAGE_SIZE, LOCAL_SIZE, NUM_LOCAL = 16, 8, 2
TINY = ["--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "4", "--patch_size", "4",
        "--head_hidden_dim", "32", "--head_bottleneck_dim", "16", "--num_prototypes", "64",
        "--num_local_crops", str(NUM_LOCAL), "--local_crop_size", str(LOCAL_SIZE), "--batch_size", "8",
        "--learning_rate", "0.001", "--warmup_steps", "1", "--num_threads", "1", "--log_every", "1",
        "--teacher_momentum", "0.9"]
COMBINATIONS = [(m, b) for m in ("simdino", "dino") for b in ("crate", "vit")]


def fake_data(n_train=32, n_test=16):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_train + n_test, 1, IMAGE_SIZE, IMAGE_SIZE), generator=generator,
                           dtype=torch.uint8)
    labels = torch.arange(n_train + n_test) % 3
    return {"train_images": images[:n_train], "train_labels": labels[:n_train], "test_images": images[n_train:],
            "test_labels": labels[n_train:], "image_mean": [0.5], "image_std": [0.25]}


def fake_batch(batch_size=8, seed=0):
    """The views the training script draws: `BatchMultiCrop` on a batch of uint8 images."""
    data = fake_data()
    multi_crop = BatchMultiCrop(global_size=IMAGE_SIZE, local_size=LOCAL_SIZE, num_local=NUM_LOCAL,
                                image_mean=[0.5], image_std=[0.25])
    views = multi_crop(data["train_images"][:batch_size], generator=torch.Generator().manual_seed(seed))
    return {"pixel_values": views, "labels": data["train_labels"][:batch_size]}


# -- multi-crop --------------------------------------------------------------------------------------------------


def test_multicrop_views_and_determinism():
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    transform = MultiCropTransform(num_local=6)
    dataset = AugmentedTensorDataset(images, torch.zeros(4, dtype=torch.long), transform, seed=3)
    views = dataset[1]["pixel_values"]
    assert len(views) == 8
    assert [tuple(v.shape) for v in views] == [(1, 28, 28)] * 2 + [(1, 12, 12)] * 6
    assert all(v.dtype == torch.float32 for v in views)
    again = dataset[1]["pixel_values"]
    assert all(torch.equal(a, b) for a, b in zip(views, again))
    dataset.set_epoch(1)
    assert not all(torch.equal(a, b) for a, b in zip(views, dataset[1]["pixel_values"]))
    batch = multicrop_collate([dataset[i] for i in range(4)])
    assert [tuple(v.shape) for v in batch["pixel_values"]] == [(4, 1, 28, 28)] * 2 + [(4, 1, 12, 12)] * 6


@pytest.mark.parametrize("kwargs", [dict(num_local=-1), dict(global_scale=(0.5, 0.2)), dict(local_size=0),
                                    dict(blur_probabilities=(1.0, 2.0, 0.5))])
@pytest.mark.parametrize("multi_crop_class", [MultiCropTransform, BatchMultiCrop])
def test_multicrop_rejects_bad_arguments(multi_crop_class, kwargs):
    with pytest.raises(ValueError):
        multi_crop_class(**kwargs)


# -- training step -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method,backbone", COMBINATIONS)
def test_training_steps_update_student_and_teacher_is_exact_ema(method, backbone):
    torch.set_num_threads(1)
    args = train_ssl.parse_args(TINY + ["--method", method, "--backbone", backbone])
    student, teacher = train_ssl.build_student_and_teacher(args, IMAGE_SIZE, 1)
    assert all(not p.requires_grad for p in teacher.parameters())
    dino_loss = train_ssl.build_loss(args, steps_per_epoch=4)
    optimizer = torch.optim.AdamW(train_ssl.parameter_groups(student, args["weight_decay"]), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    accelerator = Accelerator(cpu=True)
    initial_student = {k: v.clone() for k, v in student.state_dict().items()}
    total_steps = 3
    for step in range(total_steps):
        teacher_before = {k: v.clone() for k, v in teacher.named_parameters()}
        out = train_ssl.training_step(args, accelerator, student, teacher, dino_loss, optimizer, scheduler,
                                      fake_batch(seed=step), step, total_steps, steps_per_epoch=4)
        assert torch.isfinite(torch.tensor(out["loss"]))
        if method == "simdino":
            assert out["loss"] == pytest.approx(-out["alignment"] - out["gamma"] * out["expansion"], rel=1e-4)
        # The teacher never receives gradients.
        assert all(p.grad is None for p in teacher.parameters())
        # teacher_after = m·teacher_before + (1 − m)·student_after, with m from the cosine schedule.
        m = train_ssl.cosine_momentum(step, total_steps, base=0.9)
        assert out["teacher_momentum"] == m
        student_parameters = dict(student.named_parameters())
        for name, parameter in teacher.named_parameters():
            expected = torch.lerp(teacher_before[name], student_parameters[name].detach(), 1 - m)
            assert torch.equal(parameter, expected), name
            assert torch.isfinite(parameter).all(), name
    changed = [k for k, v in student.state_dict().items() if not torch.equal(v, initial_student[k])]
    assert any(k.startswith("backbone.") for k in changed)
    if method == "dino":
        # Epoch 0: the prototype layer's gradients are cancelled, so it does not move.
        assert not any(k.startswith("head.last_layer") for k in changed)
    assert all(torch.isfinite(v).all() for v in student.state_dict().values() if v.is_floating_point())


def test_ema_hand_computed_value():
    # m = 0.9 at step 0: 0.9·1 + 0.1·3 = 1.2 exactly representable up to float rounding.
    teacher, student = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    teacher.weight.data.fill_(1.0)
    student.weight.data.fill_(3.0)
    train_ssl.ema_update_(teacher, student, train_ssl.cosine_momentum(0, 10, base=0.9))
    assert teacher.weight.item() == pytest.approx(1.2)


# -- end to end --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method,backbone", COMBINATIONS)
def test_three_step_run_saves_reloadable_teacher(tmp_path, monkeypatch, method, backbone):
    # Spy on the evaluation to keep the in-memory teacher backbone and compare it with what was saved.
    captured = {}
    original = train_ssl.evaluate_teacher

    def spy(teacher_backbone, *rest, **kwargs):
        captured["backbone"] = teacher_backbone
        return original(teacher_backbone, *rest, **kwargs)

    monkeypatch.setattr(train_ssl, "evaluate_teacher", spy)
    data = fake_data()
    results = train_ssl.main(TINY + ["--method", method, "--backbone", backbone, "--max_steps", "3",
                                     "--output_dir", str(tmp_path)], data=data)
    assert results["steps"] == 3
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    for key in ("knn20_accuracy", "linear_probe_accuracy", "feature_std", "effective_rank"):
        assert 0 <= evaluation[key] < float("inf"), key
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    losses = [r for r in records if "train_loss" in r]
    assert len(losses) == 3
    if method == "simdino":
        assert all("train_alignment" in r and "train_expansion" in r for r in losses)
    assert (tmp_path / "loss_curve.png").stat().st_size > 0
    model_dir = tmp_path / "teacher_backbone"
    head = load_file(model_dir / "head.safetensors")
    assert head and all(torch.isfinite(v).all() for v in head.values())
    reloaded = AutoModel.from_pretrained(model_dir).eval()
    assert type(reloaded).__name__ == ("CrateModel" if backbone == "crate" else "ViTModel")
    pixels = normalise_images(data["test_images"], [0.5], [0.25])
    with torch.no_grad():
        expected = train_ssl.backbone_features(captured["backbone"].eval(), pixels)
        actual = train_ssl.backbone_features(reloaded, pixels)
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


@pytest.mark.parametrize("flag,value", [("--method", "byol"), ("--backbone", "resnet")])
def test_bad_method_or_backbone_raises(flag, value):
    with pytest.raises(ValueError, match=flag.lstrip("-")):
        train_ssl.parse_args([flag, value])


# -- the evaluated feature is spread at initialisation -----------------------------------------------------------


def _smooth_images(n=64):
    generator = torch.Generator().manual_seed(0)
    coarse = torch.randn(n, 1, 7, 7, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=28, mode="bilinear")


@pytest.mark.parametrize("seed", [0, 1])
def test_crate_class_token_is_spread_at_initialisation(seed):
    """With the configuration of the SimDINO/DINO runs, different images must start at different class-token
    features. CRATE's N(0, 1) class token and positions (the supervised default) leave the class token nearly
    constant (feature std ~3e-4 on these images, against ~1e-2 with N(0, 0.02))."""
    args = train_ssl.parse_args(["--config", "training/configs/ssl_fashion_mnist.yaml", "--backbone", "crate"])
    assert args["position_embedding_init_std"] == train_ssl.DEFAULTS["position_embedding_init_std"] == 0.02
    torch.manual_seed(seed)
    backbone = train_ssl.build_backbone(args, image_size=28, num_channels=1).eval()
    with torch.no_grad():
        features = train_ssl.backbone_features(backbone, _smooth_images())
    assert feature_std(features) > 3e-3

    torch.manual_seed(seed)
    supervised_init = train_ssl.build_backbone({**args, "position_embedding_init_std": 1.0}, 28, 1).eval()
    with torch.no_grad():
        concentrated = train_ssl.backbone_features(supervised_init, _smooth_images())
    assert feature_std(concentrated) < 1e-3  # the failure the setting removes, still detected by the measure


@pytest.mark.parametrize("backbone_name", ["crate", "vit"])
def test_probes_score_the_feature_the_head_reads(backbone_name):
    """The k-NN / linear probe (`extract_features`) read the very feature SimDINO's head is trained on."""
    args = train_ssl.parse_args(TINY + ["--backbone", backbone_name])
    torch.manual_seed(0)
    backbone = train_ssl.build_backbone(args, image_size=IMAGE_SIZE, num_channels=1).eval()
    pixels = torch.randn(6, 1, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        expected = train_ssl.backbone_features(backbone, pixels)
    torch.testing.assert_close(extract_features(backbone, pixels, batch_size=4), expected)
