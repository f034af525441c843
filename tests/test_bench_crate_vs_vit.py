"""benchmarks/bench_crate_vs_vit.py: the bf16 switch. Where the CPU emulates bf16 (AVX2 only: a bf16 matmul at a
few % of the fp32 rate) ``--bf16 auto`` skips the bf16 modes and the page keeps their goals, marked "not measured";
``on`` and ``off`` decide without measuring."""

import json

import pytest

from tests.conftest import load_benchmark


def test_resolve_bf16_follows_the_measured_matmul_speed(monkeypatch):
    common = load_benchmark("_common")
    assert common.resolve_bf16("on") == dict(enabled=True, choice="on", speedup=None, reason=None)
    off = common.resolve_bf16("off")
    assert not off["enabled"] and "--bf16 off" in off["reason"]
    monkeypatch.setattr(common, "bf16_matmul_speedup", lambda: 0.03)
    emulated = common.resolve_bf16("auto")
    assert not emulated["enabled"] and emulated["speedup"] == 0.03 and "emulates bf16" in emulated["reason"]
    monkeypatch.setattr(common, "bf16_matmul_speedup", lambda: 3.1)
    assert common.resolve_bf16("auto") == dict(enabled=True, choice="auto", speedup=3.1, reason=None)
    with pytest.raises(ValueError, match="`bf16` must be one of auto, on, off, got 'yes'"):
        common.resolve_bf16("yes")
    assert common.pf(None) == "not measured" and common.pf(True) == "**PASS**" and common.pf(False) == "**MISS**"


def test_bf16_matmul_speedup_is_a_positive_ratio():
    speedup = load_benchmark("_common").bf16_matmul_speedup(size=32, reps=1)
    assert speedup > 0


@pytest.mark.timeout(300)
def test_a_run_without_bf16_keeps_the_bf16_goals_marked_not_measured(tmp_path):
    bench = load_benchmark("bench_crate_vs_vit")
    output = tmp_path / "bench.md"
    report = bench.main(["--quick", "--threads", "1", "--settings", "fmnist-28", "--executions", "eager",
                         "--no-batch-scaling", "--bf16", "off", "--allocator", "default", "--output", str(output)])
    assert set(report["matmul_peak"]) == {"float32"}
    assert set(report["settings"][0]["inference"]) == {"eager/fp32"} and set(report["settings"][0]["training"]) == {"eager/fp32"}
    unmeasured = [g for g in report["goals"] if g["pass"] is None]
    assert {g["goal"] for g in unmeasured} == {"inference throughput CRATE/ViT", "CRATE fraction of bf16 matmul peak",
                                              "CRATE training step bf16 / fp32"}
    assert all(g["mode"] == "eager/bf16" for g in unmeasured)
    assert [g["mode"] for g in report["goals"] if g["pass"] is not None] == ["eager/fp32"]
    page = output.read_text()
    assert "**bf16 not measured**: turned off on the command line" in page
    assert "| inference throughput CRATE/ViT | fmnist-28 | eager/bf16 | not measured | ≥ 2.8× | not measured |" in page
    # The page renders again from its JSON alone.
    again = tmp_path / "again.md"
    bench.main(["--from-json", str(output.with_suffix(".json")), "--output", str(again)])
    assert again.read_text() == page
    # (--allocator default here: `keep` would change this test process's allocator for the tests after it)
    assert report["environment"]["allocator"] == "default" and "* allocator: glibc's defaults" in page
    kept = json.loads(output.with_suffix(".json").read_text())
    kept["environment"]["allocator"] = "keep"
    output.with_suffix(".json").write_text(json.dumps(kept))
    bench.main(["--from-json", str(output.with_suffix(".json")), "--output", str(again)])
    assert "* allocator: glibc keeps freed buffers for reuse" in again.read_text()


def test_keep_freed_memory_sets_the_glibc_thresholds():
    import ctypes

    common = load_benchmark("_common")
    try:
        assert common.keep_freed_memory(1 << 20) is True  # mallopt returns 1 for each accepted setting
    finally:  # back to glibc's initial thresholds (128 KiB) for the rest of this test process
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)
        libc.mallopt(-1, 128 * 1024)
