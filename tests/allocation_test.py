"""Per-layer allocations (force_jax.core.allocation): exact counts, the layer-wise scope."""

from __future__ import annotations

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import force_jax as fj
from force_jax.core import allocation, masks, program, schedules, sharding


def _hamilton(quotas: list[Fraction], total: int) -> list[int]:
    """Largest remainder in exact arithmetic, ties to the lower index."""
    counts = [q.numerator // q.denominator for q in quotas]
    order = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


@pytest.mark.parametrize("seed", range(20))
def test_uniform_final_counts_are_the_exact_largest_remainder(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5000, size=rng.integers(2, 12))
    n = int(sizes.sum())
    sparsity = f"0.{rng.integers(1, 9999):04d}"
    total = int((1 - Fraction(sparsity)) * n)  # floor((1 - s) N), the global rule
    assert schedules.count_kept(1 - float(sparsity), n) == total
    got = allocation.layer_counts(np.ones(len(sizes)), sizes, [total])[0]
    exact = _hamilton([Fraction(total * int(s), n) for s in sizes], total)
    assert got.tolist() == exact and got.sum() == total


@pytest.mark.parametrize("name", ["uniform", "erk", "er"])
@pytest.mark.parametrize("schedule", ["exp", "linear"])
def test_every_step_sums_to_its_total_and_no_layer_grows(name, schedule):
    params = fj.models.LeNet5(num_classes=10).init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    params = params["params"]
    totals = program.schedule_counts(params, sparsity=0.998, steps=30, schedule=schedule)
    counts = program.schedule_counts(params, sparsity=0.998, steps=30, schedule=schedule,
                                     allocation=name)
    assert counts.shape == (30, 4) and counts.sum(1).tolist() == totals.tolist()
    assert np.all(np.diff(counts, axis=0) <= 0)  # Iterative SNIP never needs one back
    dense = masks.init_mask(params)
    sizes = np.asarray([np.prod(s) for _, s in allocation.prunable_layers(dense)])
    quota = allocation.quotas(allocation.relative_densities(name, dense), sizes, totals[-1])
    assert np.all(np.abs(counts[-1] - quota) < 1)


def test_erk_and_er_by_hand_with_a_capped_layer():
    mask = {"a": jnp.ones((3, 3, 2, 4), bool), "b": jnp.ones((4, 2), bool),
            "bias": jnp.ones((), bool)}
    erk = allocation.relative_densities("erk", mask)
    np.testing.assert_allclose(erk, [12 / 72, 6 / 8])
    np.testing.assert_allclose(allocation.relative_densities("er", mask), [6 / 8, 6 / 8])
    # 40 of 80 weights: eps * 0.75 would exceed 1 for "b", so "b" is capped at its 8 and
    # "a" takes the other 32 of its 72.
    np.testing.assert_allclose(allocation.quotas(erk, [72, 8], 40), [32, 8])
    assert allocation.layer_counts(erk, [72, 8], [40])[0].tolist() == [32, 8]


def test_a_map_and_a_mask_that_give_the_total_are_used_as_they_are():
    mask = {"a": jnp.ones((10, 10), bool), "b": jnp.ones((10, 30), bool)}
    counts = allocation.layer_counts(
        allocation.relative_densities({"a": 0.5, "b": 0.1}, mask), [100, 300], [80])
    assert counts[-1].tolist() == [50, 30]
    reference = {"a": jnp.arange(100).reshape(10, 10) < 7,
                 "b": jnp.arange(300).reshape(10, 30) < 73}
    relative = allocation.relative_densities(reference, mask)
    assert allocation.layer_counts(relative, [100, 300], [80])[-1].tolist() == [7, 73]


@pytest.mark.parametrize("bad, message", [
    ("erk2", "unknown allocation 'erk2'"),
    ({"a": 0.5}, "misses b"),
    ({"a": 0.5, "b": 0.5, "c": 0.5}, "names c, which is not a prunable layer"),
    ({"a": 0.0, "b": 0.5}, "gives a the density 0.0"),
    ({"a": 1.5, "b": 0.5}, "gives a the density 1.5"),
    ({"a": jnp.ones((10,), bool), "b": jnp.ones((10, 30), bool)}, "shape"),
])
def test_bad_allocations_are_refused_naming_the_problem(bad, message):
    mask = {"a": jnp.ones((10, 10), bool), "b": jnp.ones((10, 30), bool)}
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        allocation.relative_densities(bad, mask)


def test_an_allocation_that_cannot_reach_the_total_is_refused():
    reference = {"a": jnp.zeros((10, 10), bool), "b": jnp.ones((10, 3), bool)}
    relative = allocation.relative_densities(reference, reference)
    with pytest.raises(ValueError, match="cannot keep 50 weights"):
        allocation.layer_counts(relative, [100, 30], [50])


def test_per_layer_topk_keeps_each_count_with_ties_to_the_lower_index():
    scores = {"a": jnp.asarray([[3.0, 1.0], [1.0, 1.0]]), "b": jnp.asarray([[2.0, 2.0, 5.0]]),
              "c": jnp.zeros(())}
    like = {"a": jnp.ones((2, 2), bool), "b": jnp.ones((1, 3), bool), "c": jnp.ones((), bool)}
    kept = jax.jit(masks.topk_mask)(scores, like, jnp.asarray([2, 2]))
    assert np.asarray(kept["a"]).tolist() == [[True, True], [False, False]]
    assert np.asarray(kept["b"]).tolist() == [[True, False, True]]
    assert kept["c"].shape == ()
    with pytest.raises(ValueError, match="3 layer counts for 2 prunable leaves"):
        masks.topk_mask(scores, like, jnp.asarray([1, 1, 1]))


@pytest.fixture(scope="module")
def lenet():
    model = fj.models.LeNet5(num_classes=10)
    kx, ky, kp = jax.random.split(jax.random.key(0), 3)
    data = {"image": jax.random.normal(kx, (64, 28, 28, 1)),
            "label": jax.random.randint(ky, (64,), 0, 10)}
    variables = model.init(kp, data["image"][:1])
    return fj.classification_loss(model, variables), variables["params"], data


@pytest.mark.parametrize("method", ["force", *(pytest.param(m, marks=pytest.mark.slow)
                                              for m in ("iter_snip", "snip", "random"))])
def test_layerwise_prune_keeps_each_layer_count_at_every_step(lenet, method):
    loss_fn, params, data = lenet
    steps = 1 if method in ("snip", "random") else 6
    counts = program.schedule_counts(params, sparsity=0.99, steps=steps, allocation="erk")
    mask, history = fj.prune(loss_fn, params, data, method=method, sparsity=0.99, steps=steps,
                             batch_size=32, key=jax.random.key(1), scope="layerwise",
                             allocation="erk")
    assert history.layer_kept.tolist() == counts.tolist()
    assert history.kept.tolist() == counts.sum(1).tolist()
    assert [int(m.sum()) for m in jax.tree.leaves(mask) if m.ndim] == counts[-1].tolist()
    if method == "iter_snip":
        assert np.all(history.revived == 0)


def test_layerwise_uniform_is_the_default_and_global_refuses_an_allocation(lenet):
    loss_fn, params, data = lenet
    kwargs = dict(method="snip", sparsity=0.9, steps=1, batch_size=32, key=jax.random.key(1))
    default, _ = fj.prune(loss_fn, params, data, scope="layerwise", **kwargs)
    uniform, _ = fj.prune(loss_fn, params, data, scope="layerwise", allocation="uniform",
                          **kwargs)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(default),
                                                      jax.tree.leaves(uniform)))
    with pytest.raises(ValueError, match="needs scope='layerwise'"):
        fj.prune(loss_fn, params, data, allocation="erk", **kwargs)
    with pytest.raises(ValueError, match="unknown scope 'local'"):
        fj.prune(loss_fn, params, data, scope="local", **kwargs)


@pytest.mark.slow
def test_random_under_another_masks_densities_copies_them(lenet):
    loss_fn, params, data = lenet
    kwargs = dict(sparsity=0.95, steps=1, batch_size=32, key=jax.random.key(1))
    snip, _ = fj.prune(loss_fn, params, data, method="snip", **kwargs)
    rand, _ = fj.prune(loss_fn, params, data, method="random", scope="layerwise",
                       allocation=snip, **kwargs)
    for a, b in zip(jax.tree.leaves(snip), jax.tree.leaves(rand)):
        assert int(np.sum(a)) == int(np.sum(b))


@pytest.mark.slow  # the layer-wise prune tests jit it; program_test vmaps the schedule
def test_layerwise_schedule_runs_under_jit_and_vmap_over_keys(lenet):
    loss_fn, params, data = lenet
    pruner = program.Pruner("force", loss_fn, batch_size=32)
    counts = jnp.asarray(program.schedule_counts(params, sparsity=0.99, steps=4,
                                                 allocation="er"))
    keys = jax.random.split(jax.random.key(3), 2)
    run = jax.vmap(lambda k: program.schedule(pruner, params, data, counts, k,
                                              masks.init_mask(params)))
    final, trace = jax.jit(run)(keys)
    assert trace.layer_kept.shape == (2, 4, 4)
    assert np.all(np.asarray(trace.layer_kept) == np.asarray(counts)[None])


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices")
def test_layerwise_prune_on_a_mesh_keeps_the_counts(lenet):
    loss_fn, params, data = lenet
    counts = program.schedule_counts(params, sparsity=0.99, steps=3, allocation="erk")
    _, history = fj.prune(loss_fn, params, data, method="force", sparsity=0.99, steps=3,
                          batch_size=32, key=jax.random.key(1), scope="layerwise",
                          allocation="erk", mesh=sharding.make_mesh(8))
    assert history.layer_kept.tolist() == counts.tolist()
