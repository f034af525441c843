"""benchmarks/benchmark_flow_pipeline.py at a tiny size: both pipelines are timed side by side, the page and its JSON
carry the ratios and the cost-growth slope, and bad arguments are one-line usage errors."""

import json

import pytest

from tests.conftest import load_benchmark

TINY = ["--hidden_size", "16", "--num_layers", "1", "--num_heads", "2", "--steps", "2", "--repeats", "1",
        "--batch_size", "2", "--guidance_scales", "4.0", "--growth_batch_sizes", "1", "2", "--bf16", "off"]


def test_smallest_run_writes_the_ratios_and_the_growth_slope(tmp_path):
    bench = load_benchmark("benchmark_flow_pipeline")
    page = tmp_path / "flow.md"
    report = bench.main([*TINY, "--output", str(page)])
    assert [(r["dtype"], r["guidance_scale"], r["batch_size"]) for r in report["rows"]] == [("float32", 4.0, 2)]
    assert [r["batch_size"] for r in report["growth"]] == [1, 2]
    assert report["growth"][1] == report["rows"][0]  # the main table's batch is not measured twice
    for row in report["rows"] + report["growth"]:
        for name in ("whitebox_flow", "dit_pipeline"):
            assert row[name]["reps"] == 1 and row[name]["samples_per_s"] == pytest.approx(
                row["batch_size"] / row[name]["median_s"])
        assert row["ratio"] == pytest.approx(row["whitebox_flow"]["samples_per_s"] / row["dit_pipeline"]["samples_per_s"])
    assert set(report["growth_slopes"]) == {"whitebox_flow", "dit_pipeline"}
    assert all(isinstance(s, float) for s in report["growth_slopes"].values())
    assert json.loads(page.with_suffix(".json").read_text())["growth_slopes"] == report["growth_slopes"]
    text = page.read_text()
    assert "## Cost growth with the batch" in text and "log-log slope of time against batch" in text
    assert "**bf16 not measured**: turned off on the command line" in text


@pytest.mark.parametrize("argv, field", [(["--growth_batch_sizes", "4", "4"], "--growth_batch_sizes"),
                                         (["--steps", "0"], "--steps"),
                                         (["--guidance_scales", "4,x"], "--guidance_scales")])
def test_bad_arguments_are_usage_errors(argv, field, capsys):
    bench = load_benchmark("benchmark_flow_pipeline")
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(argv)
    assert exit_info.value.code == 2 and field in capsys.readouterr().err
