"""Stream mode of prune(): fresh batches from an iterator at every step, one compile."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import force_jax as fj
from force_jax.core import compile_options, program, sharding


def pool_draws(data, key, *, batch_size, batches_per_step, steps):
    """The micro-batches the pooled schedule draws, in order (its key chain replayed)."""
    n = jax.tree.leaves(data)[0].shape[0]
    for _ in range(steps + 1):
        key, this = jax.random.split(key)
        batch_key, _ = jax.random.split(this)
        order = jax.random.permutation(batch_key, n)[: batch_size * batches_per_step]
        for indices in np.asarray(order).reshape(batches_per_step, batch_size):
            yield jax.tree.map(lambda x, i=indices: x[i], data)


@pytest.mark.parametrize("method", ["force", *(pytest.param(m, marks=pytest.mark.slow)
                                              for m in ("iter_snip", "snip", "grasp_it"))])
def test_a_stream_of_the_pools_draws_gives_the_pooled_mask(tiny, method):
    loss_fn, params, data = tiny
    steps = 1 if method == "snip" else 4
    kwargs = dict(method=method, sparsity=0.9, steps=steps, batch_size=32, batches_per_step=2,
                  key=jax.random.key(3))
    pooled, pooled_history = fj.prune(loss_fn, params, data, **kwargs)
    stream = pool_draws(data, jax.random.key(3), batch_size=32, batches_per_step=2, steps=steps)
    streamed, history = fj.prune(loss_fn, params, stream, **kwargs)
    for got, want in zip(jax.tree.leaves(streamed), jax.tree.leaves(pooled)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(history.kept, pooled_history.kept)
    np.testing.assert_array_equal(history.revived, pooled_history.revived)
    np.testing.assert_array_equal(history.layer_kept, pooled_history.layer_kept)
    np.testing.assert_allclose(history.objective, pooled_history.objective, rtol=1e-5)


@pytest.mark.slow
def test_prospr_streams_its_inner_steps_batches_as_the_pool_draws_them(tiny):
    # ProsPr uses inner_steps + 1 micro-batches per step, one by one: the stream gives them.
    loss_fn, params, data = tiny
    method = fj.methods.get("prospr", inner_steps=2)
    kwargs = dict(method=method, sparsity=0.9, batch_size=32, key=jax.random.key(3))
    pooled, _ = fj.prune(loss_fn, params, data, **kwargs)
    stream = pool_draws(data, jax.random.key(3), batch_size=32, batches_per_step=3, steps=1)
    streamed, _ = fj.prune(loss_fn, params, stream, **kwargs)
    for got, want in zip(jax.tree.leaves(streamed), jax.tree.leaves(pooled)):
        np.testing.assert_array_equal(got, want)


def counting(batches):
    """An iterator over `batches` that counts what was taken (in .taken)."""

    class Counter:
        taken = 0

        def __iter__(self):
            return self

        def __next__(self):
            batch = next(batches)
            Counter.taken += 1
            return batch

    return Counter()


def random_batches(seed, batch_size=32):
    """An endless stream of fresh random MLP batches (numpy), never repeating."""
    rng = np.random.default_rng(seed)
    while True:
        yield {"image": rng.normal(size=(batch_size, 8, 8, 1)).astype(np.float32),
               "label": rng.integers(0, 10, size=batch_size).astype(np.int32)}


def test_each_step_takes_fresh_batches_and_the_step_compiles_once(tiny):
    base_loss, params, _ = tiny

    def loss_fn(p, batch):  # a loss of its own: no other test shares the compiled step
        return base_loss(p, batch)

    stream = counting(random_batches(0))
    step = compile_options.outer_jit(program.step, static_argnums=0)
    before = step._cache_size()
    for sparsity in (0.5, 0.9, 0.99):
        fj.prune(loss_fn, params, stream, method="force", sparsity=sparsity, steps=6,
                 batch_size=32, batches_per_step=3, key=jax.random.key(0))
    # 6 steps x 3 batches, and 3 more for the final objective, at each of 3 sparsities.
    assert stream.taken == 3 * (6 * 3 + 3)
    assert step._cache_size() == before + 1
    stream = counting(random_batches(1))
    _, history = fj.prune(loss_fn, params, stream, method="iter_snip", sparsity=0.9, steps=5,
                          batch_size=32, key=jax.random.key(0), track_objective=False)
    assert stream.taken == 5 and history.kept[-1] == int(0.1 * 2368)


def test_an_iterator_that_runs_out_names_the_step(tiny):
    loss_fn, params, _ = tiny
    stream = itertools.islice(random_batches(0), 7)
    with pytest.raises(ValueError, match="ran out at step 4 of 5: each of the 5 steps takes "
                                         "batches_per_step=2"):
        fj.prune(loss_fn, params, stream, method="force", sparsity=0.9, steps=5, batch_size=32,
                 batches_per_step=2, key=jax.random.key(0))
    stream = itertools.islice(random_batches(0), 5)
    with pytest.raises(ValueError, match="ran out at the final objective"):
        fj.prune(loss_fn, params, stream, method="force", sparsity=0.9, steps=5, batch_size=32,
                 key=jax.random.key(0))


def test_batches_that_change_between_steps_are_refused(tiny):
    loss_fn, params, _ = tiny
    first = next(random_batches(0))
    wider = {"image": np.zeros((32, 8, 8, 2), np.float32), "label": first["label"]}
    with pytest.raises(ValueError, match="pruning batch at step 2 changed shape or dtype"):
        fj.prune(loss_fn, params, iter([first, wider, first]), method="force", sparsity=0.9,
                 steps=2, batch_size=32, key=jax.random.key(0))
    short = jax.tree.map(lambda x: x[:16], first)
    with pytest.raises(ValueError, match=r"step 1 has leading sizes \[16\]; expected 32"):
        fj.prune(loss_fn, params, iter([short]), method="force", sparsity=0.9, steps=2,
                 batch_size=32, key=jax.random.key(0))


def test_a_stream_on_8_devices_selects_what_one_device_selects(tiny):
    """Numpy batches assembled into global arrays split over the mesh: the same mask."""
    loss_fn, params, _ = tiny
    kwargs = dict(method="force", sparsity=0.9, steps=3, batch_size=64, key=jax.random.key(2))
    one, one_history = fj.prune(loss_fn, params, random_batches(5, 64), **kwargs)
    step = compile_options.outer_jit(program.step, static_argnums=0)
    before = step._cache_size()
    eight, history = fj.prune(loss_fn, params, random_batches(5, 64),
                              mesh=sharding.make_mesh(8), **kwargs)
    # The caller's first state may be laid out otherwise than those the step returns: at most
    # one more program, never one per step (3 steps here), and none when run again.
    compiled = step._cache_size()
    assert compiled - before <= 2
    fj.prune(loss_fn, params, random_batches(6, 64), mesh=sharding.make_mesh(8), **kwargs)
    assert step._cache_size() == compiled
    assert int(fj.num_kept(eight)) == int(fj.num_kept(one))
    # Only the order of float sums differs; on this small problem no selection flips.
    for got, want in zip(jax.tree.leaves(eight), jax.tree.leaves(one)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(history.objective, one_history.objective, rtol=1e-4)
    # Global jax.Arrays are taken as they are, and split over the mesh too.
    global_batches = (jax.tree.map(jnp.asarray, b) for b in random_batches(5, 64))
    again, _ = fj.prune(loss_fn, params, global_batches, mesh=sharding.make_mesh(8), **kwargs)
    for got, want in zip(jax.tree.leaves(again), jax.tree.leaves(eight)):
        np.testing.assert_array_equal(got, want)



def test_a_list_of_batches_is_told_to_pass_an_iterator(tiny):
    loss_fn, params, data = tiny
    batches = [{k: v[i * 32:(i + 1) * 32] for k, v in data.items()} for i in range(4)]
    with pytest.raises(TypeError, match=r"pass iter\(data\)"):
        fj.prune(loss_fn, params, batches, sparsity=0.9, steps=2, batch_size=32,
                 key=jax.random.key(0))
