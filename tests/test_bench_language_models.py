"""benchmarks/bench_language_models.py at a tiny size: part (b) decodes with both caches and writes the ratios and
the slope table; ``--reuse-from`` keeps an earlier run's other parts and names their command."""

import json

import pytest

from tests.conftest import load_benchmark

TINY = ["--quick", "--threads", "1", "--hidden-size", "32", "--num-layers", "1", "--num-heads", "4",
        "--vocab-size", "64", "--modes", "fp32"]


@pytest.mark.timeout(300)
def test_decode_with_both_caches_and_reuse_of_other_parts(tmp_path):
    bench = load_benchmark("bench_language_models")
    first = tmp_path / "first.md"
    bench.main([*TINY, "--parts", "c", "--train-models", "gpt2", "--output", str(first)])
    second = tmp_path / "second.md"
    report = bench.main([*TINY, "--parts", "b", "--gen-models", "tost", "causal-crate", "gpt2",
                         "--reuse-from", str(first.with_suffix(".json")), "--output", str(second)])
    assert set(report["parts"]) == {"b", "c"} and set(report["reused"]) == {"c"}
    assert report["parts"]["c"] == json.loads(first.with_suffix(".json").read_text())["parts"]["c"]
    series = report["parts"]["b"]["series"]
    assert series == ["tost/dynamic", "causal-crate/dynamic", "gpt2/dynamic", "causal-crate/static", "gpt2/static"]
    row = report["parts"]["b"]["modes"]["fp32"][128]
    # A static cache is preallocated for context + decode steps: more bytes than the dynamic one after prefill.
    assert row["causal-crate/static"]["cache_bytes_after_prefill"] > row["causal-crate/dynamic"]["cache_bytes_after_prefill"]
    goals = [g["goal"] for g in report["goals"]]
    assert any("both static cache" in g for g in goals) and any("both dynamic cache" in g for g in goals)
    page = second.read_text()
    assert "taken unchanged from an earlier run" in page and "**Cost growth**" in page
    assert "CausalCRATE static" in page and "Static over dynamic cache" in page


def test_reuse_refuses_other_model_sizes(tmp_path):
    bench = load_benchmark("bench_language_models")
    first = tmp_path / "first.md"
    bench.main([*TINY, "--parts", "c", "--train-models", "gpt2", "--output", str(first)])
    with pytest.raises(ValueError, match="model sizes"):
        bench.main([*TINY, "--hidden-size", "64", "--parts", "b", "--gen-models", "gpt2", "--contexts", "16",
                    "--reuse-from", str(first.with_suffix(".json")), "--output", str(tmp_path / "x.md")])
    with pytest.raises(SystemExit):
        bench.parse_args(["--reuse-from", str(tmp_path / "missing.json")])


def test_loglog_slope():
    from _slopes import loglog_slope

    assert loglog_slope([1, 2, 4, 8], [3, 6, 12, 24]) == pytest.approx(1.0)
    assert loglog_slope([1, 2, 4], [5, 20, 80]) == pytest.approx(2.0)
    assert loglog_slope([128, 4096], [2.0, 2.0]) == pytest.approx(0.0)
    assert loglog_slope([4], [1.0]) is None and loglog_slope([1, 2], [None, 3]) is None


def test_a_reused_explanation_carries_one_earlier_run_marker_however_often_it_is_reused(tmp_path):
    bench = load_benchmark("bench_language_models")
    first = tmp_path / "first.md"
    bench.main([*TINY, "--parts", "c", "--train-models", "gpt2", "--output", str(first)])
    earlier = json.loads(first.with_suffix(".json").read_text())
    earlier["explanation"] = "Why the numbers are what they are."
    first.with_suffix(".json").write_text(json.dumps(earlier))
    _, explanation = bench.reuse_parts(str(first.with_suffix(".json")), bench.Dims(**earlier["dims"]), {"b": {}})
    again = {**earlier, "explanation": explanation}
    first.with_suffix(".json").write_text(json.dumps(again))
    _, twice = bench.reuse_parts(str(first.with_suffix(".json")), bench.Dims(**earlier["dims"]), {"b": {}})
    assert twice.count("*Written for the earlier run of") == 1 and twice.endswith("Why the numbers are what they are.")


@pytest.mark.timeout(300)
def test_a_reused_forward_part_renders_as_it_did_when_measured(tmp_path):
    # JSON keys the lengths as strings; before they were turned back into ints every reused cell read "not run".
    bench = load_benchmark("bench_language_models")
    first = tmp_path / "first.md"
    bench.main([*TINY, "--parts", "a", "--lengths", "32,64", "--output", str(first)])
    second = tmp_path / "second.md"
    report = bench.main([*TINY, "--parts", "c", "--train-models", "gpt2", "--reuse-from",
                         str(first.with_suffix(".json")), "--output", str(second)])
    assert set(report["reused"]) == {"a"}

    def forward_section(page):
        return page.read_text().split("## (a)", 1)[1].split("\n## ", 1)[0]

    assert "not run" not in forward_section(first)
    assert forward_section(second) == forward_section(first)
    assert report["goals"] and all(g["value"] is not None for g in report["goals"] if "ToST" in g["goal"])


@pytest.mark.timeout(300)
def test_bf16_cast_decodes_a_cast_copy_in_part_b_only(tmp_path):
    bench = load_benchmark("bench_language_models")
    report = bench.main([*TINY[:-2], "--modes", "fp32", "bf16-cast", "--bf16", "on", "--parts", "b,c", "--gen-models",
                         "causal-crate", "gpt2", "--train-models", "gpt2", "--output", str(tmp_path / "x.md")])
    assert set(report["parts"]["b"]["modes"]) == {"fp32", "bf16-cast"}
    assert set(report["parts"]["c"]["modes"]) == {"fp32"}  # training a bf16-cast model is not what it measures
    fp32, cast = (report["parts"]["b"]["modes"][mode][128] for mode in ("fp32", "bf16-cast"))
    # The caches of the cast copy hold bf16: half the bytes of the fp32 model's.
    for series in ("causal-crate/static", "gpt2/dynamic"):
        assert cast[series]["cache_bytes_after_prefill"] * 2 == fp32[series]["cache_bytes_after_prefill"]
    assert any(g["mode"] == "bf16-cast" for g in report["goals"])


def test_bf16_off_drops_the_bf16_modes_and_says_why(tmp_path):
    bench = load_benchmark("bench_language_models")
    output = tmp_path / "x.md"
    report = bench.main([*TINY[:-2], "--modes", "fp32", "bf16-cast", "--bf16", "off", "--parts", "b",
                         "--gen-models", "gpt2", "--caches", "dynamic", "--output", str(output)])
    assert set(report["parts"]["b"]["modes"]) == {"fp32"} and not report["bf16"]["enabled"]
    assert "**bf16 not measured**: turned off on the command line" in output.read_text()
