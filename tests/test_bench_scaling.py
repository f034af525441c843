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
    # One real run (each costs an interpreter start and imports); the slopes are checked on a second batch derived
    # from it below, where their values are known.
    report = bench.main(["--setups", "1 process", "--batch-sizes", "16", "--steps", "4", "--log-every", "1",
                         "--hidden-size", "32", "--num-layers", "2", "--output", str(page)])
    runs = report["runs"]["1 process"]
    assert set(runs) == {"16"}
    run = runs["16"]
    assert "error" not in run, run
    assert run["processes"] == 1 and run["steps_timed"] == 3 and run["images_per_s"] > 0
    assert run["peak_rss_bytes"] > 0
    assert json.loads(page.with_suffix(".json").read_text())["runs"] == json.loads(json.dumps(report["runs"]))
    text = page.read_text()
    for expected in ("## Throughput", "**Cost growth**", "multi_node.yaml", "multi_gpu.yaml", "deepspeed_zero2.yaml",
                     "machine_rank"):
        assert expected in text

    # Twice the batch at twice the step time and the same memory: slopes 1 (linear) and 0 (flat).
    doubled = dict(run, step_s=2 * run["step_s"], images_per_s=run["images_per_s"])
    grown = dict(report, batch_sizes=[16, 32], runs={"1 process": {"16": run, "32": doubled}})
    assert "| 1 process | 1.00 | 0.00 |" in bench.render(grown)


@pytest.mark.parametrize("argv, field", [(["--batch-sizes", "63"], "--batch-sizes"), (["--steps", "0"], "--steps"),
                                         (["--steps", "4", "--log-every", "3"], "--steps")])
def test_bad_arguments_are_refused(argv, field, capsys):
    bench = load_benchmark("bench_scaling")
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert field in capsys.readouterr().err
