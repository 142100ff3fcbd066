"""The arithmetic of the benchmarks' figures: percentiles, linear fits, ratios. Pure functions."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks (numpy's default).

    With few samples a high percentile is close to the maximum: report how many samples it rests on.
    """
    if not values:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0-100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    below = math.floor(position)
    above = math.ceil(position)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


@dataclass(frozen=True)
class LinearFit:
    """y = slope * x + intercept, and how much of y's variance the line explains (r_squared)."""

    slope: float
    intercept: float
    r_squared: float

    def at(self, x: float) -> float:
        return self.slope * x + self.intercept


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> LinearFit:
    """Least-squares line through (xs, ys). r_squared is 1.0 when ys do not vary at all."""
    if len(xs) != len(ys):
        raise ValueError("xs and ys differ in length")
    if len(xs) < 2 or len(set(xs)) < 2:
        raise ValueError("a line needs at least two distinct x values")
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    total = sum((y - mean_y) ** 2 for y in ys)
    residual = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys, strict=True))
    r_squared = 1.0 if total == 0 else 1 - residual / total
    return LinearFit(slope, intercept, r_squared)


def ratio(value: float, reference: float) -> float:
    """value / reference; infinite when the reference is zero and the value is not."""
    if reference == 0:
        return 0.0 if value == 0 else math.inf
    return value / reference


def rounded(value: float, digits: int = 3) -> float:
    """A figure for the JSON line, without noise digits."""
    return round(value, digits)
