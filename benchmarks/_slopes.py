"""Cost growth for the benchmark pages: the log-log slope of a cost (time, memory) against the work (tokens,
batch, processes). A slope of 1 is linear growth, 0 flat, 2 quadratic.

Imported by ``bench_language_models.py``, ``bench_scaling.py`` and the GPU suite's entry points.
"""

from __future__ import annotations

import math

__all__ = ["loglog_slope", "slope_cell"]


def loglog_slope(xs, ys) -> float | None:
    """Least-squares slope of log(y) on log(x) over the points with positive x and y; None with fewer than two."""
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len({p[0] for p in points}) < 2:
        return None
    mean_x = sum(p[0] for p in points) / len(points)
    mean_y = sum(p[1] for p in points) / len(points)
    sxx = sum((p[0] - mean_x) ** 2 for p in points)
    return sum((p[0] - mean_x) * (p[1] - mean_y) for p in points) / sxx


def slope_cell(slope: float | None) -> str:
    return "–" if slope is None else f"{slope:.2f}"
