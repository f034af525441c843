"""benchmarks/gpu_suite.sh and its Python entry point benchmarks/bench_gpu.py, checked without a GPU: the script's
syntax, its refusal without CUDA, and every part of the entry point in its tiny CPU ``--dry-run``."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"


def test_suite_script_parses():
    subprocess.run(["bash", "-n", str(SUITE)], check=True)


def test_suite_without_cuda_exits_with_a_clear_message(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path), CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(["bash", str(SUITE)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "no CUDA device" in result.stderr and "--dry-run" in result.stderr
    assert not list(tmp_path.iterdir())  # nothing measured, nothing written


def test_suite_refuses_an_unknown_argument():
    result = subprocess.run(["bash", str(SUITE), "--fast"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 64 and "--fast" in result.stderr


@pytest.mark.timeout(300)
def test_every_part_runs_in_dry_run_mode(tmp_path):
    bench = load_benchmark("bench_gpu")
    written = bench.main(["all", "--dry-run", "--out", str(tmp_path)])
    assert [p.name for p in written] == ["vision.md", "long-context.md", "decode.md"]
    for name in ("vision", "long-context", "decode"):
        report = json.loads((tmp_path / f"{name}.json").read_text())
        assert report["dry_run"] is True and report["device"] == "CPU (dry run)"
        page = (tmp_path / f"{name}.md").read_text()
        assert "DRY RUN" in page and "slope" in page
    decode = json.loads((tmp_path / "decode.json").read_text())
    assert set(decode["rows"]) == {"CausalCRATE dyn", "CausalCRATE static", "GPT-2 dyn", "GPT-2 static", "ToST"}
    assert all(cell["tokens_per_s"] > 0 for row in decode["rows"].values() for cell in row.values())
    long_context = json.loads((tmp_path / "long-context.json").read_text())
    assert all("seconds" in cell for row in long_context["rows"].values() for cell in row.values())


def test_entry_point_without_cuda_and_without_dry_run_refuses():
    bench = load_benchmark("bench_gpu")
    if bench.torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: the refusal path is not reachable here")
    with pytest.raises(SystemExit, match="no CUDA device"):
        bench.main(["vision", "--out", "/nonexistent"])
