"""Keep-fraction schedules for progressive pruning, as pure functions.

A schedule maps the step index t = 1..T to the fraction of prunable weights
kept after step t. Both schedules end exactly at the target keep fraction
kappa at t = T and are non-increasing, so Iterative SNIP can only remove.

        exp:    keep_t = kappa ** (t / T)
        linear: keep_t = 1 - t * (1 - kappa) / T

The keep *counts* k_t = floor(keep_t * N) are computed on the host in float64
(`keep_counts`) and fed to the compiled pruning program as data: float32
arithmetic inside the program could be off by one at N = 20 M, and passing
counts as data means one compile serves every sparsity level. The floor
forgives float64 noise (`count_kept`): 1 - 0.9 is 0.09999999999999998, and
a plain floor would keep 43,049 of LeNet-5's 430,500 weights, not 43,050.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

SCHEDULES = ("exp", "linear")

# Slack of the keep count's floor, as a fraction of N. float64 noise in a keep
# fraction is about 1e-16 absolute (1 - s cancels, so it is absolute, not
# relative: 1 - 0.9999 is off by 1.1e-13 relative), i.e. about 1e-16 * N in
# the count; 1e-13 * N is a thousand times that, and still below the 1e-4
# that separates floor((1 - s) * N) from the next integer for a sparsity of
# 4 decimals at N < 1e9 (5 decimals at N < 1e8).
COUNT_SLACK = 1e-13


def check_sparsity(sparsity: Any) -> float:
    """Validates a sparsity (the fraction of prunable weights removed).

    The keep counts are computed from it on the host (`keep_counts`), so it
    must be a concrete number: a Python float or int, a numpy scalar, or a
    0-d array. What varies inside a compiled program is the keep count.

    Args:
        sparsity: fraction removed; 0.995 keeps 0.5 % of the weights.

    Returns:
        The sparsity as a Python float.

    Raises:
        TypeError: if it is not a real number or a 0-d real array (a string,
            a bool, an array of shape (1,), None).
        ValueError: if it is not a finite number in [0, 1).
    """
    dtype = getattr(sparsity, "dtype", None)
    is_number = isinstance(sparsity, numbers.Real) and not isinstance(sparsity, bool)
    is_scalar_array = (np.ndim(sparsity) == 0 and dtype is not None
                       and np.dtype(dtype).kind in "fiu")
    if not (is_number or is_scalar_array):
        shape = f" of shape {tuple(np.shape(sparsity))}" if dtype is not None else ""
        raise TypeError(f"sparsity must be a float in [0, 1) (the fraction of weights removed), "
                        f"got {type(sparsity).__name__}{shape} {sparsity!r}")
    value = float(sparsity)
    if not np.isfinite(value) or not 0.0 <= value < 1.0:
        raise ValueError(
                f"sparsity must be in [0, 1) (the fraction of weights removed), got {sparsity!r}"
        )
    return value


def keep_fractions(schedule: str, keep_fraction: float, steps: int) -> np.ndarray:
    """Keep fraction after each step of a progressive schedule.

    Args:
        schedule: "exp" or "linear".
        keep_fraction: final keep fraction kappa, in (0, 1].
        steps: number of pruning steps T >= 1.

    Returns:
        float64 array of shape (T,), entry t-1 is keep_t; the last entry is
        exactly kappa.

    Raises:
        ValueError: unknown schedule, steps < 1 or kappa outside (0, 1].
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"keep fraction must be in (0, 1], got {keep_fraction!r}")
    t = np.arange(1, steps + 1, dtype=np.float64)
    if schedule == "exp":
        fractions = keep_fraction ** (t / steps)
    else:
        fractions = 1.0 - t * (1.0 - keep_fraction) / steps
    fractions[-1] = keep_fraction  # exact end point, whatever the rounding above
    return fractions


def count_kept(fractions: Any, num_prunable: Any) -> np.ndarray:
    """floor(keep * N), forgiving float noise: floor(keep * N + COUNT_SLACK * N).

    The rule for every keep count, the final one and each step's: a keep
    fraction meant as a short decimal (1 - 0.9) keeps exactly the rational
    floor((1 - s) * N), although 1 - 0.9 is 0.09999999999999998 in float64.
    Noise in the fraction below 1e-13 (COUNT_SLACK) cannot cost a weight: a
    product short of an integer by less than 1e-13 * N counts as that
    integer. Monotone in the fraction, so a non-increasing schedule keeps
    non-increasing counts. Vectorised; no check that a count is >= 1.

    Args:
        fractions: keep fractions in [0, 1], any shape.
        num_prunable: N, the total number of prunable weights (an int, or
            an integer array that broadcasts against `fractions`).

    Returns:
        int64 array of the broadcast shape, each entry in [0, N].
    """
    total = np.asarray(num_prunable, np.float64)
    product = np.asarray(fractions, np.float64) * total
    counts = np.floor(product + COUNT_SLACK * total).astype(np.int64)
    return np.minimum(counts, np.asarray(num_prunable, np.int64))


def keep_counts(fractions: np.ndarray, num_prunable: int) -> np.ndarray:
    """Number of weights kept after each step: floor(keep_t * N), as in `count_kept`.

    The last count is the final one: `keep_fractions` ends exactly at the
    target keep fraction and the same rule rounds every step.

    Args:
        fractions: keep fractions per step, from `keep_fractions`.
        num_prunable: N, the total number of prunable weights.

    Returns:
        int64 array of the same shape as `fractions`.

    Raises:
        ValueError: if some step would keep fewer than one weight.
    """
    counts = count_kept(fractions, num_prunable)
    if counts.min() < 1:
        step = int(np.argmax(counts < 1)) + 1
        raise ValueError(
                f"keep count below 1 at step {step}: keep fraction {fractions[step - 1]:.3g} of "
                f"{num_prunable} prunable weights keeps nothing; lower the sparsity"
        )
    return counts
