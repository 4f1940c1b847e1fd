"""An NNX model with BatchNorm: pruned through its nnx.Param state, trained masked."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from flax import nnx

import force_jax as fj


class SmallCNN(nnx.Module):
    """Conv -> BatchNorm -> ReLU -> Linear, on 12x12x1 images."""

    def __init__(self, rngs: nnx.Rngs):
        self.conv = nnx.Conv(1, 8, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.fc = nnx.Linear(8 * 12 * 12, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.bn(self.conv(x)))
        return self.fc(x.reshape(x.shape[0], -1))


def _data(n=256):
    kx, ky = jax.random.split(jax.random.key(7))
    return {"image": jax.random.normal(kx, (n, 12, 12, 1)),
            "label": jax.random.randint(ky, (n,), 0, 10)}


def _leaves(tree):
    return {fj.masks.path_name(p): np.asarray(x)
            for p, x in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.parametrize("method", ["force", pytest.param("iter_snip", marks=pytest.mark.slow),
                                    "snip",
                                    pytest.param("synflow", marks=pytest.mark.slow)])
def test_an_nnx_model_prunes_to_a_mask_of_its_param_state(method):
    model = SmallCNN(nnx.Rngs(0))
    graphdef, params, rest = fj.nnx.split(model)
    before = _leaves(rest)
    loss_fn = fj.nnx.classification_loss(graphdef, rest, loss="nll_on_logits")
    synflow_fn = fj.nnx.synflow_objective(graphdef, rest, (12, 12, 1))
    mask, history = fj.prune(loss_fn, params, _data(), method=method, sparsity=0.95,
                             steps=None if method == "snip" else 4, batch_size=32,
                             key=jax.random.key(1), synflow_fn=synflow_fn)
    report = fj.sparsity_report(mask)
    assert [layer.name for layer in report.layers] == ["conv/kernel", "fc/kernel"]
    assert (report.kept, report.total) == (int(0.05 * 11592), 72 + 1152 * 10)
    # Scoring ran BatchNorm on batch statistics without touching the model's own.
    for name, value in _leaves(nnx.split(model, nnx.Param, ...)[2]).items():
        np.testing.assert_array_equal(value, before[name])
    assert np.all(np.isfinite(history.objective))


def test_loss_matches_the_model_called_directly():
    model = SmallCNN(nnx.Rngs(0))
    graphdef, params, rest = fj.nnx.split(model)
    batch = {k: v[:16] for k, v in _data().items()}
    model.train()
    expected = fj.logits_loss(model(batch["image"]), batch["label"])
    got = fj.nnx.classification_loss(graphdef, rest)(params, batch)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("make_tx", [
    lambda: optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.05, momentum=0.9)),
    # optim_test checks adamw's masked updates on every leaf kind.
    pytest.param(lambda: optax.adamw(1e-2, weight_decay=0.05), marks=pytest.mark.slow),
], ids=["sgd_momentum_wd", "adamw"])
def test_an_nnx_model_trains_masked_with_pruned_weights_exactly_zero(make_tx):
    model = SmallCNN(nnx.Rngs(0))
    graphdef, params, rest = fj.nnx.split(model)
    loss_fn = fj.nnx.classification_loss(graphdef, rest)
    data = _data()
    mask, _ = fj.prune(loss_fn, params, data, method="force", sparsity=0.9, steps=3,
                       batch_size=32, key=jax.random.key(2))
    fj.nnx.apply_mask(model, mask)
    start = _leaves(nnx.state(model, nnx.Param))
    optimizer = nnx.Optimizer(model, fj.masked_updates(make_tx(), mask), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, batch):
        def loss(m):
            return fj.logits_loss(m(batch["image"]), batch["label"])

        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    model.train()
    for i in range(30):
        batch = {k: v[(i % 8) * 32:(i % 8 + 1) * 32] for k, v in data.items()}
        train_step(model, optimizer, batch)
    trained = _leaves(nnx.state(model, nnx.Param))
    kept = _leaves(mask)
    for name in ("conv/kernel", "fc/kernel"):
        assert np.all(trained[name][~kept[name]] == 0.0)
        assert np.all(trained[name][kept[name]] != start[name][kept[name]])
    assert int(fj.num_kept(mask)) == int(0.1 * 11592)
