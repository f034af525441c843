"""training/report_shape_generation.py end to end on tiny runs trained by train_shape_diffusion.py (2 steps, tiny
VAEs, a tiny LIFT): it scores every present variant, sweeps guidance, writes the page, its JSON and pictures with
relative paths only, skips absent variants with a line; its verdicts follow the numbers both ways; bad settings are
refused by name."""

import json
import shutil

import pytest
import torch

from tests.conftest import load_training_script
from tests.training.test_train_shape_diffusion import (
    SIZE,
    TINY,
    fake_renders,
    train_shape_diffusion,
)
from whitebox_hf import (
    SitaVaeConfig,
    SitaVaeModel,
    WhiteboxClipConfig,
    WhiteboxClipModel,
)
from whitebox_hf.data.shapes import load_procedural_shapes
from whitebox_hf.training.builders import build_image_processor

report = load_training_script("report_shape_generation")


def tiny_vae(folder, seed):
    torch.manual_seed(seed)
    SitaVaeModel(SitaVaeConfig(num_latents=4, hidden_size=16, num_attention_heads=2, num_encoder_layers=1,
                               num_decoder_layers=1, latent_channels=3, alignment_dim=384)).save_pretrained(folder)
    return str(folder)


def tiny_lift(folder):
    """A random LIFT model whose shared space (LIFT: the text tower's width) is the SITA-VAE's alignment width (384,
    MiniLM's), so SI-S is defined."""
    torch.manual_seed(0)
    text = {"vocab_size": 100, "hidden_size": 384, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 48, "max_position_embeddings": 16}
    vision = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": SIZE,
              "patch_size": 4, "num_channels": 3}
    WhiteboxClipModel(WhiteboxClipConfig(vision_config=vision, text_config=text, text_tower="lift")).save_pretrained(
        folder)
    build_image_processor(SIZE, [0.5] * 3, [0.25] * 3).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("shape_generation")
    runs = root / "runs"
    shapes = load_procedural_shapes(num_per_category=8, categories=["mug", "bottle", "table"], num_surface_points=32,
                                    num_volume_queries=1, num_near_queries=1, test_fraction=0.3)
    renders = fake_renders(shapes)
    aligned = tiny_vae(runs / "sita_vae" / "model", 0)
    unaligned = tiny_vae(runs / "no_alignment" / "model", 1)
    lift = tiny_lift(runs / "shape_lift" / "model")
    common = TINY + ["--max_steps", "2", "--num_per_category", "8"]
    train_shape_diffusion.main(common + ["--vae_model", aligned, "--output_dir", str(runs / "diffusion_aligned")],
                               data=shapes)
    train_shape_diffusion.main(common + ["--vae_model", unaligned, "--output_dir",
                                         str(runs / "diffusion_unaligned")], data=shapes)
    train_shape_diffusion.main(common + ["--vae_model", aligned, "--condition", "image", "--alignment_model", lift,
                                         "--output_dir", str(runs / "diffusion_image")], data=shapes, renders=renders)
    for name in ("checkpoints",):  # the report reads pipeline/ and metrics.json only
        for run in runs.glob("diffusion_*"):
            shutil.rmtree(run / name, ignore_errors=True)
    return root, shapes, renders


SETTINGS = ["--prompts_per_category", "1", "--shapes_per_prompt", "2", "--num_inference_steps", "2",
            "--guidance_sweep", "1", "3", "--guidance_scale", "3", "--octree_depth", "3", "--num_surface_points", "32",
            "--classifier_epochs", "2"]


def test_report_runs_end_to_end_on_tiny_runs(tiny_runs, capsys):
    root, shapes, renders = tiny_runs
    runs, output = root / "runs", root / "docs" / "shape_generation.md"
    report.main(["--runs_dir", str(runs), "--output", str(output), *SETTINGS], data=shapes, renders=renders)
    printed = capsys.readouterr().out
    text = output.read_text()
    assert "cross_attention: no finished run" in printed and "crate: no finished run" in text
    for variant in ("aligned", "unaligned", "image"):
        assert f"| {report.VARIANTS[variant]} | 6 |" in text  # 3 prompts × 2 shapes, one per category
    assert "## Guidance sweep" in text and "\n| 1 | " in text and "\n| 3 | " in text
    assert "re-encoded by the *aligned* SITA-VAE's encoder (`runs/sita_vae/model`)" in text
    assert "The book's claim, higher ST-S from the aligned latent space" in text
    assert "Category accuracy rising with guidance" in text
    assert "python training/report_shape_generation.py --runs_dir runs --output shape_generation.md" in text
    assert str(root) not in text and "/tmp" not in text
    numbers = json.loads(output.with_name("shape_generation.json").read_text())
    assert str(root) not in json.dumps(numbers)
    assert [r["guidance_scale"] for r in numbers["guidance_sweep"]] == [1.0, 3.0]
    assert numbers["classifier"]["num_test_shapes"] == len(shapes["test"])
    assert f"**{100 * numbers['classifier']['test_accuracy']:.1f} %**" in text
    aligned = numbers["results"]["aligned"]["overall"]
    assert aligned["num_shapes"] == 6 and 0.0 <= aligned["category_accuracy"] <= 1.0
    assert aligned["st_s"] is None or -1.0 <= aligned["st_s"] <= 1.0
    image = numbers["results"]["image"]["overall"]
    assert (image["si_s"] is None) == (image["no_surface_fraction"] == 1.0)  # SI-S is defined for this LIFT
    assert [p["category"] for p in numbers["prompts"]] == ["mug", "bottle", "table"]
    for variant in ("aligned", "image"):
        assert output.with_name(f"shape_generation_{variant}.png").read_bytes()[:4] == b"\x89PNG"
    # The classifier was kept for the next report, as safetensors + JSON.
    assert sorted(p.name for p in (runs / "point_cloud_classifier").iterdir()) == ["config.json",
                                                                                  "model.safetensors"]


def test_shapes_of_one_seed_are_the_same_in_every_rerun(tiny_runs):
    root, shapes, renders = tiny_runs
    outputs = []
    for name in ("a", "b"):
        output = root / name / "page.md"
        report.main(["--runs_dir", str(root / "runs"), "--output", str(output), "--variants", "aligned",
                     *SETTINGS], data=shapes, renders=renders)
        outputs.append(json.loads(output.with_name("page.json").read_text())["results"])
    timeless = [{variant: {k: v for k, v in result.items() if k != "seconds_per_shape"}
                 for variant, result in results.items()} for results in outputs]
    assert timeless[0] == timeless[1]
    assert timeless[0]["aligned"]["per_prompt"][0]["predicted"]  # the comparison has content


def test_alignment_verdict_both_ways():
    assert "**held** here (ST-S 0.300 aligned vs 0.100 unaligned, a difference of +0.200)" in \
        report.alignment_verdict(0.3, 0.1)
    assert "**did not hold** here (ST-S 0.100 aligned vs 0.300 unaligned, a difference of -0.200)" in \
        report.alignment_verdict(0.1, 0.3)
    assert "not judged" in report.alignment_verdict(0.3, None)


def test_guidance_verdict_both_ways():
    assert report.guidance_verdict([1, 3, 7.5], [0.25, 0.5, 0.75]) == (
        "Category accuracy rising with guidance: **held**, monotonically: 25.0 % (g = 1) → 50.0 % (g = 3) → "
        "75.0 % (g = 7.5).")
    assert "**held**, though not at every step" in report.guidance_verdict([7.5, 1, 3], [0.5, 0.25, 0.75])
    falling = report.guidance_verdict([1, 3, 7.5], [0.75, 0.5, 0.5])
    assert "**did not hold**: 75.0 % (g = 1)" in falling
    assert "not judged" in report.guidance_verdict([1], [0.5])
    assert "not judged" in report.guidance_verdict([1, 3], [0.5, None])


def test_comparison_line_names_the_higher_variant():
    results = {"aligned": {"overall": {"st_s": 0.2, "category_accuracy": 0.5}},
               "crate": {"overall": {"st_s": 0.4, "category_accuracy": 0.25}}}
    line = report.comparison_line("White-box vs transformer", "crate", "aligned", results)
    assert line == ("White-box vs transformer: ST-S 0.400 vs 0.200, category accuracy 25.0 % vs 50.0 %; higher ST-S: "
                    f"{report.VARIANTS['crate']}.")
    results["crate"]["overall"]["st_s"] = 0.1
    assert report.comparison_line("x", "crate", "aligned", results).endswith(f"{report.VARIANTS['aligned']}.")
    assert report.comparison_line("x", "cross_attention", "aligned", results) is None


@pytest.mark.parametrize("argv, needle", [
    (["--shapes_per_prompt", "1"], "shapes_per_prompt"),
    (["--prompts_per_category", "0"], "prompts_per_category"),
    (["--num_inference_steps", "0"], "num_inference_steps"),
    (["--octree_depth", "1"], "octree_depth"),
    (["--guidance_scale", "-1"], "guidance_scale"),
    (["--guidance_sweep", "1", "-3"], "guidance_sweep"),
    (["--variants", "voxels"], "variants"),
    (["--num_surface_points", "0"], "num_surface_points"),
])
def test_bad_settings_are_refused_by_name(argv, needle):
    with pytest.raises(ValueError, match=needle):
        report.parse_args(argv)


def test_a_missing_aligned_vae_is_an_os_error(tiny_runs, tmp_path):
    root, shapes, renders = tiny_runs
    with pytest.raises(OSError, match="no_such_vae"):
        report.main(["--runs_dir", str(root / "runs"), "--output", str(tmp_path / "p.md"), "--vae_model",
                     str(tmp_path / "no_such_vae"), *SETTINGS], data=shapes, renders=renders)
