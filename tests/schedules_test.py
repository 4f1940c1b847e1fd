import jax.numpy as jnp
import numpy as np
import pytest

from force_jax.core import schedules


def test_exp_matches_hand_values():
    np.testing.assert_allclose(schedules.keep_fractions("exp", 0.01, 2), [0.1, 0.01])
    np.testing.assert_allclose(
        schedules.keep_fractions("exp", 0.001, 3), [0.1, 0.01, 0.001], rtol=1e-12
    )


def test_linear_matches_hand_values():
    np.testing.assert_allclose(schedules.keep_fractions("linear", 0.2, 4), [0.8, 0.6, 0.4, 0.2])


@pytest.mark.parametrize("schedule", ["exp", "linear"])
@pytest.mark.parametrize("keep", [0.5, 0.01, 0.005, 0.001])
@pytest.mark.parametrize("steps", [1, 7, 60, 100])
def test_monotone_and_ends_exactly_at_target(schedule, keep, steps):
    fractions = schedules.keep_fractions(schedule, keep, steps)
    assert fractions.shape == (steps,)
    assert fractions[-1] == keep
    assert np.all(np.diff(fractions) <= 0)
    assert fractions[0] <= 1.0
    counts = schedules.keep_counts(fractions, 20_024_000)
    assert counts[-1] == int(np.floor(keep * 20_024_000))
    assert np.all(np.diff(counts) <= 0)


def test_keep_count_floor_is_exact_in_float64():
    # 0.995 sparsity of VGG19: 0.005 in float32 is 0.00499999989, which would floor to 100119.
    counts = schedules.keep_counts(np.array([1 - 0.995]), 20_024_000)
    assert counts[0] == 100_120


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_bad_sparsity(bad):
    with pytest.raises(ValueError, match="sparsity"):
        schedules.check_sparsity(bad)


def test_bad_schedule_and_steps():
    with pytest.raises(ValueError, match="unknown schedule"):
        schedules.keep_fractions("cosine", 0.1, 10)
    with pytest.raises(ValueError, match="steps"):
        schedules.keep_fractions("exp", 0.1, 0)


def test_keep_count_below_one():
    with pytest.raises(ValueError, match="keep count below 1 at step 3"):
        schedules.keep_counts(schedules.keep_fractions("exp", 1e-4, 3), 1000)


@pytest.mark.parametrize("bad, shown", [
    ("0.9", "str '0.9'"),
    (np.array([0.9]), r"ndarray of shape \(1,\)"),
    ([0.9], r"list \[0.9\]"),
    (None, "NoneType None"),
    (True, "bool True"),
])
def test_sparsity_that_is_not_a_number_is_a_type_error(bad, shown):
    with pytest.raises(TypeError, match=r"sparsity must be a float in \[0, 1\).*got " + shown):
        schedules.check_sparsity(bad)


@pytest.mark.parametrize("good", [0.9, 0, np.float32(0.5), np.int64(0), np.array(0.9),
                                  jnp.array(0.25)])
def test_sparsity_numbers_and_0d_arrays_are_accepted(good):
    value = schedules.check_sparsity(good)
    assert type(value) is float and value == float(good)
