"""training/report_shapes.py end to end on a tiny fake run folder: it evaluates the saved model, writes the page,
its JSON and the pictures, skips absent variants with a line, and writes no absolute path."""

import importlib.util
import json
import shutil
from pathlib import Path

import torch
import trimesh

from whitebox_hf.models.sita_vae import SitaVaeConfig, SitaVaeModel

TRAINING = Path(__file__).resolve().parents[2] / "training"


def load_report():
    spec = importlib.util.spec_from_file_location("report_shapes", TRAINING / "report_shapes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_run(folder: Path, retrieval: bool) -> None:
    torch.manual_seed(0)
    model = SitaVaeModel(SitaVaeConfig(num_latents=4, hidden_size=16, num_attention_heads=2, num_encoder_layers=1,
                                       num_decoder_layers=1, latent_channels=4, num_fourier_frequencies=2,
                                       alignment_dim=8))
    model.save_pretrained(folder / "model")
    evaluation = {"volumetric_iou": 0.5, "steps": 3, "epochs": 0.1, "train_seconds_this_run": 12.0,
                  "num_train_shapes": 20, "num_parameters": sum(p.numel() for p in model.parameters()),
                  "num_per_category": 6, "data_seed": 0}  # 2 test shapes
    if retrieval:
        metrics = {"r@1": 0.3, "r@5": 0.6, "mean_similarity": 0.4, "chance_r@1": 0.05, "num_queries": 20}
        evaluation["retrieval"] = {"shape_to_text": metrics, "shape_to_image": dict(metrics, **{"r@1": 0.2})}
    (folder / "evaluation.json").write_text(json.dumps(evaluation))


def test_report_runs_end_to_end_on_a_tiny_run(tmp_path, capsys):
    runs = tmp_path / "runs"
    fake_run(runs / "sita_vae", retrieval=True)
    shutil.copytree(runs / "sita_vae", runs / "no_alignment")
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    trimesh.creation.icosphere(subdivisions=2, radius=0.7).export(meshes / "ball.off")
    output = tmp_path / "docs" / "shapes.md"
    report = load_report()
    report.main(["--runs_dir", str(runs), "--output", str(output), "--grid_depth", "3", "--cgal_grid_depth", "3",
                 "--max_test_shapes", "3", "--num_reference_points", "500", "--cgal_mesh_dir", str(meshes), "--cgal_meshes", "ball"])
    text = output.read_text()
    assert "no_kl: no finished run" in capsys.readouterr().out and "crate: no finished run" in text
    assert "| SITA-VAE | " in text and "**overall**" in text and "| ball | 320 | yes |" in text
    assert "| SITA-VAE | shape→text (ST-S) | 0.300 | 0.600 |" in text
    assert "| IoU cost of alignment (without − with) | ≤ 0.01 | 0.0000 | **met** |" in text  # the same model
    assert "| shape→text R@1 over chance, SITA-VAE | ≥ 2.0 | 6.00 " in text
    assert "python training/report_shapes.py --runs_dir runs --output shapes.md" in text
    assert str(tmp_path) not in text and "/tmp" not in text
    numbers = json.loads(output.with_name("shapes.json").read_text())
    overall = numbers["results"]["sita_vae"]["procedural"]["overall"]
    assert overall["num_shapes"] == 2 and f"{overall['iou']:.4f}" in text
    assert output.with_name("shapes_reconstructions.png").read_bytes()[:4] == b"\x89PNG"


def test_verdicts_follow_the_numbers_both_ways():
    report = load_report()
    runs = {"sita_vae": {"retrieval": {"shape_to_text": {"r@1": 0.09, "chance_r@1": 0.05}}}}
    rows = report.verdict_rows({"sita_vae": {"iou": 0.92}, "no_alignment": {"iou": 0.935}}, runs)
    assert [row[3] for row in rows] == ["met", "missed", "missed"]
    assert rows[1][2] == "0.0150" and rows[2][2].startswith("1.80")
    runs["sita_vae"]["retrieval"]["shape_to_text"]["r@1"] = 0.2
    rows = report.verdict_rows({"sita_vae": {"iou": 0.89}, "no_alignment": {"iou": 0.88}}, runs)
    assert [row[3] for row in rows] == ["missed", "met", "met"]
    assert report.verdict_rows({"no_kl": {"iou": 0.95}}, {}) == []  # nothing to judge without the main run
