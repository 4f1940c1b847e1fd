"""Pruning and training on 8 (fake CPU) devices equal the one-device results.

conftest.py sets --xla_force_host_platform_device_count=8 before jax loads.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import init_mlp, mlp_apply
from train_test import SHARED_TFDS, tiny_config

import force_jax as fj
from force_jax import optim
from force_jax.commands import train
from force_jax.config import training_setup
from force_jax.core import masks, scores, sharding
from force_jax.training import steps

# One worker runs the module, and its fixture is made once (a module-scoped fixture is
# made again whenever xdist runs another module's test in between).
pytestmark = [pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices"),
              pytest.mark.xdist_group("parallel")]


@pytest.fixture(scope="session")
def vgg_problem():
    """A narrow VGG11 with BatchNorm on 256 random CIFAR-shaped examples."""
    model = fj.models.VGG(depth=11, num_classes=10, width_multiplier=0.125)
    kx, ky, kp = jax.random.split(jax.random.key(0), 3)
    data = {"image": jax.random.normal(kx, (256, 32, 32, 3)),
            "label": jax.random.randint(ky, (256,), 0, 10)}
    variables = jax.jit(lambda k, x: model.init(k, x, train=False))(kp, data["image"][:2])
    return model, variables, data


# The default tier keeps prune_stream_test's 8-device stream (FORCE, the same mask as one
# device); this one adds BatchNorm's statistics over the mesh on a VGG.
@pytest.mark.slow
def test_a_pruning_step_on_8_devices_selects_what_1_device_selects(vgg_problem):
    # One batch of the whole 128-example pool, so both runs score the same examples (BatchNorm
    # statistics included); only the order of the floating-point sums differs. Progressive
    # steps amplify that rounding (see docs/fidelity.md), so selections are compared one step
    # at a time: they may differ only on scores within rounding of the k-th score.
    model, variables, data = vgg_problem
    pool = jax.tree.map(lambda x: x[:128], data)
    loss_fn = fj.classification_loss(model, variables)
    params = variables["params"]
    grads = jax.grad(loss_fn)(params, pool)
    for sparsity in (0.99, 0.999):  # one compile per mesh serves both
        kwargs = dict(method="force", sparsity=sparsity, steps=1, batch_size=128,
                      key=jax.random.key(1), on_collapse="ignore")
        one, _ = fj.prune(loss_fn, params, pool, **kwargs)
        eight, _ = fj.prune(loss_fn, params, pool, mesh=sharding.make_mesh(8), **kwargs)
        assert_same_selection_up_to_rounding(one, eight, params, grads, sparsity)


def assert_same_selection_up_to_rounding(one, eight, params, grads, sparsity):
    """Both masks keep k weights; they differ only on scores within rounding of the k-th."""
    flags = [m.ndim > 0 for m in jax.tree.leaves(one)]
    scores = np.concatenate([np.abs(np.asarray(p * g)).ravel() for p, g, f in zip(
        jax.tree.leaves(params), jax.tree.leaves(grads), flags) if f])
    flat = {name: np.concatenate([np.asarray(m).ravel() for m in jax.tree.leaves(mask)
                                  if m.ndim > 0]) for name, mask in (("1", one), ("8", eight))}
    k = int((1 - sparsity) * scores.size)
    assert flat["1"].sum() == flat["8"].sum() == k
    threshold = np.sort(scores)[-k]
    differ = flat["1"] != flat["8"]
    assert np.all(np.abs(scores[differ] - threshold) <= 1e-4 * threshold)
    assert differ.sum() <= max(2, k // 100)
    # And each selects the k highest of these scores, up to the same rounding.
    for selected in flat.values():
        assert scores[selected].min() >= threshold * (1 - 1e-4)


@pytest.mark.parametrize("method", [pytest.param(m, marks=pytest.mark.slow)
                                    for m in ("force", "iter_snip")])
def test_a_progressive_schedule_on_8_devices_is_deterministic_and_exact(vgg_problem, method):
    model, variables, data = vgg_problem
    loss_fn = fj.classification_loss(model, variables)
    kwargs = dict(method=method, sparsity=0.99, steps=4, batch_size=64, batches_per_step=2,
                  key=jax.random.key(1), on_collapse="ignore", mesh=sharding.make_mesh(8))
    first, history = fj.prune(loss_fn, variables["params"], data, **kwargs)
    second, _ = fj.prune(loss_fn, variables["params"], data, **kwargs)
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(fj.num_kept(first)) == history.kept[-1] == int(0.01 * masks.num_prunable(first))
    assert np.all(np.isfinite(history.objective)) and np.all(history.objective > 0)


def test_pruning_batch_must_split_over_devices(tiny):
    loss_fn, params, data = tiny
    with pytest.raises(ValueError, match="not divisible by the 8 devices"):
        fj.prune(loss_fn, params, data, method="snip", sparsity=0.9, batch_size=60,
                 key=jax.random.key(0), mesh=sharding.make_mesh(8))


@pytest.mark.slow
def test_train_step_on_8_devices_matches_1_device(vgg_problem):
    model, variables, data = vgg_problem
    config = tiny_config()
    mask = masks.topk_mask(
        jax.tree.map(lambda p: jax.random.uniform(jax.random.key(2), p.shape), variables["params"]),
        masks.init_mask(variables["params"]), 2000)
    schedule = optim.make_schedule(config.train.lr_schedule, total_steps=100, steps_per_epoch=10)
    batch = {k: np.asarray(v[:64]) for k, v in data.items()}

    def run(mesh):
        state = training_setup.initial_state(config, model, variables, mask, schedule)
        shardings = sharding.param_shardings(state, mesh, fsdp=True, min_size=1024)
        state = sharding.put_replicated_copy(state, shardings)
        step = jax.jit(steps.train_step, donate_argnums=0)
        for _ in range(3):
            state, _ = step(state, sharding.global_batch(batch, mesh))
        return jax.device_get(state)

    one, eight = run(sharding.make_mesh(1)), run(sharding.make_mesh(8))
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(eight.params)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
    for a, b in zip(jax.tree.leaves(one.batch_stats), jax.tree.leaves(eight.batch_stats)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
    for p, m in zip(jax.tree.leaves(eight.params), jax.tree.leaves(mask)):
        if masks.is_prunable_leaf(m):
            assert np.all(np.asarray(p)[~np.asarray(m)] == 0)


def test_fsdp_shards_large_leaves_over_the_data_axis(tiny):
    _, params, _ = tiny  # a 64 x 32 kernel (2,048 weights) and biases
    mesh = sharding.make_mesh(8)
    shardings = sharding.param_shardings(params, mesh, fsdp=True, min_size=1024)
    specs = {jax.tree_util.keystr(k): s.spec
             for k, s in jax.tree_util.tree_flatten_with_path(shardings)[0]}
    assert any(sharding.DATA_AXIS in tuple(spec) for spec in specs.values())
    assert all(tuple(spec) == () for name, spec in specs.items() if "bias" in name)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_TFDS.is_dir(), reason="no shared TFDS folder")
def test_train_and_evaluate_on_8_devices(tmp_path):
    config = tiny_config()
    config.mesh.num_devices = 8
    config.eval_batch_size = 96
    metrics = train.train_and_evaluate(config, str(tmp_path))
    assert metrics["step"] == 6 and 0.0 <= metrics["test_accuracy"] <= 1.0
    with pytest.raises(ValueError, match="config.eval_batch_size 100 is not divisible"):
        bad = tiny_config()
        bad.mesh.num_devices = 8
        train.train_and_evaluate(bad, str(tmp_path / "bad"))


def test_global_batch_layout():
    mesh = sharding.make_mesh(8)
    batch = sharding.global_batch({"x": np.arange(16, dtype=np.float32)}, mesh)
    assert batch["x"].sharding.spec == jax.sharding.PartitionSpec("data")
    assert len(batch["x"].addressable_shards) == 8
    np.testing.assert_array_equal(jnp.asarray(batch["x"]), np.arange(16))


@pytest.mark.slow
def test_the_newer_methods_run_on_a_mesh_and_agree_with_one_device(tiny):
    # ProsPr splits each of its micro-batches over the mesh; NTK-SAP and PHEW read no data
    # and run replicated. PHEW's walks are integer choices: the same mask; the others agree
    # to float rounding (IoU).
    loss_fn, params, data = tiny
    probe = scores.Probe(
        gap=lambda w, v, x: jnp.sum(jnp.square(mlp_apply(w, x) - mlp_apply(v, x))),
        init=init_mlp, input_shape=(8, 8, 1), layer_order=("w1", "b1", "w2", "b2"))
    for method, count in (("prospr", 1), ("ntk_sap", 2), ("phew", 1)):
        record = fj.methods.get(method, **({"noise_batch": 16} if method == "ntk_sap" else {}))
        kwargs = dict(method=record, sparsity=0.9, steps=count, batch_size=32,
                      key=jax.random.key(1), probe=probe)
        one, _ = fj.prune(loss_fn, params, data, **kwargs)
        eight, _ = fj.prune(loss_fn, params, data, mesh=sharding.make_mesh(8), **kwargs)
        a, b = (np.concatenate([np.asarray(m).ravel() for m in jax.tree.leaves(mask)
                                if m.ndim > 0]) for mask in (one, eight))
        assert a.sum() == b.sum()
        iou = (a & b).sum() / (a | b).sum()
        assert iou == 1.0 if method == "phew" else iou >= 0.98, (method, iou)
