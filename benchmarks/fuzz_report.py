#!/usr/bin/env python
"""Counts of the bad-input fuzz of configurations and models (issue 12) before and after; writes the results page.

Runs every case of ``tests/fuzz/_model_cases.py`` (the cases ``tests/fuzz/test_fuzz_models.py`` asserts, enumerated
from the Auto tables: bad configuration fields and keys, bad forward inputs, bad checkpoint folders) against two
source trees, each in a fresh interpreter with only that tree's ``src/`` on ``PYTHONPATH`` (offline, one thread), and
classifies each outcome with ``tests/fuzz/_harness.py``: *clear* (``ValueError`` / ``TypeError`` / ``OSError``
naming the argument), *unclear* (any other exception, or one not naming the argument) or *silent* (accepted).
The cases are the same for both trees: this checkout's ``tests/fuzz``.

Usage (the tree before issue 12 checked out beside this one)::

    git worktree add /tmp/fuzz-before 61b63ce
    .venv/bin/python benchmarks/fuzz_report.py --before-src /tmp/fuzz-before/src --before-label 61b63ce \\
        --output docs/results/fuzz.md

``--run`` alone prints the counts (JSON) for the ``whitebox_hf`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUZZ = ROOT / "tests" / "fuzz"
# Groups of `_model_cases.all_cases` (configurations and models), then the families of
# `test_fuzz_cli_pipelines.fixed_cases` (the first word of a case's name).
GROUPS = ("config", "forward", "files", "cli", "script", "pipeline", "denoiser", "rae", "knn", "probe", "frechet",
          "saliency", "eval")
EXAMPLES = 5  # non-clear cases listed per group and tree on the page


def run_here() -> dict:
    """Run every case against the imported ``whitebox_hf``; counts per group and the first non-clear cases."""
    sys.path.insert(0, str(FUZZ))
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    import whitebox_hf
    from _harness import FuzzTally
    from _model_cases import all_cases

    sys.path.insert(0, str(FUZZ.parent))  # conftest's script loader, used by the CLI cases
    from test_fuzz_cli_pipelines import fixed_cases

    tallies = collections.defaultdict(FuzzTally)
    for group, name, call, argument in all_cases():
        tallies[group].record(name, call, argument)
    with tempfile.TemporaryDirectory() as workdir:
        for name, call, argument in fixed_cases(Path(workdir)):
            group = name.split()[0]
            if group == "files":  # the CLI agent's file cases: keep them apart from the models' ones
                group = "files (cli)"
            tallies[group].record(name, call, argument)
    groups = [group for group in GROUPS if group in tallies] + sorted(set(tallies) - set(GROUPS))
    failures = [(group, *failure) for group in groups for failure in tallies[group].failures]
    return {
        "package": str(Path(whitebox_hf.__file__).resolve().parent),
        "groups": {group: tallies[group].as_dict() for group in groups},
        # Temporary folders are machine-local: a page shows them as <tmp>.
        "failures": [[group, case, outcome, re.sub(re.escape(tempfile.gettempdir()) + r"/[\w.-]+", "<tmp>",
                                                   detail.splitlines()[0])[:160]]
                     for group, case, outcome, detail in failures],
    }


def run_tree(src: Path) -> dict:
    # The tree's own training scripts go with its package (today's scripts import modules an older tree lacks).
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "WHITEBOX_HF_TRAINING_DIR": str(src.parent / "training")}
    completed = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--run"], env=env, cwd=ROOT,
                               capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def total(result: dict) -> dict:
    counts = collections.Counter()
    for group in result["groups"].values():
        counts.update(group)
    return {key: counts[key] for key in ("cases", "clear", "unclear", "silent")}


def git_head() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip() or "unknown"


def _case_count_note(before: dict, after: dict) -> list[str]:
    """The model cases are enumerated from each tree's own Auto tables, so a family added since has cases only
    after; the page says how many."""
    extra = total(after)["cases"] - total(before)["cases"]
    if extra == 0:
        return []
    return [f"The tree after has {extra:+d} cases: the model cases come from each tree's own Auto tables, so "
            "families registered since the tree before (e.g. SITA-VAE) have cases only after.", ""]


def page(before: dict, after: dict, before_label: str, command: str) -> str:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Bad-input fuzz of the configurations, models, CLI, training scripts, pipelines, denoisers and evaluation",
        "",
        f"Generated by `{command}` on {now}. Every number below comes from that run.",
        "",
        "* Cases: `tests/fuzz/_model_cases.py` (the ones `tests/fuzz/test_fuzz_models.py` asserts), enumerated from the "
        "Auto tables of `whitebox_hf.models.auto`: every declared field of every configuration given values of the "
        "wrong type, non-finite floats, a misspelt key and a bad `num_labels`; every registered model's forward given "
        "integer, bool, complex, NaN/inf, empty or misshaped pixels, ids outside the vocabulary, masks other than 0/1 "
        "and labels out of range; checkpoint folders of another `model_type`, with a bad config.json, missing, or "
        "with truncated weights. Then `fixed_cases` of `tests/fuzz/test_fuzz_cli_pipelines.py` (one representative "
        "bad input per case of every CLI subcommand, every training script's options, every pipeline, both denoisers, "
        "the RAE, the evaluation entry points and damaged saved files; the tests draw many more with hypothesis).",
        "* Outcome (`tests/fuzz/_harness.py`): **clear** = `ValueError`, `TypeError` or `OSError` whose message names "
        "the argument; **unclear** = any other exception, or one not naming it; **silent** = accepted.",
        f"* before: `src/` of {before_label}; after: `src/` of this checkout at {git_head()}. The same cases run against "
        "both, each in a fresh interpreter with only that tree on `PYTHONPATH`. The cases call "
        "`register_auto_classes()` before anything else: without it the tree before cannot import `WhiteboxClipModel` "
        "(a first import of `BertModel` read the Auto mappings mid-import, a circular import fixed in this issue).",
        "",
        *_case_count_note(before, after),
        "## Counts",
        "",
        "| tree | group | cases | clear | unclear | silent |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, result in (("before", before), ("after", after)):
        for group, counts in result["groups"].items():
            lines.append(f"| {label} | {group} | {counts['cases']} | {counts['clear']} | {counts['unclear']} | "
                         f"{counts['silent']} |")
        counts = total(result)
        lines.append(f"| {label} | **all** | {counts['cases']} | {counts['clear']} | {counts['unclear']} | "
                     f"{counts['silent']} |")
    for label, result in (("before", before), ("after", after)):
        lines += ["", f"## Cases not clear ({label}: {len(result['failures'])}; the first {EXAMPLES} of each group)", ""]
        if not result["failures"]:
            lines.append("None.")
            continue
        lines += ["| group | case | outcome | what happened |", "|---|---|---|---|"]
        shown = [failure for group in result["groups"] for failure in
                 [failure for failure in result["failures"] if failure[0] == group][:EXAMPLES]]
        for group, case, outcome, detail in shown:
            cell = detail.replace("|", "\\|")
            lines.append(f"| {group} | `{case.replace('|', '/')}` | {outcome} | `{cell.replace('`', '')}` |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="store_true", help="print the counts for the whitebox_hf on PYTHONPATH")
    parser.add_argument("--before-src", type=Path, help="src/ folder of the tree before (e.g. a git worktree)")
    parser.add_argument("--before-label", default="the earlier tree", help="how the page names that tree")
    parser.add_argument("--output", type=Path, help="write the results page here")
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_here()))
        return
    after = run_tree(ROOT / "src")
    print("after ", json.dumps(total(after)))
    if args.before_src is None:
        return
    if not (args.before_src / "whitebox_hf").is_dir():
        raise OSError(f"--before-src {args.before_src} holds no whitebox_hf package")
    before = run_tree(args.before_src)
    print("before", json.dumps(total(before)))
    if args.output:
        # The before tree is named by its label, not by where it lay on this machine (no local path in a page).
        command = (f"git worktree add BEFORE {args.before_label} && python benchmarks/fuzz_report.py --before-src "
                   f"BEFORE/src --before-label {args.before_label} --output {args.output}")
        args.output.write_text(page(before, after, args.before_label, command))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
