"""benchmarks/bench_tost_attention.py as a smoke run (``--quick``, fp32): the JSON holds time and peak memory (the
shared `_common.peak_increase_bytes`) for ToST and SDPA at every length, the slopes, and the goals with a verdict;
the page has the comparison table."""

import json

from tests.conftest import load_benchmark


def test_quick_run_writes_time_memory_slopes_and_goals(tmp_path):
    bench = load_benchmark("bench_tost_attention")
    page = tmp_path / "tost.md"
    bench.main(["--quick", "--dtypes", "fp32", "--output", str(page)])
    report = json.loads(page.with_suffix(".json").read_text())
    lengths = [str(n) for n in report["lengths"]]
    for operator in ("tost", "sdpa"):
        entry = report["results"]["fp32"][operator]
        for n in lengths:
            assert entry[n]["median_s"] > 0
            # a training step keeps activations for backward: it needs more memory than a forward
            assert entry[n]["train_peak_bytes"] > entry[n]["forward_peak_bytes"] > 0
        assert set(entry["slopes"]) >= {"time", "forward_memory"}
    assert len(report["goals"]) == 4 and all(isinstance(goal["pass"], bool) for goal in report["goals"])
    assert "| N | ToST ms | SDPA ms |" in page.read_text()
