"""The composable core (force_jax.core.program): under the user's jit and vmap, equal to prune().

Seeds, sparsities and user-jitted programs on LeNet-5 against separate prune() calls with
exact masks; the pure pieces with and without jit (chex variants); the inverted method
as a record transform; and what reads data.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import init_mlp, mlp_loss

import force_jax as fj
from force_jax import models
from force_jax.core import methods, program, sanity, step_stats

STEPS, BATCH = 4, 32


@pytest.fixture(scope="module")
def lenet():
    """LeNet-5 on a pool of 128 random 28x28 images, and its loss."""
    model = models.get_model("lenet5", 10)
    kx, ky = jax.random.split(jax.random.key(7))
    pool = {"image": jax.random.normal(kx, (128, 28, 28, 1)),
            "label": jax.random.randint(ky, (128,), 0, 10)}
    init = jax.jit(lambda k: model.init(k, pool["image"][:1])["params"])
    loss_fn = fj.classification_loss(model, {"params": init(jax.random.key(0))})
    return loss_fn, init, pool


def _assert_same_masks(got, want):
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_vmapping_the_schedule_over_4_seeds_equals_4_separate_runs(lenet):
    loss_fn, init, pool = lenet
    seeds = jnp.arange(4)
    params = jax.vmap(lambda s: init(jax.random.key(s)))(seeds)
    keys = jax.vmap(lambda s: jax.random.key(100 + s))(seeds)
    first = jax.tree.map(lambda x: x[0], params)
    counts = program.schedule_counts(first, sparsity=0.98, steps=STEPS)
    pruner = program.Pruner("force", loss_fn, batch_size=BATCH)
    many = jax.jit(jax.vmap(program.schedule, in_axes=(None, 0, None, None, 0, None)),
                   static_argnums=0)
    masks, trace = many(pruner, params, pool, counts, keys, fj.init_mask(first))
    for seed in range(4):
        one = jax.tree.map(lambda x: x[seed], params)  # noqa: B023
        mask, history = fj.prune(loss_fn, one, pool, method="force", sparsity=0.98,
                                 steps=STEPS, batch_size=BATCH, key=keys[seed])
        _assert_same_masks(jax.tree.map(lambda x: x[seed], masks), mask)  # noqa: B023
        np.testing.assert_array_equal(np.asarray(trace.layer_kept[seed]), history.layer_kept)
        np.testing.assert_allclose(np.asarray(trace.objective[seed]), history.objective,
                                   rtol=1e-5)


def test_vmapping_over_3_sparsities_equals_3_runs_with_one_compile(lenet):
    loss_fn, init, pool = lenet
    params = init(jax.random.key(1))
    sparsities = (0.9, 0.98, 0.995)
    counts = np.stack([program.schedule_counts(params, sparsity=s, steps=STEPS)
                       for s in sparsities])
    pruner = program.Pruner("iter_snip", loss_fn, batch_size=BATCH)
    jitted = jax.jit(jax.vmap(program.schedule, in_axes=(None, None, None, 0, None, None)),
                     static_argnums=0)
    masks, _ = jitted(pruner, params, pool, counts, jax.random.key(3), fj.init_mask(params))
    for index, sparsity in enumerate(sparsities):
        mask, _ = fj.prune(loss_fn, params, pool, method="iter_snip", sparsity=sparsity,
                           steps=STEPS, batch_size=BATCH, key=jax.random.key(3))
        _assert_same_masks(jax.tree.map(lambda x: x[index], masks), mask)  # noqa: B023
        assert int(fj.num_kept(mask)) == counts[index, -1]
    # The counts are data: other sparsities reuse the compiled program.
    jitted(pruner, params, pool, counts[::-1].copy(), jax.random.key(3), fj.init_mask(params))
    assert jitted._cache_size() == 1


@pytest.mark.slow  # this module's vmapped schedules run under jit too
def test_the_schedule_runs_inside_a_users_jitted_function(lenet):
    loss_fn, init, pool = lenet
    pruner = program.Pruner("force", loss_fn, batch_size=BATCH)

    @jax.jit
    def experiment(seed):  # init, prune and measure, all in one program of the user's
        params = init(jax.random.key(seed))
        counts = jnp.asarray(program.schedule_counts(
            jax.eval_shape(init, jax.random.key(0)), sparsity=0.98, steps=STEPS))
        mask, trace = program.schedule(pruner, params, pool, counts, jax.random.key(seed),
                                       fj.init_mask(params))
        return mask, trace.objective[-1]

    mask, objective = experiment(2)
    want, history = fj.prune(loss_fn, init(jax.random.key(2)), pool, method="force",
                             sparsity=0.98, steps=STEPS, batch_size=BATCH, key=jax.random.key(2))
    _assert_same_masks(mask, want)
    np.testing.assert_allclose(float(objective), history.objective[-1], rtol=1e-5)


@pytest.fixture(scope="module")
def tiny_mlp():
    params = init_mlp(jax.random.key(0))
    kx, ky = jax.random.split(jax.random.key(1))
    pool = {"image": jax.random.normal(kx, (96, 64)), "label": jax.random.randint(ky, (96,), 0, 10)}
    return params, pool


class PureCoreTest(chex.TestCase):
    """The pure pieces give the same arrays with and without jit."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_draw_batches_takes_distinct_examples_of_the_pool(self):
        pool = {"x": jnp.arange(60.0)}
        pruner = program.Pruner("force", mlp_loss, batch_size=8, batches_per_step=3)
        draw = self.variant(lambda p, s: program.draw_batches(pruner, p, s))
        batches = draw(pool, program.init_state({}, jax.random.key(0)))
        chex.assert_shape(batches["x"], (3, 8))
        assert len(set(np.asarray(batches["x"]).ravel().tolist())) == 24
        other = draw(pool, program.init_state({}, jax.random.key(1)))
        assert not np.array_equal(batches["x"], other["x"])

    @chex.variants(with_jit=True, without_jit=True)
    def test_a_step_keeps_count_weights_and_reports_the_start_masks_objective(self):
        params = init_mlp(jax.random.key(0))
        kx, ky = jax.random.split(jax.random.key(1))
        batch = {"image": jax.random.normal(kx, (1, 32, 64)),
                 "label": jax.random.randint(ky, (1, 32), 0, 10)}
        pruner = program.Pruner("force", mlp_loss, batch_size=32)
        step = self.variant(lambda s, b, c: program.step(pruner, params, s, b, c))
        state = program.init_state(fj.init_mask(params), jax.random.key(2))
        new_state, out = step(state, batch, 500)
        assert int(fj.num_kept(new_state.mask)) == 500
        assert int(out.revived) == 0 and bool(out.finite)
        np.testing.assert_array_equal(np.asarray(out.layer_kept),
                                      [int(new_state.mask["w1"].sum()),
                                       int(new_state.mask["w2"].sum())])
        # S(dense) by hand: sum of |theta0 * g(theta0)| over the prunable leaves.
        one = jax.tree.map(lambda x: x[0], batch)
        grads = jax.grad(mlp_loss)(params, one)
        by_hand = sum(float(jnp.abs(params[n] * grads[n]).sum()) for n in ("w1", "w2"))
        np.testing.assert_allclose(float(out.objective), by_hand, rtol=1e-5)
        # The key chain moves on; the mask is the top 500 of |theta0 * g|.
        assert not np.array_equal(jax.random.key_data(new_state.key),
                                  jax.random.key_data(state.key))
        sal = np.concatenate([np.abs(np.asarray(params[n] * grads[n])).ravel()
                              for n in ("w1", "w2")])
        kept = np.concatenate([np.asarray(new_state.mask[n]).ravel() for n in ("w1", "w2")])
        assert sal[kept].min() >= sal[~kept].max()

    @chex.variants(with_jit=True, without_jit=True)
    def test_objective_is_nan_without_data_or_tracking(self):
        params = init_mlp(jax.random.key(0))
        state = program.init_state(fj.init_mask(params), jax.random.key(0))
        untracked = program.Pruner("force", mlp_loss, batch_size=4, track_objective=False)
        batch = {"image": jnp.ones((1, 4, 64)), "label": jnp.zeros((1, 4), jnp.int32)}
        measure = self.variant(lambda b: program.objective(untracked, params, state, b))
        assert np.isnan(float(measure(batch)))
        assert np.isnan(float(program.objective(
            program.Pruner("magnitude"), params, state, None)))

    @chex.variants(with_jit=True, without_jit=True)
    def test_the_schedule_is_its_steps_with_the_objective_moved_one_step_earlier(self):
        params = init_mlp(jax.random.key(0))
        kx, ky = jax.random.split(jax.random.key(1))
        pool = {"image": jax.random.normal(kx, (96, 64)),
                "label": jax.random.randint(ky, (96,), 0, 10)}
        pruner = program.Pruner("iter_snip", mlp_loss, batch_size=32)
        counts = jnp.array([1500, 800, 400], jnp.int32)
        run = self.variant(lambda p, c, k: program.schedule(pruner, p, pool, c, k,
                                                            fj.init_mask(p)))
        mask, out = run(params, counts, jax.random.key(2))
        chex.assert_shape([out.objective, out.finite, out.revived], (3,))
        chex.assert_shape(out.layer_kept, (3, 2))
        np.testing.assert_array_equal(np.asarray(out.layer_kept).sum(axis=1), counts)
        assert int(fj.num_kept(mask)) == 400 and np.asarray(out.finite).all()
        assert not np.asarray(out.revived).any()  # Iterative SNIP never brings a weight back
        # The same steps one by one: each reports S of the mask it started from.
        state = program.init_state(fj.init_mask(params), jax.random.key(2))
        started_from = []
        for count in counts:
            state, step_out = program.step(pruner, params, state,
                                           program.draw_batches(pruner, pool, state), count)
            started_from.append(float(step_out.objective))
        final = program.objective(pruner, params, state,
                                  program.draw_batches(pruner, pool, state))
        np.testing.assert_allclose(np.asarray(out.objective),
                                   [*started_from[1:], float(final)], rtol=1e-4)
        _assert_same_masks(mask, state.mask)


def test_pruners_compare_by_value_so_equal_ones_share_a_compile():
    assert program.Pruner("force", mlp_loss) == program.Pruner(methods.get("force"), mlp_loss)
    assert hash(program.Pruner("force", mlp_loss)) == hash(program.Pruner("force", mlp_loss))
    assert program.Pruner("force", mlp_loss) != program.Pruner("iter_snip", mlp_loss)
    assert sanity.inverted("force") == sanity.inverted(methods.get("force"))
    with pytest.raises(ValueError, match="unknown method 'forse'"):
        program.Pruner("forse", mlp_loss)
    with pytest.raises(ValueError, match="'force' scores with data: give Pruner a loss_fn"):
        program.Pruner("force")
    with pytest.raises(ValueError, match="'synflow' needs synflow_fn"):
        program.Pruner("synflow")
    with pytest.raises(ValueError, match="batch_size and batches_per_step must be >= 1"):
        program.Pruner("force", mlp_loss, batch_size=0)
    params = init_mlp(jax.random.key(0))
    with pytest.raises(ValueError, match="'force' reads data: give schedule a pool"):
        program.schedule(program.Pruner("force", mlp_loss), params, None, np.array([9]),
                         jax.random.key(0), fj.init_mask(params))


def test_inverted_is_a_record_that_keeps_the_lowest_scores(tiny_mlp):
    params, pool = tiny_mlp
    record = sanity.inverted("snip")
    assert record.name == "snip:inverted" and record.reads_data() and not record.progressive
    mask, _ = fj.prune(mlp_loss, params, pool, method=record, sparsity=0.9, batch_size=96,
                       key=jax.random.key(0))
    batch = jax.tree.map(lambda x: x[jax.random.permutation(
        jax.random.split(jax.random.split(jax.random.key(0))[1])[0], 96)], pool)
    grads = jax.grad(mlp_loss)(params, batch)
    sal = np.concatenate([np.abs(np.asarray(params[n] * grads[n])).ravel() for n in ("w1", "w2")])
    kept = np.concatenate([np.asarray(mask[n]).ravel() for n in ("w1", "w2")])
    assert kept.sum() == int(0.1 * sal.size)
    assert sal[kept].max() <= sal[~kept].min()  # the lowest scores, not the highest


@pytest.mark.parametrize(("name", "tracked", "untracked"), [
    ("force", True, True), ("snip", True, True), ("grasp", True, True),
    ("synflow", True, False), ("magnitude", True, False), ("random", True, False)])
def test_reads_data_is_one_property_of_the_record(name, tracked, untracked):
    record = methods.get(name)
    assert record.reads_data() is tracked and record.reads_data(True) is tracked
    assert record.reads_data(False) is untracked
    assert sanity.inverted(name).reads_data(False) is untracked
    # S(m) costs one more gradient exactly where a tracked objective is what reads data.
    assert record.extra_gradient(True) is (tracked and not record.needs_data)
    assert record.extra_gradient(False) is False


@pytest.mark.parametrize("shape", [(0,), (1,), (15,), (16,), (17,), (3, 3, 7, 5), (1000, 33)])
def test_count_true_counts_exactly_by_blocks(shape):
    x = np.random.default_rng(sum(shape)).random(shape) < 0.3
    assert int(jax.jit(fj.masks.count_true)(x)) == int(x.sum())
    assert int(fj.masks.count_true(np.ones(shape, bool))) == int(np.prod(shape))


@pytest.mark.parametrize(("scores", "mask", "finite"), [
    ([1.0, 0.0, -2.0], [True, False, True], True),
    ([1.0, -np.inf, 3.0], [True, False, True], True),  # a weight never let back
    ([1.0, -np.inf, 3.0], [True, True, True], False),  # -inf on a kept weight
    ([1.0, np.nan, 3.0], [True, False, True], False),  # NaN, kept or not
    ([1.0, np.inf, 3.0], [True, False, True], False),
    ([np.finfo(np.float32).max] * 3, [True] * 3, True),  # a floor's scores: no overflow
])
def test_the_finite_check_allows_minus_inf_on_pruned_weights_only(scores, mask, finite):
    tree = {"w": jnp.array([scores], jnp.float32), "b": jnp.array([np.nan])}
    masks_tree = {"w": jnp.array([mask]), "b": jnp.array(True)}  # b is not prunable
    assert bool(jax.jit(step_stats.all_finite)(tree, masks_tree)) is finite
