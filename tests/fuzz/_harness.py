"""Shared classifier for the bad-input fuzz (issue 12): one verdict per case, one tally per run.

Every case is a callable that feeds one bad value to the public API. Its outcome is

* ``"clear"``: it raised ``ValueError``, ``TypeError`` or ``OSError`` and the message names the argument
  (the developers' guide: every bad input raises one of these naming the argument, the expected and the received
  value; files raise ``OSError`` naming the file);
* ``"unclear"``: it raised anything else, or one of those three without naming the argument;
* ``"silent"``: it returned, i.e. the bad value was accepted.

Both ``tests/fuzz/test_fuzz_*.py`` and ``benchmarks/fuzz_report.py`` use it, so the report counts exactly what the
tests assert.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Callable, Iterable

CLEAR, UNCLEAR, SILENT = "clear", "unclear", "silent"
OUTCOMES = (CLEAR, UNCLEAR, SILENT)
CLEAR_TYPES = (ValueError, TypeError, OSError)


def describe(callable_: Callable[[], object], argument_name: str | Iterable[str]) -> tuple[str, str]:
    """Run ``callable_`` once; return ``(outcome, detail)``, the detail being the exception's type and message."""
    names = (argument_name,) if isinstance(argument_name, str) else tuple(argument_name)
    try:
        callable_()
    except CLEAR_TYPES as error:  # noqa: PERF203 - one call, not a loop
        message = str(error)
        detail = f"{type(error).__name__}: {message}"
        return (CLEAR if any(name in message for name in names) else UNCLEAR), detail
    except Exception as error:  # noqa: BLE001 - any other exception is exactly what "unclear" counts
        return UNCLEAR, f"{type(error).__name__}: {error}"
    return SILENT, "accepted"


def classify(callable_: Callable[[], object], argument_name: str | Iterable[str]) -> str:
    """``"clear"``, ``"unclear"`` or ``"silent"`` for one bad-input case (see the module docstring).

    ``argument_name`` is the name the message must contain; a tuple accepts any of several spellings (for example
    ``("pixel_values", "images")`` for a pipeline that renames its input).
    """
    return describe(callable_, argument_name)[0]


@dataclasses.dataclass
class FuzzTally:
    """Counts of outcomes over a run, with the details of the cases that were not clear."""

    counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    failures: list = dataclasses.field(default_factory=list)

    def record(self, case: str, callable_: Callable[[], object], argument_name: str | Iterable[str]) -> str:
        """Classify one case, count it and keep its detail when it is not clear; return the outcome."""
        outcome, detail = describe(callable_, argument_name)
        self.counts[outcome] += 1
        if outcome != CLEAR:
            self.failures.append((case, outcome, detail))
        return outcome

    @property
    def cases(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        return {"cases": self.cases, **{outcome: self.counts[outcome] for outcome in OUTCOMES}}

    def merge(self, other: "FuzzTally") -> None:
        self.counts.update(other.counts)
        self.failures.extend(other.failures)
