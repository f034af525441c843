#!/usr/bin/env python
"""Import time of `whitebox_hf` and of a CLI usage error, before and after the lazy import; writes the results page.

Two source trees are measured with the same interpreter: this checkout's ``src/`` ("after") and ``src/`` of the git
revision ``--before`` extracted with ``git archive`` ("before"). For each, in a fresh interpreter with only that tree
on ``PYTHONPATH`` (run from an empty folder, offline, one thread):

  * wall time of ``python -c "import whitebox_hf"``, against ``python -c "import transformers"`` and
    ``python -c pass`` (whole processes, interpreter start-up included; median of ``--repeats``, the three
    commands interleaved and their order rotated each repetition so that background load hits them alike);
  * ``python -X importtime -c "import whitebox_hf"``: the cumulative import time of ``whitebox_hf`` and its
    largest direct imports (from the repetition with the median total);
  * which heavy libraries ``import whitebox_hf`` leaves in ``sys.modules``;
  * wall time, exit status and stderr lines of ``python -m whitebox_hf.cli --no-such-flag`` (what the
    ``whitebox-hf`` console script runs), and whether it imports torch.

Every number on the page comes from this run. Usage::

    .venv/bin/python benchmarks/bench_import_time.py --before 0c8eada --output docs/results/import_time.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "diffusers", "peft", "accelerate", "datasets", "sklearn", "matplotlib")
PROBE = ("import json, sys\nimport whitebox_hf\n"
         f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
CLI_PROBE = ("import contextlib, io, json, sys\nsys.argv = ['whitebox-hf', '--no-such-flag']\n"
             "from whitebox_hf.cli import main\nerr = io.StringIO()\n"
             "with contextlib.redirect_stderr(err):\n"
             "    try:\n        main()\n    except SystemExit as exit_info:\n        code = exit_info.code\n"
             "print(json.dumps({'torch': 'torch' in sys.modules, 'code': code}))")


def extract_before(revision: str, into: Path) -> Path:
    """``src/`` of ``revision`` (git archive), unpacked under ``into``."""
    archive = into / "before.tar"
    with archive.open("wb") as handle:
        subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", revision, "src"], stdout=handle,
                       check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "before", filter="data")
    return into / "before" / "src"


class Runner:
    def __init__(self, python: str, workdir: Path):
        self.python, self.workdir = python, workdir

    def env(self, src: Path | None) -> dict:
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
        if src is not None:
            env["PYTHONPATH"] = str(src)
        return env

    def run(self, args: list[str], src: Path | None) -> tuple[float, subprocess.CompletedProcess]:
        start = time.perf_counter()
        result = subprocess.run([self.python, *args], capture_output=True, text=True, cwd=self.workdir,
                                env=self.env(src), check=False)
        return time.perf_counter() - start, result

    def checked(self, args: list[str], src: Path | None) -> tuple[float, subprocess.CompletedProcess]:
        seconds, result = self.run(args, src)
        if result.returncode != 0:
            raise SystemExit(f"{shlex.join(args)} failed (PYTHONPATH={src}):\n{result.stderr[-3000:]}")
        return seconds, result


def parse_importtime(stderr: str) -> tuple[float, list[tuple[str, float]]]:
    """(cumulative seconds of ``whitebox_hf``, [(direct import, cumulative seconds)] largest first)."""
    rows = []
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            rows.append((len(match.group(3)) // 2, match.group(4), int(match.group(2)) / 1e6))
    top = next(i for i, (depth, name, _) in enumerate(rows) if depth == 0 and name == "whitebox_hf")
    # importtime prints a module after everything it imported: the children of the top entry precede it.
    start = max((i for i in range(top) if rows[i][0] == 0), default=-1) + 1
    children = [(name, seconds) for depth, name, seconds in rows[start:top] if depth == 1]
    return rows[top][2], sorted(children, key=lambda item: -item[1])


def measure(runner: Runner, trees: dict[str, Path], repeats: int) -> dict:
    commands = {"python -c pass": (["-c", "pass"], None),
                "python -c 'import transformers'": (["-c", "import transformers"], None)}
    for label, src in trees.items():
        commands[f"python -c 'import whitebox_hf' ({label})"] = (["-c", "import whitebox_hf"], src)
        commands[f"python -m whitebox_hf.cli --no-such-flag ({label})"] = (["-m", "whitebox_hf.cli",
                                                                             "--no-such-flag"], src)
    wall = {name: [] for name in commands}
    cli_results = {}
    names = list(commands)
    for repetition in range(repeats):
        shift = repetition % len(names)
        for name in names[shift:] + names[:shift]:
            args, src = commands[name]
            seconds, result = runner.run(args, src)
            if "--no-such-flag" in args:
                cli_results[name] = (result.returncode, len(result.stderr.splitlines()))
            elif result.returncode != 0:
                raise SystemExit(f"{name} failed:\n{result.stderr[-3000:]}")
            wall[name].append(seconds)
    out = {"wall": {name: statistics.median(times) for name, times in wall.items()}, "raw": wall,
           "cli": cli_results, "importtime": {}, "heavy": {}, "cli_torch": {}}
    for label, src in trees.items():
        runs = [parse_importtime(runner.checked(["-X", "importtime", "-c", "import whitebox_hf"], src)[1].stderr)
                for _ in range(repeats)]
        runs.sort(key=lambda item: item[0])
        out["importtime"][label] = runs[len(runs) // 2]
        out["heavy"][label] = json.loads(runner.checked(["-c", PROBE], src)[1].stdout.strip().splitlines()[-1])
        out["cli_torch"][label] = json.loads(runner.checked(["-c", CLI_PROBE], src)[1].stdout.strip().splitlines()[-1])
    return out


def report(args, results: dict, before_commit: str, after_commit: str, load: tuple, transformers_version: str) -> str:
    wall = results["wall"]
    base = wall["python -c 'import transformers'"]
    lines = [
        "# Import time of `whitebox_hf` and of a CLI usage error",
        "",
        f"Generated by `{shlex.join(['python', 'benchmarks/bench_import_time.py', *sys.argv[1:]])}` on "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC. Every number below comes from that run.",
        "",
        f"* before: `src/` of {before_commit} (eager imports); after: `src/` of this checkout at {after_commit} "
        "(transformers' `_LazyModule` in every package `__init__` but `pipelines/`, Auto registration on the "
        "first Auto-mapping read).",
        f"* Python {platform.python_version()}, transformers {transformers_version}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} at the start and {load[1]:.2f} at the end (the machine is shared, so the "
        "absolute seconds are inflated; the before/after ratio is the robust figure).",
        f"* Wall times: whole `python` processes (start-up included), median of {args.repeats}, the commands "
        "interleaved; run from an empty folder with only the measured tree on `PYTHONPATH`, `HF_HUB_OFFLINE=1`, "
        "`OMP_NUM_THREADS=1`.",
        "",
        "## Wall time",
        "",
        "| command | median (s) | − `import transformers` (s) | runs (s) |",
        "|---|---:|---:|---|",
    ]
    for name, seconds in wall.items():
        runs = ", ".join(f"{t:.2f}" for t in results["raw"][name])
        lines.append(f"| `{name}` | {seconds:.2f} | {seconds - base:+.2f} | {runs} |")
    lines += ["", "## `python -X importtime -c \"import whitebox_hf\"`", "",
              f"Cumulative import time of `whitebox_hf` (the run with the median total of {args.repeats}) and its "
              "largest direct imports (modules already imported by an earlier import count there, not here). "
              "`-X importtime` times imports made by the `import` statement only: a module imported through "
              "`importlib.import_module` (as transformers' `_LazyModule` and the Auto registration do) gets no row "
              "of its own, and what it imports is listed under the module that asked for it.", ""]
    for label, (total, children) in results["importtime"].items():
        lines += [f"**{label}**: `whitebox_hf` {total:.2f} s cumulative", "", "| direct import | cumulative (s) |",
                  "|---|---:|"]
        lines += [f"| `{name}` | {seconds:.3f} |" for name, seconds in children[:args.top]]
        lines.append("")
    lines += ["## What `import whitebox_hf` imports, and the CLI usage error", "",
              "| tree | heavy libraries in `sys.modules` after `import whitebox_hf` | `whitebox-hf --no-such-flag`: "
              "exit status, stderr lines | imports torch |", "|---|---|---|---|"]
    for label in results["heavy"]:
        code, err_lines = results["cli"][f"python -m whitebox_hf.cli --no-such-flag ({label})"]
        heavy = ", ".join(results["heavy"][label]) or "none"
        lines.append(f"| {label} | {heavy} | {code}, {err_lines} | {'yes' if results['cli_torch'][label]['torch'] else 'no'} |")
    before = wall["python -c 'import whitebox_hf' (before)"]
    after = wall["python -c 'import whitebox_hf' (after)"]
    cli_before = wall["python -m whitebox_hf.cli --no-such-flag (before)"]
    cli_after = wall["python -m whitebox_hf.cli --no-such-flag (after)"]
    lines += ["", "## Summary", "",
              f"* `import whitebox_hf`: {before:.2f} s → {after:.2f} s ({before / after:.1f}× faster); over "
              f"`import transformers`: {before - base:+.2f} s → {after - base:+.2f} s.",
              f"* `whitebox-hf --no-such-flag`: {cli_before:.2f} s → {cli_after:.2f} s ({cli_before / cli_after:.1f}× "
              "faster). What remains is the interpreter and `import transformers` (its `_LazyModule`).",
              "", "Commands measured (each with `PYTHONPATH=<tree>/src`):", "", "```",
              'python -c "import whitebox_hf"', 'python -c "import transformers"', "python -c pass",
              'python -X importtime -c "import whitebox_hf"', "python -m whitebox_hf.cli --no-such-flag", "```", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="git revision of the eager-import tree (e.g. 0c8eada)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top", type=int, default=8, help="direct imports listed per tree")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--output", default=None, help="markdown page to write (default: print it)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"argument --repeats: expected a positive count, got {args.repeats}")

    def git(*command):
        return subprocess.run(["git", "-C", str(ROOT), *command], capture_output=True, text=True,
                              check=True).stdout.strip()

    before_commit = git("rev-parse", "--short", args.before)
    after_commit = git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if git("status", "--porcelain",
                                                                                         "src") else "")
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_import_time_") as tmp:
        tmp = Path(tmp)
        (tmp / "cwd").mkdir()
        runner = Runner(args.python, tmp / "cwd")
        trees = {"before": extract_before(args.before, tmp), "after": ROOT / "src"}
        version = runner.checked(["-c", "import transformers; print(transformers.__version__)"], None)[1].stdout
        results = measure(runner, trees, args.repeats)
    page = report(args, results, before_commit, after_commit, (load_start, os.getloadavg()[0]), version.strip())
    if args.output:
        Path(args.output).write_text(page)
        print(f"wrote {args.output}")
    else:
        print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
