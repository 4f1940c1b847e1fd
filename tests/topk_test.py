"""Tests for force_jax.core.topk: exact global top-k against a numpy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from force_jax.core import selection, topk

# Few distinct shape lists: each costs a compile, while k and values are free.
SMALL = [(3, 5), (17,), (4, 4, 4), (1,)]  # 97 scores, below the fast-path capacity
MID = [(3, 3, 16, 32), (40000,), (123, 7)]  # 45469 scores: real passes, tails

_topk = jax.jit(topk.topk_masks)
_with_info = jax.jit(topk._topk_masks_with_info, static_argnames="force_slow")


def numpy_key(x):
    """Independent numpy version of ordered_key (negatives: ~bits + 1, so -0 == +0)."""
    x = np.asarray(x, np.float32)
    bits = x.view(np.uint32)
    key = np.where(bits >> 31 == 1, ~bits + np.uint32(1), bits | np.uint32(0x80000000))
    return np.where(np.isnan(x), np.uint32(0), key).astype(np.uint32)


def reference_masks(scores, k):
    """Stable argsort on (-key, global index); the first k are kept."""
    flat = np.concatenate([np.asarray(s, np.float32).reshape(-1) for s in scores])
    order = np.lexsort((np.arange(flat.size), -numpy_key(flat).astype(np.int64)))
    keep = np.zeros(flat.size, bool)
    keep[order[:k]] = True
    out, start = [], 0
    for s in scores:
        out.append(keep[start : start + s.size].reshape(s.shape))
        start += s.size
    return out


def check(scores, k, force_slow=False):
    """Runs the jitted selection, asserts it equals the reference, returns info."""
    masks, info = _with_info([jnp.asarray(s) for s in scores], k, force_slow=force_slow)
    expected = reference_masks([np.asarray(jnp.asarray(s, jnp.float32)) for s in scores], k)
    for got, want in zip(masks, expected, strict=True):
        assert got.shape == want.shape and got.dtype == jnp.bool_
        np.testing.assert_array_equal(np.asarray(got), want)
    assert sum(int(np.sum(m)) for m in masks) == k
    return {name: int(value) for name, value in info.items()}


def random_scores(rng, shapes, kind):
    def draw(shape):
        if kind == "uniform":
            return rng.random(shape, dtype=np.float32)
        if kind == "normal":
            return rng.standard_normal(shape, dtype=np.float32)
        if kind == "snip":  # |w * g|: non-negative, heavy-tailed
            w, g = rng.standard_normal((2, *shape), dtype=np.float32)
            return np.abs(w * g * np.float32(1e-3))
        if kind == "rounded":  # many small groups of ties
            return np.round(rng.standard_normal(shape) * 4).astype(np.float32)
        raise ValueError(kind)

    return [draw(s) for s in shapes]


def keep_counts(total):
    fractions = (0.5, 0.01, 0.001)
    return sorted({0, 1, total - 1, total, *(int(f * total) for f in fractions)})


def test_ordered_key_matches_float_order():
    rng = np.random.default_rng(0)
    specials = np.array(
        [
            np.inf,
            -np.inf,
            0.0,
            -0.0,
            1e-45,
            -1e-45,
            1e-40,
            -3e-39,
            1.0,
            -1.0,
            np.finfo(np.float32).max,
            -np.finfo(np.float32).max,
        ],
        np.float32,
    )
    x = np.concatenate([specials, rng.standard_normal(500).astype(np.float32) * 1e3])
    key = np.asarray(topk.ordered_key(jnp.asarray(x)))
    np.testing.assert_array_equal(key, numpy_key(x))
    less = x[:, None] < x[None, :]
    np.testing.assert_array_equal(key[:, None] < key[None, :], less)
    nan = np.array([np.nan, -np.nan, np.float32(np.nan) * -1], np.float32)
    np.testing.assert_array_equal(np.asarray(topk.ordered_key(jnp.asarray(nan))), 0)
    assert int(topk.ordered_key(jnp.float32(-np.inf))) > 0
    assert int(topk.ordered_key(jnp.float32(-0.0))) == int(topk.ordered_key(jnp.float32(0.0)))


def test_pass_thresholds_agree_with_ordered_key():
    """The cheap pass key plus mapped thresholds reproduce ordered-key comparisons."""
    rng = np.random.default_rng(1)
    bits = np.concatenate(
        [
            rng.integers(0, 2**32, 4000, dtype=np.uint64).astype(np.uint32),  # NaN payloads too
            np.array(
                [
                    0,
                    0x80000000,
                    1,
                    0x80000001,
                    0x7F800000,
                    0xFF800000,
                    0x7FC00000,
                    0xFFC00000,
                    0x7F800001,
                    0xFFFFFFFF,
                    0x7FFFFFFF,
                    0x007FFFFF,
                ],
                np.uint32,
            ),
        ]
    )
    x = jnp.asarray(bits.view(np.float32))
    key, raw = np.asarray(topk.ordered_key(x)), np.asarray(topk._raw_key(x))
    top = topk._KEY_TOP
    thresholds = np.concatenate(
        [
            np.array(
                [
                    0,
                    1,
                    2,
                    0x7FFFFF,
                    0x800000,
                    0x800001,
                    0x7FFFFFFF,
                    0x80000000,
                    0x80000001,
                    top - 2,
                    top - 1,
                    top,
                ],
                np.uint32,
            ),
            np.sort(key[:300]),
            np.sort(key[:300]) + 1,
        ]
    )
    for t in thresholds:
        t = np.uint32(min(int(t), top))
        if t < top:
            lowest = int(topk._raw_at_least(jnp.uint32(t)))
            np.testing.assert_array_equal(raw >= lowest, key >= t)
        if t >= 1:
            below = int(topk._raw_below(jnp.uint32(t)))
            np.testing.assert_array_equal(raw <= below, key < t)


@pytest.mark.parametrize("kind", ["uniform", "normal", "snip", "rounded"])
def test_small_lists_match_reference(kind):
    rng = np.random.default_rng(2)
    for _ in range(3):
        scores = random_scores(rng, SMALL, kind)
        total = sum(s.size for s in scores)
        for k in keep_counts(total) + [int(rng.integers(0, total + 1))]:
            check(scores, k)
            check(scores, k, force_slow=True)


@pytest.mark.parametrize("kind", ["uniform", "normal", "snip"])
def test_continuous_scores_take_fast_path(kind):
    rng = np.random.default_rng(3)
    scores = random_scores(rng, MID, kind)
    total = sum(s.size for s in scores)
    for k in keep_counts(total):
        info = check(scores, k)
        assert info["fast"] == 1, info
        assert 1 <= info["passes"] <= 3, info
        assert info["candidates"] <= topk._capacity(total)


def test_forced_slow_path_matches_reference():
    rng = np.random.default_rng(4)
    for kind in ("snip", "rounded"):
        scores = random_scores(rng, MID, kind)
        total = sum(s.size for s in scores)
        for k in (0, 1, int(0.3 * total), total - 1, total):
            info = check(scores, k, force_slow=True)
            assert info["fast"] == 0


def test_massive_ties_at_threshold_take_tie_path():
    rng = np.random.default_rng(5)
    scores = random_scores(rng, MID, "snip")
    for s in scores:  # 70% exact zeros, as from pruned weights or dead units
        s[rng.random(s.shape) < 0.7] = 0.0
    total = sum(s.size for s in scores)
    nonzero = sum(int(np.count_nonzero(s)) for s in scores)
    for k in (nonzero + 1, nonzero + 5000, total - 3, total):
        info = check(scores, k)
        assert info["fast"] == 0 and info["slow_passes"] == 0, info
    info = check(scores, nonzero // 2)  # threshold among the continuous values
    assert info["fast"] == 1


def test_all_equal_and_straddling_ties():
    rng = np.random.default_rng(6)
    equal = [np.full(s, 0.25, np.float32) for s in MID]
    total = sum(s.size for s in equal)
    for k in (1, 7, total // 2, total - 1):
        check(equal, k)
    # Ties straddling the threshold: fewer than the fast path's capacity, then more.
    capacity = topk._capacity(total)
    for n_tied, fast in ((capacity // 2, 1), (capacity * 3, 0)):
        scores = random_scores(rng, MID, "uniform")
        flat = scores[1].reshape(-1)
        flat[rng.choice(flat.size, n_tied, replace=False)] = 0.5
        above = sum(int(np.sum(s > 0.5)) for s in scores)
        for k in (above + 1, above + n_tied // 3, above + n_tied - 1, above + n_tied):
            assert check(scores, k)["fast"] == fast
    # Few distinct values: ties everywhere.
    check(random_scores(rng, MID, "rounded"), total // 3)


def test_special_values():
    rng = np.random.default_rng(7)
    scores = random_scores(rng, MID, "normal")
    for s in scores:
        flat = s.reshape(-1)
        picks = rng.integers(0, flat.size, 40)
        flat[picks[:10]] = np.inf
        flat[picks[10:20]] = -np.inf
        flat[picks[20:25]] = np.nan
        flat[picks[25:30]] = -0.0
        flat[picks[30:35]] = 0.0
        flat[picks[35:]] = 1e-42  # subnormal: XLA:CPU compares it equal to zero
    total = sum(s.size for s in scores)
    finite = total - sum(int(np.isnan(s).sum()) for s in scores)
    for k in (1, 5, 30, total // 2, finite - 1, finite, finite + 3, total):
        check(scores, k)
        check(scores, k, force_slow=True)


def test_nan_ranks_lowest_and_ties_by_index():
    scores = [
        np.array([np.nan, 1.0, np.nan, -np.inf], np.float32),
        np.array([np.nan, -5.0] * 10, np.float32),
    ]
    for k in range(0, 25):
        check(scores, k)
    # 1, then -5 x 10, then -inf (rank 12); NaNs come last, by index.
    masks = _topk(scores, 13)
    assert bool(masks[0][3]) and bool(masks[0][0]) and not bool(masks[0][2])


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_inputs(dtype):
    rng = np.random.default_rng(8)
    scores = [jnp.asarray(s, dtype) for s in random_scores(rng, SMALL, "snip")]
    total = sum(s.size for s in scores)
    for k in keep_counts(total):
        check(scores, k)


def test_traced_k_compiles_once():
    rng = np.random.default_rng(9)
    scores = [jnp.asarray(s) for s in random_scores(rng, SMALL, "normal")]
    traces = []

    def select(scores, k):  # a fresh function: jit caches are shared per function
        traces.append(k)
        return topk.topk_masks(scores, k)

    jitted = jax.jit(select)
    for k in (0, 3, 50, 97, jnp.int32(20), jnp.int32(96)):
        masks = jitted(scores, k)
        assert sum(int(jnp.sum(m)) for m in masks) == int(k)
    assert jitted._cache_size() == 2  # Python int k (weakly typed) and int32 k
    assert len(traces) == 2


def test_plain_api_and_edge_cases():
    assert topk.topk_masks([], 0) == []
    scores = [jnp.asarray([3.0, 1.0, 2.0]), jnp.zeros((0, 4)), jnp.asarray([[2.0]])]
    masks = topk.topk_masks(scores, 3)
    np.testing.assert_array_equal(masks[0], [True, False, True])
    assert masks[1].shape == (0, 4)
    np.testing.assert_array_equal(masks[2], [[True]])
    # k is clipped into [0, total].
    assert sum(int(jnp.sum(m)) for m in topk.topk_masks(scores, 99)) == 4


def test_sharded_scores():
    """Scores sharded over a device mesh (tests/conftest.py fakes 8 CPU devices)."""
    devices = jax.devices()
    if len(devices) < 2:
        pytest.skip("needs several devices, e.g. --xla_force_host_platform_device_count=8")
    devices = devices[: 8 if len(devices) >= 8 else 2]
    mesh = Mesh(np.array(devices), ("d",))
    rng = np.random.default_rng(10)
    host = [np.abs(rng.standard_normal(s)).astype(np.float32) for s in [(64, 300), (32, 50)]]
    host[0][:, :100] = 0.0  # a tie block spread over every shard
    scores = [jax.device_put(h, NamedSharding(mesh, P("d"))) for h in host]
    total = sum(h.size for h in host)
    for k in (0, 1, 5000, total - 1000, total):
        masks = _topk(scores, k)
        for got, want in zip(masks, reference_masks(host, k), strict=True):
            np.testing.assert_array_equal(np.asarray(got), want)


# The selection seam: the sort-based reference the accelerators run keeps the same set.
_sorted = jax.jit(selection.sorted_masks)


@pytest.mark.parametrize("kind", ["normal", "snip", "rounded"])
def test_the_sorted_reference_keeps_what_the_kernel_and_numpy_keep(kind):
    rng = np.random.default_rng(7)
    scores = random_scores(rng, MID, kind)
    for k in keep_counts(sum(int(np.prod(s)) for s in MID)):
        got = _sorted([jnp.asarray(s) for s in scores], k)
        kernel = _topk([jnp.asarray(s) for s in scores], k)
        for a, b, want in zip(got, kernel, reference_masks(scores, k), strict=True):
            np.testing.assert_array_equal(np.asarray(a), want)
            np.testing.assert_array_equal(np.asarray(b), want)


def test_the_sorted_reference_orders_specials_and_ties_as_the_kernel():
    scores = [np.array([np.nan, -np.inf, -0.0, 0.0, 1.0, 1.0], np.float32),
              np.array([[np.inf, 0.0], [1.0, np.nan]], np.float32)]
    for k in range(11):
        got = _sorted([jnp.asarray(s) for s in scores], k)
        for a, want in zip(got, reference_masks(scores, k), strict=True):
            np.testing.assert_array_equal(np.asarray(a), want)


def test_the_seam_runs_the_kernel_on_cpu_and_the_sort_elsewhere():
    assert selection.for_backend("cpu") is topk.topk_masks
    assert selection.for_backend("gpu") is selection.sorted_masks
    assert selection.for_backend("tpu") is selection.sorted_masks
    assert jax.default_backend() != "cpu" or selection.top_k_masks(
        [jnp.arange(5.0)], 2)[0].tolist() == [False, False, False, True, True]
