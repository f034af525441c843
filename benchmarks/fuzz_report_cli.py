#!/usr/bin/env python
"""Counts of the bad-input fuzz of the CLI, the training scripts' arguments, the pipelines, the denoisers and the
autoencoder, the evaluation entry points and the saved files: how many cases, and how many were clear, unclear or
silent (`tests/fuzz/_harness.py`, the classifier the tests use).

The cases are `fixed_cases` of ``tests/fuzz/test_fuzz_cli_pipelines.py`` (one representative bad input per family;
the tests draw many more with hypothesis). The package measured is the one on ``PYTHONPATH``, so the same cases run
against another revision::

    git worktree add /tmp/fuzzcli-before 61b63ce
    PYTHONPATH=/tmp/fuzzcli-before/src .venv/bin/python benchmarks/fuzz_report_cli.py    # before
    PYTHONPATH=src .venv/bin/python benchmarks/fuzz_report_cli.py                        # after

``--details`` lists every case that is not clear, with what it raised.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--details", action="store_true", help="list the cases that are not clear")
    parser.add_argument("--json", default=None, help="also write the counts to this JSON file")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path[:0] = [str(TESTS / "fuzz"), str(TESTS)]  # the harness, the cases and conftest's script loader
    warnings.simplefilter("ignore")
    import whitebox_hf
    from _harness import FuzzTally
    from test_fuzz_cli_pipelines import fixed_cases

    tally = FuzzTally()
    families = collections.defaultdict(FuzzTally)
    with tempfile.TemporaryDirectory() as workdir:
        for name, call, argument in fixed_cases(Path(workdir)):
            case = FuzzTally()
            case.record(name, call, argument)
            tally.merge(case)
            families[name.split()[0]].merge(case)
    print(f"whitebox_hf from {Path(whitebox_hf.__file__).parent}")
    print(f"{'family':10s} {'cases':>6s} {'clear':>6s} {'unclear':>8s} {'silent':>7s}")
    for family, counts in [*sorted(families.items()), ("total", tally)]:
        row = counts.as_dict()
        print(f"{family:10s} {row['cases']:6d} {row['clear']:6d} {row['unclear']:8d} {row['silent']:7d}")
    if args.details:
        for name, outcome, detail in tally.failures:
            print(f"  {outcome:8s} {name}: {' '.join(detail.split())[:220]}")
    if args.json:
        Path(args.json).write_text(json.dumps({"total": tally.as_dict(),
                                               **{f: c.as_dict() for f, c in sorted(families.items())}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
