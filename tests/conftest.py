"""Shared fixtures: a tiny plain-function classifier and synthetic data."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest


def mlp_apply(params, images):
    """Two-layer ReLU network as a plain function (no Flax)."""
    x = images.reshape(images.shape[0], -1)
    h = jax.nn.relu(x @ params["w1"] + params["b1"])
    return h @ params["w2"] + params["b2"]


def mlp_loss(params, batch):
    """Softmax cross-entropy of `mlp_apply`."""
    logits = mlp_apply(params, batch["image"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()


def init_mlp(key, d_in=64, hidden=32, classes=10):
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (d_in, hidden)) * np.sqrt(2.0 / d_in),
        "b1": jnp.zeros((hidden,)),
        "w2": jax.random.normal(k2, (hidden, classes)) * np.sqrt(2.0 / hidden),
        "b2": jnp.zeros((classes,)),
    }


@pytest.fixture
def tiny():
    """(loss_fn, params, data) of a 64-32-10 MLP on 256 random examples."""
    key = jax.random.key(0)
    kp, kx, ky = jax.random.split(key, 3)
    params = init_mlp(kp)
    data = {
        "image": jax.random.normal(kx, (256, 8, 8, 1)),
        "label": jax.random.randint(ky, (256,), 0, 10),
    }
    return mlp_loss, params, data
