"""benchmarks/bench_shape_generation.py at its smallest setting on the bundled image-to-3D pipeline: it writes the page
and the JSON with every timed part for both dtypes and the same-size diffusers baseline."""

import json
from pathlib import Path

import pytest

from tests.conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_smallest_run_writes_the_page_and_json(tmp_path):
    from whitebox_hf.hub import bundled_checkpoint

    bench = load_benchmark("bench_shape_generation")
    page = tmp_path / "benchmark_shape_generation.md"
    argv = ["--pipeline", str(bundled_checkpoint("procedural-shapes-image-to-3d")), "--steps", "1", "--depth", "3",
            "--repeats", "1", "--warmup", "0", "--forward-repeats", "1", "--growth-batches", "1", "2",
            "--growth-depths", "2", "3", "--bf16", "on", "--image",
            str(ROOT / "spaces" / "text-to-3d" / "examples" / "chair.png"), "--output", str(page)]
    assert bench.main(argv) == 0
    report = json.loads(page.with_suffix(".json").read_text())
    assert set(report["timings"]) == {"sampling", "extraction", "together", "denoiser call"}
    for part in ("sampling", "extraction", "together"):
        assert set(report["timings"][part]) == {"float32", "bfloat16"}
        assert all(entry["median_s"] > 0 for entry in report["timings"][part].values())
    assert set(report["timings"]["denoiser call"]) == {"ours float32", "baseline float32", "ours bfloat16",
                                                       "baseline bfloat16"}
    assert report["guidance_batch"] == 2 and report["condition_tokens"] == 65
    # the baseline has the denoiser's size: within 10 % of its parameters (ours adds the long-skip projections)
    assert abs(report["baseline_parameters"] / report["denoiser_parameters"] - 1) < 0.1
    text = page.read_text()
    assert "| sampling | bfloat16 |" in text and "`PriorTransformer`" in text and "## Environment" in text
    assert 0 <= report["iou_vs_float32"]["bfloat16"] <= 1
    # the cost-growth section: every model and dtype at every batch, every part at every depth, and the slopes
    growth = report["cost_growth"]
    assert set(growth["denoiser"]) == {"1", "2"} and set(growth["extraction"]) == {"2", "3"}
    assert all(set(entry) == set(report["timings"]["denoiser call"]) for entry in growth["denoiser"].values())
    assert growth["extraction"]["3"]["points"] == 9**3
    assert all(entry["median_s"] > 0 and entry["peak_bytes"] >= 0
               for depth in growth["extraction"].values() for key, entry in depth.items() if key != "points")
    assert "## Cost growth" in text and "time slope vs batch" in text and "time slope vs grid points" in text


def test_bad_arguments_are_refused():
    bench = load_benchmark("bench_shape_generation")
    with pytest.raises(SystemExit):
        bench.parse_args(["--steps", "0"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--guidance", "-1"])
    with pytest.raises(SystemExit):  # a slope needs two distinct points
        bench.parse_args(["--growth-batches", "4", "4"])


def test_the_page_says_how_the_pipeline_trained(tmp_path):
    bench = load_benchmark("bench_shape_generation")
    run, vae = tmp_path / "diffusion", tmp_path / "sita_vae"
    (run / "pipeline").mkdir(parents=True)
    (vae / "model").mkdir(parents=True)
    assert "unknown" in bench.training_note(run / "pipeline")
    (run / "metrics.json").write_text(json.dumps({"steps": 300, "epochs": 11.8, "train_seconds_total": 150.0,
                                                  "num_train_shapes": 811, "autoencoder": str(vae / "model")}))
    note = bench.training_note(run / "pipeline")
    assert "300 steps (11.8 epochs, 2.5 min) on 811 procedural shapes" in note and "SITA-VAE" not in note
    (vae / "evaluation.json").write_text(json.dumps({"steps": 500, "volumetric_iou": 0.4919, "eval_split": "validation"}))
    assert "a SITA-VAE trained for 500 steps (volumetric IoU 0.492 on its validation shapes" in bench.training_note(
        run / "pipeline")
