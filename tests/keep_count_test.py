"""Keep counts: floor((1 - s) * N) exactly, for decimal sparsities, despite float noise."""

from __future__ import annotations

from fractions import Fraction

import jax
import numpy as np
import pytest

import force_jax as fj
from force_jax.core import schedules

# Every sparsity with up to 4 decimals, as the decimal strings a user types.
DECIMALS = [f"0.{i:04d}" for i in range(10_000)]
SPECIAL_N = [430_500, 577_424, 9_221_696, 10**8]


def exact_keep(decimals: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(numerator, denominator) of 1 - s, exactly, from each decimal string."""
    keep = [1 - Fraction(d) for d in decimals]
    return (np.array([k.numerator for k in keep], np.int64),
            np.array([k.denominator for k in keep], np.int64))


def check_counts(n: np.ndarray, decimals: list[str]) -> None:
    """count_kept(1 - float(s), N) == floor((1 - s) * N) for every pair, vectorised."""
    numerator, denominator = exact_keep(decimals)
    keep = 1.0 - np.array([float(d) for d in decimals])  # what prune computes
    n = np.asarray(n, np.int64)[:, None]
    expected = (numerator[None, :] * n) // denominator[None, :]  # int64: < 1e4 * 1e8
    got = schedules.count_kept(keep[None, :], n)
    wrong = np.argwhere(got != expected)
    assert wrong.size == 0, [(int(n[i, 0]), decimals[j], int(got[i, j]), int(expected[i, j]))
                             for i, j in wrong[:5]]


def test_lenet5_keeps_ten_percent_at_sparsity_0_9():
    assert 0.9 == float("0.9") and 1 - 0.9 < 0.1  # the float noise this is about
    assert schedules.count_kept(1 - 0.9, 430_500) == 43_050
    for schedule in schedules.SCHEDULES:
        counts = schedules.keep_counts(schedules.keep_fractions(schedule, 1 - 0.9, 60), 430_500)
        assert counts[-1] == 43_050


def test_every_4_decimal_sparsity_for_every_n_up_to_2000():
    for start in range(1, 2001, 500):
        check_counts(np.arange(start, start + 500), DECIMALS)


def test_every_4_decimal_sparsity_for_large_and_random_n_up_to_1e8():
    rng = np.random.default_rng(0)
    check_counts(np.concatenate([SPECIAL_N, rng.integers(2001, 10**8 + 1, 200)]), DECIMALS)
    # Many more N, on a sample of the sparsities.
    sample = [DECIMALS[i] for i in rng.choice(10_000, 100, replace=False)] + ["0.9", "0.99"]
    check_counts(rng.integers(1, 10**8 + 1, 5000), sample)


@pytest.mark.parametrize("schedule", schedules.SCHEDULES)
@pytest.mark.parametrize("steps", [1, 7, 60])
def test_schedule_ends_at_the_final_count_and_never_rises(schedule, steps):
    for n in SPECIAL_N:
        for decimal in ["0.9", "0.98", "0.995", "0.9999", "0.3"]:
            counts = schedules.keep_counts(
                schedules.keep_fractions(schedule, 1.0 - float(decimal), steps), n)
            assert counts[-1] == int((1 - Fraction(decimal)) * n)
            assert np.all(np.diff(counts) <= 0) and counts[0] <= n


def test_prune_keeps_the_exact_count():
    # 0.1 of 430 is 43, but 0.09999999999999998 * 430 floors to 42.
    params = {"w": jax.random.normal(jax.random.key(0), (10, 43)), "b": np.zeros(43)}
    mask, history = fj.prune(None, params, method="magnitude", sparsity=0.9,
                             key=jax.random.key(1))
    assert int(fj.num_kept(mask)) == history.kept[-1] == 43
