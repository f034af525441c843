"""benchmarks/bench_attention_kernels.py: the cost-growth table (log-log slope of time against tokens over the causal
shapes) and the re-render from a run's JSON."""

import json

from tests.conftest import load_benchmark


def test_growth_slopes_follow_the_times_and_the_page_renders_from_json(tmp_path):
    bench = load_benchmark("bench_attention_kernels")
    rows = []
    for tokens in (256, 512, 1024, 4096):
        for dtype in ("float32", "bfloat16"):
            # SDPA time quadratic in the tokens, the matmul route's linear: the slopes must read 2.00 and 1.00.
            rows.append(dict(shape=f"causal {tokens}", tokens=tokens, dtype=dtype, mode="forward",
                             sdpa_ms=1e-4 * tokens**2, matmul_ms=0.01 * tokens, ratio=1e-2 * tokens))
    rows.append(dict(shape="CRATE-T 224², batch 8", tokens=197, dtype="float32", mode="forward", sdpa_ms=7.0,
                     matmul_ms=9.0, ratio=0.78))  # not causal: not in the growth table
    growth = bench.growth_lines(rows)
    assert "| float32 | forward | 2.00 | 1.00 |" in growth and "| bfloat16 | forward | 2.00 | 1.00 |" in growth
    assert "256, 512, 1024, 4096 tokens" in growth[0]
    report = dict(command="x", date="d", warmup=1, reps=1, rows=rows, max_keys=256, bf16=None,
                  environment=dict(cpu_model="cpu", logical_cpus=2, memory_gb=1, cpu_flags="avx2", torch="t",
                                   torch_threads=1, torch_interop_threads=1, mkldnn=True, transformers="t",
                                   python="3", loadavg_start="0 0 0", loadavg_end="0 0 0"))
    source = tmp_path / "run.json"
    source.write_text(json.dumps(report))
    bench.main(["--from-json", str(source), "--output", str(tmp_path / "page.md")])
    page = (tmp_path / "page.md").read_text()
    assert "**Cost growth with the sequence**" in page and "| float32 | forward | 2.00 | 1.00 |" in page
    assert "In bf16, up to 256 keys" in page
