"""Masks that change during training: the rules' hand cases and the optimizer around them."""

from __future__ import annotations

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import init_mlp, mlp_loss

import force_jax as fj
from force_jax.optim import mask_changes


def _tree(w, mask):
    return ({"b": jnp.zeros(2), "w": jnp.asarray(w, jnp.float32)},
            {"b": jnp.ones((), bool), "w": jnp.asarray(mask, bool)})


# --- gradual magnitude pruning ------------------------------------------------------------


def test_the_polynomial_schedule_keeps_floor_of_each_step_s_density():
    mask = {"w": jnp.ones((10, 10), bool), "b": jnp.ones((), bool)}
    rule = mask_changes.gradual_magnitude(mask, sparsity=0.9, start=0, end=40, every=10)
    assert rule.period.steps() == (0, 10, 20, 30, 40)
    expected = []
    for t in (0, 10, 20, 30, 40):  # s_t = s_f + (s_i - s_f)(1 - t / 40)^3, with s_i = 0
        s = Fraction(9, 10) * (1 - (1 - Fraction(t, 40)) ** 3)
        expected.append(int((1 - s) * 100))  # floor: every level here is positive
    assert rule.keep == tuple(expected) == (100, 47, 21, 11, 10)


def test_from_a_pruned_mask_the_schedule_starts_at_its_sparsity():
    mask = {"w": jnp.arange(100).reshape(10, 10) < 50}
    rule = mask_changes.gradual_magnitude(mask, sparsity=0.9, start=10, end=20, every=10)
    assert rule.keep == (50, 10)


def test_a_gradual_step_keeps_the_largest_magnitudes_among_those_kept_ties_to_lower_index():
    params, mask = _tree([[3.0, -1.0, 2.0], [0.5, -2.0, 9.0]], [[1, 1, 1], [1, 1, 0]])
    rule = mask_changes.gradual_magnitude(mask, sparsity=0.5, start=0, end=0, every=1)
    new = rule.new_mask(mask, params, None, jnp.int32(0), None)
    # keep 3 of 6: |3| and then the tie |2|, |-2| goes to the lower index; 9 is pruned already
    np.testing.assert_array_equal(new["w"], [[1, 0, 1], [0, 1, 0]])
    assert new["b"].shape == () and bool(new["b"])


def test_layerwise_gradual_pruning_gives_every_layer_the_same_sparsity():
    mask = {"a": jnp.ones((10, 10), bool), "b": jnp.ones((20, 10), bool)}
    rule = mask_changes.gradual_magnitude(mask, sparsity=0.8, start=0, end=10, every=5,
                                          scope="layerwise")
    assert rule.keep[-1] == (20, 40)


@pytest.mark.parametrize("kwargs, match", [
    ({"every": 0}, "every=0"),
    ({"start": 5}, "multiples of every"),
    ({"end": -10}, "start <= end"),
    ({"sparsity": 1.5}, "sparsity"),
    ({"scope": "per_layer"}, "scope='per_layer'"),
])
def test_a_bad_gradual_schedule_is_refused_naming_the_argument(kwargs, match):
    mask = {"w": jnp.ones((4, 4), bool)}
    settings = {"sparsity": 0.5, "start": 0, "end": 10, "every": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        mask_changes.gradual_magnitude(mask, **settings)


# --- SET and RigL ---------------------------------------------------------------------------


def test_rigl_drops_the_smallest_kept_and_grows_the_largest_gradients_ties_to_lower_index():
    params, mask = _tree([[5.0, 1.0, 0.0], [0.0, 4.0, 2.0]], [[1, 1, 0], [0, 1, 1]])
    grads = {"b": jnp.zeros(2), "w": jnp.asarray([[0.0, 0.1, 0.3], [0.3, 0.0, 0.3]])}
    rule = mask_changes.drop_and_grow(grow="gradient", drop_fraction=0.5, end=100, every=10)
    assert float(rule.fraction(jnp.int32(0))) == pytest.approx(0.5)
    new = rule.new_mask(mask, params, grads, jnp.int32(0), jax.random.key(0))
    # 4 kept, floor(4 x 0.5) = 2 dropped: |1| and |2|; grown: the two first of three 0.3s
    np.testing.assert_array_equal(new["w"], [[1, 0, 1], [1, 1, 0]])


def test_a_just_dropped_weight_may_be_regrown():
    params, mask = _tree([[5.0, 1.0, 0.0], [0.0, 4.0, 2.0]], [[1, 1, 0], [0, 1, 1]])
    grads = {"b": jnp.zeros(2), "w": jnp.asarray([[0.0, 9.0, 0.3], [0.1, 0.0, 0.0]])}
    rule = mask_changes.drop_and_grow(grow="gradient", drop_fraction=0.5, end=100, every=10)
    new = rule.new_mask(mask, params, grads, jnp.int32(0), jax.random.key(0))
    np.testing.assert_array_equal(new["w"], [[1, 1, 1], [0, 1, 0]])


def test_the_drop_fraction_decays_along_a_cosine_to_zero_at_end():
    rule = mask_changes.drop_and_grow(grow="random", drop_fraction=0.3, end=1000, every=100)
    for t in (0, 250, 500, 1000, 1500):
        expected = 0.15 * (1 + np.cos(np.pi * min(t, 1000) / 1000))
        assert float(rule.fraction(jnp.int32(t))) == pytest.approx(expected, abs=1e-6)


def test_set_grows_at_random_and_keeps_each_layer_s_count():
    key = jax.random.key(3)
    params = init_mlp(key)
    mask = fj.prune(None, params, method="random", sparsity=0.8, key=key)[0]
    params = fj.apply_mask(params, mask)
    rule = mask_changes.drop_and_grow(grow="random", drop_fraction=0.3, end=100, every=10)
    new = rule.new_mask(mask, params, params, jnp.int32(0), jax.random.key(1))
    for name in ("w1", "w2"):
        assert int(new[name].sum()) == int(mask[name].sum())
        assert int((new[name] != mask[name]).sum()) > 0


@pytest.mark.parametrize("kwargs, match", [
    ({"grow": "momentum"}, "grow='momentum'"),
    ({"drop_fraction": 1.0}, "drop_fraction=1.0"),
    ({"drop_fraction": 0.0}, "drop_fraction=0.0"),
    ({"every": -1}, "every=-1"),
    ({"start": 50, "end": 10}, "start <= end"),
])
def test_a_bad_rewiring_rule_is_refused_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mask_changes.drop_and_grow(**{"grow": "gradient", "end": 100, **kwargs})


# --- the optimizer ----------------------------------------------------------------------------


def _batches(key, steps):
    images = jax.random.normal(key, (steps, 16, 8, 8))
    labels = jax.random.randint(key, (steps, 16), 0, 10)
    return [{"image": images[i], "label": labels[i]} for i in range(steps)]


def _train(tx, params, batches, state=None):
    """Runs the jitted masked steps; returns params, state and the masks after each step."""
    state = tx.init(params) if state is None else state

    @jax.jit
    def step(params, state, batch):
        grads = jax.grad(mlp_loss)(params, batch)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    seen = []
    for batch in batches:
        params, state = step(params, state, batch)
        seen.append((params, fj.optim.mask_from_state(state)))
    return params, state, seen


def _start(sparsity=0.8):
    key = jax.random.key(0)
    params = init_mlp(key)
    mask = fj.prune(None, params, method="random", sparsity=sparsity, key=key)[0]
    return fj.apply_mask(params, mask), mask


@pytest.mark.parametrize("inner", [optax.sgd(0.05, momentum=0.9), optax.adamw(1e-2)],
                         ids=["sgd", "adamw"])
def test_rigl_keeps_counts_exact_pruned_weights_zero_and_grown_weights_start_at_zero(inner):
    params, mask = _start()
    rule = mask_changes.drop_and_grow(grow="gradient", drop_fraction=0.3, end=8, every=3)
    tx = fj.optim.changing_masked_updates(inner, mask, rule)
    _, state, seen = _train(tx, params, _batches(jax.random.key(1), 8))
    previous = mask
    for step, (p, m) in enumerate(seen):
        for name in ("w1", "w2"):
            assert int(m[name].sum()) == int(mask[name].sum())
            assert not np.any(np.asarray(p[name])[~np.asarray(m[name])])  # pruned: exactly 0
            grown = np.asarray(m[name]) & ~np.asarray(previous[name])
            if step in (0, 3, 6):  # an update step makes no gradient step: grown ones are 0
                assert np.all(np.asarray(p[name])[grown] == 0)
            else:
                assert not grown.any()
        previous = m
    assert bool((seen[3][1]["w1"] != seen[2][1]["w1"]).any())  # step 3 rewired
    assert int(state.count) == 8


def test_the_momentum_of_a_changed_weight_is_reset():
    params, mask = _start()
    rule = mask_changes.drop_and_grow(grow="gradient", drop_fraction=0.3, end=8, every=4)
    tx = fj.optim.changing_masked_updates(optax.sgd(0.05, momentum=0.9), mask, rule)
    batches = _batches(jax.random.key(1), 5)
    params, before, _ = _train(tx, params, batches[:4])
    _, after, _ = _train(tx, params, batches[4:], before)  # step 4 rewires
    old, new = np.asarray(before.inner_state[0].trace["w1"]), np.asarray(
        after.inner_state[0].trace["w1"])
    changed = np.asarray(after.mask["w1"]) != np.asarray(before.mask["w1"])
    assert changed.any() and np.any(old[changed] != 0)
    assert np.all(new[changed] == 0)
    np.testing.assert_array_equal(new[~changed], old[~changed])  # no gradient step there


def test_gradual_pruning_follows_its_schedule_and_prunes_for_good():
    key = jax.random.key(0)
    params = init_mlp(key)
    mask = fj.init_mask(params)
    rule = mask_changes.gradual_magnitude(mask, sparsity=0.9, start=2, end=6, every=2)
    tx = fj.optim.changing_masked_updates(optax.sgd(0.05, momentum=0.9), mask, rule)
    _, _, seen = _train(tx, params, _batches(jax.random.key(1), 8))
    kept = [int(fj.num_kept(m)) for _, m in seen]
    n = fj.masks.num_prunable(mask)
    schedule = dict(zip(rule.period.steps(), rule.keep))
    assert kept == [n, n, schedule[2], schedule[2], schedule[4], schedule[4], schedule[6],
                    schedule[6]]
    assert schedule[6] == int(0.1 * n)
    for (p, m), (_, m_next) in zip(seen, seen[1:]):
        for name in ("w1", "w2"):
            assert not np.any(np.asarray(m_next[name]) & ~np.asarray(m[name]))  # never regrown
            assert not np.any(np.asarray(p[name])[~np.asarray(m[name])])


@pytest.mark.slow
def test_a_resumed_state_continues_bit_for_bit_across_an_update():
    params, mask = _start()
    rule = mask_changes.drop_and_grow(grow="random", drop_fraction=0.3, end=10, every=3)
    tx = fj.optim.changing_masked_updates(optax.adamw(1e-2), mask, rule,
                                          key=jax.random.key(7))
    batches = _batches(jax.random.key(1), 7)
    straight, straight_state, _ = _train(tx, params, batches)
    for cut in (2, 3):  # just before and just after the update of step 3
        half, state, _ = _train(tx, params, batches[:cut])
        # What a checkpoint holds: host arrays, read back.
        half, state = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), (half, state))
        resumed, resumed_state, _ = _train(tx, half, batches[cut:], state)
        jax.tree.map(np.testing.assert_array_equal, resumed, straight)
        jax.tree.map(np.testing.assert_array_equal, resumed_state, straight_state)


def test_the_step_compiles_once_across_updates():
    params, mask = _start()
    rule = mask_changes.drop_and_grow(grow="gradient", drop_fraction=0.3, end=10, every=2)
    tx = fj.optim.changing_masked_updates(optax.sgd(0.05), mask, rule)

    @jax.jit
    def step(params, state, batch):
        grads = jax.grad(mlp_loss)(params, batch)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    for batch in _batches(jax.random.key(1), 5):
        params, state = step(params, state, batch)
    assert step._cache_size() == 1


def test_the_optimizer_needs_the_params():
    params, mask = _start()
    rule = mask_changes.drop_and_grow(grow="gradient", end=10, every=2)
    tx = fj.optim.changing_masked_updates(optax.sgd(0.1), mask, rule)
    with pytest.raises(ValueError, match="needs the params"):
        tx.update(params, tx.init(params))
