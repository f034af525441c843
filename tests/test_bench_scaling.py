"""benchmarks/bench_scaling.py: its smallest run (one process; the two-process launches are covered by
tests/training/test_scale_out.py) writes the page with throughput, memory, slopes and the multi-GPU/multi-node
instructions, and bad arguments are refused."""

import json

import pytest

from tests.conftest import load_benchmark


@pytest.mark.timeout(300)
def test_one_process_quick_run_writes_the_page(tmp_path):
    bench = load_benchmark("bench_scaling")
    page = tmp_path / "scaling.md"
    report = bench.main(["--setups", "1 process", "--batch-sizes", "16", "32", "--steps", "4", "--log-every", "1",
                         "--hidden-size", "32", "--num-layers", "2", "--output", str(page)])
    runs = report["runs"]["1 process"]
    assert set(runs) == {"16", "32"}
    for run in runs.values():
        assert "error" not in run, run
        assert run["processes"] == 1 and run["steps_timed"] == 3 and run["images_per_s"] > 0
        assert run["peak_rss_bytes"] > 0
    assert json.loads(page.with_suffix(".json").read_text())["runs"] == json.loads(json.dumps(report["runs"]))
    text = page.read_text()
    for expected in ("## Throughput", "**Cost growth**", "multi_node.yaml", "multi_gpu.yaml", "deepspeed_zero2.yaml",
                     "machine_rank"):
        assert expected in text


@pytest.mark.parametrize("argv, field", [(["--batch-sizes", "63"], "--batch-sizes"), (["--steps", "0"], "--steps"),
                                         (["--steps", "4", "--log-every", "3"], "--steps")])
def test_bad_arguments_are_refused(argv, field, capsys):
    bench = load_benchmark("bench_scaling")
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert field in capsys.readouterr().err
