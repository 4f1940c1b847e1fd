"""Keep-fraction schedules for progressive pruning, as pure functions.

A schedule maps the step index t = 1..T to the fraction of prunable weights
kept after step t. Both schedules end exactly at the target keep fraction
kappa at t = T and are non-increasing, so Iterative SNIP can only remove.

        exp:    keep_t = kappa ** (t / T)
        linear: keep_t = 1 - t * (1 - kappa) / T

The keep *counts* k_t = floor(keep_t * N) are computed on the host in float64
(`keep_counts`) and fed to the compiled pruning program as data: float32
arithmetic inside the program could be off by one at N = 20 M, and passing
counts as data means one compile serves every sparsity level.
"""

from __future__ import annotations

import numpy as np

SCHEDULES = ("exp", "linear")


def check_sparsity(sparsity: float) -> float:
    """Validates a sparsity (the fraction of prunable weights removed).

    Args:
        sparsity: fraction removed; 0.995 keeps 0.5 % of the weights.

    Returns:
        The sparsity as a Python float.

    Raises:
        ValueError: if it is not a finite number in [0, 1).
    """
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


def keep_counts(fractions: np.ndarray, num_prunable: int) -> np.ndarray:
    """Number of weights kept after each step: floor(keep_t * N).

    Args:
        fractions: keep fractions per step, from `keep_fractions`.
        num_prunable: N, the total number of prunable weights.

    Returns:
        int64 array of the same shape as `fractions`.

    Raises:
        ValueError: if some step would keep fewer than one weight.
    """
    counts = np.floor(np.asarray(fractions, np.float64) * num_prunable).astype(np.int64)
    if counts.min() < 1:
        step = int(np.argmax(counts < 1)) + 1
        raise ValueError(
                f"keep count below 1 at step {step}: keep fraction {fractions[step - 1]:.3g} of "
                f"{num_prunable} prunable weights keeps nothing; lower the sparsity"
        )
    return counts
