"""The method table: every record is consistent with its score, and a new method is one entry."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import init_mlp, mlp_apply, mlp_loss

import force_jax as fj
from force_jax.core import masks, methods, scores
from force_jax.errors import ConfigError


def _partial_mask(params):
    """Every other weight of each kernel kept."""
    return jax.tree.map(
        lambda p: (jnp.arange(p.size).reshape(p.shape) % 2 == 0) if p.ndim >= 2
        else jnp.ones((), bool), params)


@pytest.mark.parametrize("name", methods.names())
def test_each_record_says_what_its_score_does(name):
    record = methods.METHODS[name]
    params = init_mlp(jax.random.key(0))
    mask = _partial_mask(params)
    batch = {"image": jax.random.normal(jax.random.key(1), (16, 64)),
             "label": jnp.arange(16) % 10}
    calls = {"data": 0}

    def gradient(p):
        calls["data"] += 1
        return jax.grad(mlp_loss)(p, batch)

    def hessian_vector(p, v):
        calls["data"] += 1
        return jax.jvp(lambda q: jax.grad(mlp_loss)(q, batch), (p,), (v,))[1]

    def loss(p, b):
        calls["data"] += 1
        return mlp_loss(p, b)

    # A plain-function probe of the MLP (what force_jax.network_probe builds for Flax).
    probe = scores.Probe(
        gap=lambda w, v, x: jnp.sum(jnp.square(mlp_apply(w, x) - mlp_apply(v, x))),
        init=init_mlp, input_shape=(64,), layer_order=("w1", "b1", "w2", "b2"))
    inputs = scores.StepInputs(params, mask, gradient, hessian_vector,
                               jax.grad(lambda p: sum(jnp.sum(x) for x in jax.tree.leaves(p))),
                               jax.random.key(2), loss=loss, batch=lambda i: batch,
                               count=jnp.int32(100), probe=probe)
    got, grads = record.score(inputs)
    assert (calls["data"] > 0) == record.needs_data
    # A free objective means the score handed back the gradient it computed.
    assert (grads is not None) == (record.objective == methods.OBJECTIVE_FREE)
    pruned = np.concatenate([np.asarray(s)[~np.asarray(m)].ravel() for s, m in zip(
        jax.tree.leaves(got), jax.tree.leaves(mask)) if np.ndim(m)])
    if record.progressive and not record.revives:
        assert np.all(pruned == -np.inf)
    if record.revives:
        assert np.all(np.isfinite(pruned))
    assert record.progressive == (record.default_steps > 1)


def test_a_new_method_is_one_function_and_one_record():
    """Anti-magnitude, progressive, data-free: prune() and its checks follow the record."""

    def smallest_first(inputs):
        return jax.tree.map(lambda p: -jnp.abs(p).astype(jnp.float32), inputs.params), None

    toy = methods.Method(name="smallest_first", score=smallest_first, progressive=True,
                         default_steps=3, needs_data=False, needs_synflow=False, revives=True,
                         objective=methods.OBJECTIVE_NONE)
    params = init_mlp(jax.random.key(0))
    mask, history = fj.prune(None, params, method=toy, sparsity=0.9, key=jax.random.key(1))
    assert len(history.kept) == 3  # its default_steps
    kept = np.concatenate([np.abs(np.asarray(p))[np.asarray(m)] for p, m in zip(
        jax.tree.leaves(params), jax.tree.leaves(mask)) if np.ndim(m)])
    dropped = np.concatenate([np.abs(np.asarray(p))[~np.asarray(m)] for p, m in zip(
        jax.tree.leaves(params), jax.tree.leaves(mask)) if np.ndim(m)])
    assert kept.max() <= dropped.min()  # the smallest magnitudes are the ones kept
    assert int(masks.num_kept(mask)) == int(0.1 * masks.num_prunable(mask))
    with pytest.raises(ValueError, match="one shot"):
        fj.prune(None, params, method=toy._replace(progressive=False, default_steps=1),
                 sparsity=0.9, steps=2, key=jax.random.key(1))


def test_a_method_in_the_table_is_accepted_by_config_validation(monkeypatch):
    from train_test import tiny_config

    from force_jax.config import validate

    toy = methods.METHODS["magnitude"]._replace(name="toy")
    monkeypatch.setattr(methods, "METHODS", {**methods.METHODS, "toy": toy})
    validate.validate_config(tiny_config(**{"prune.method": "toy", "prune.steps": None}))
    with pytest.raises(ConfigError, match="prune.method"):
        validate.validate_config(tiny_config(**{"prune.method": "nope"}))


def test_inconsistent_records_are_refused():
    record = methods.METHODS["force"]
    with pytest.raises(ValueError, match="default_steps"):
        methods.get(record._replace(progressive=False))
    with pytest.raises(ValueError, match="objective"):
        methods.get(record._replace(objective="sometimes"))
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        methods.get("nope")
