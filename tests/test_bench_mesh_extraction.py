"""benchmarks/bench_mesh_extraction.py on a tiny grid: the page compares dense and coarse-to-fine extraction and has
the cost-growth table with its slopes; bad depths are usage errors."""

import re

import pytest

from tests.conftest import load_benchmark


def test_tiny_run_writes_both_tables(tmp_path):
    bench = load_benchmark("bench_mesh_extraction")
    page = tmp_path / "mesh.md"
    assert bench.main(["--depth", "4", "--coarse-depth", "2", "--growth-depths", "3", "--fit-steps", "0",
                       "--output", str(page)]) == 0
    text = page.read_text()
    assert "| dense (`occupancy_grid`) | 4,913 |" in text  # (2^4 + 1)^3 grid points
    rows = re.findall(r"^\| (\d) \(coarse (\d)\) \| ([\d,]+) \|", text, flags=re.M)
    assert rows == [("3", "1", "729"), ("4", "2", "4,913")]
    # The full-depth row is the first table's measurement, not a second one.
    dense_s = re.search(r"^\| dense \(`occupancy_grid`\) \| 4,913 \| ([\d.]+) \|", text, flags=re.M).group(1)
    assert re.search(rf"^\| 4 \(coarse 2\) \| 4,913 \| {dense_s} \|", text, flags=re.M)
    slopes = re.search(r"\*\*log-log slope against grid points\*\* \| 1\.00 \| (\S+) \| (\S+) \| (\S+) \|", text)
    assert slopes and all(re.fullmatch(r"-?\d+\.\d\d", value) for value in slopes.groups())


@pytest.mark.parametrize("argv, field", [(["--depth", "5", "--coarse-depth", "5"], "--coarse-depth"),
                                         (["--depth", "6", "--coarse-depth", "4", "--growth-depths", "2"],
                                          "--growth-depths")])
def test_bad_depths_are_usage_errors(argv, field, capsys):
    bench = load_benchmark("bench_mesh_extraction")
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(argv)
    assert exit_info.value.code == 2 and field in capsys.readouterr().err
