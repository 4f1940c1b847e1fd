"""Tests for the strided-slice max-pool (models.pooling) against flax's reduce_window pool."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from force_jax.models import VGG, LeNet5
from force_jax.models.pooling import max_pool


def _reference(x, window):
    return nn.max_pool(x, (window, window), strides=(window, window))


def _inputs(shape, seed):
    """Maps full of ties: post-ReLU zeros and small integers, plus a few distinct values."""
    rng = np.random.default_rng(seed)
    ties = rng.integers(-2, 3, size=shape).astype(np.float32)
    return [
        jnp.asarray(np.maximum(ties, 0.0)),  # windows of zeros, as after a ReLU
        jnp.asarray(ties),
        jnp.asarray(rng.normal(size=shape).astype(np.float32)),
    ]


@pytest.mark.parametrize("shape,window", [((2, 8, 8, 3), 2), ((3, 7, 9, 2), 2), ((2, 9, 7, 4), 3)])
def test_value_and_gradient_equal_reduce_window_with_ties(shape, window):
    # The gradient must go to the first maximal element of each window, like
    # select_and_scatter (and PyTorch), not be split between ties.
    for seed, x in enumerate(_inputs(shape, 0)):
        expected = _reference(x, window)
        cotangent = jax.random.normal(jax.random.key(seed), expected.shape)
        np.testing.assert_array_equal(max_pool(x, window), expected)
        _, pull = jax.vjp(lambda v: max_pool(v, window), x)
        _, pull_reference = jax.vjp(lambda v: _reference(v, window), x)
        (got,), (want,) = pull(cotangent), pull_reference(cotangent)
        np.testing.assert_array_equal(got, want)
        # Each window passes its cotangent to exactly one element.
        assert int(jnp.sum(got != 0)) == int(jnp.sum(cotangent != 0))


def test_forward_mode_and_second_order_match_reduce_window():
    x = _inputs((2, 6, 6, 3), 1)[1]
    tangent = jax.random.normal(jax.random.key(0), x.shape)
    _, got = jax.jvp(lambda v: max_pool(v, 2), (x,), (tangent,))
    _, want = jax.jvp(lambda v: _reference(v, 2), (x,), (tangent,))
    np.testing.assert_array_equal(got, want)

    def loss(pool):
        return lambda v: jnp.sum(pool(v) ** 2)

    hvp = jax.grad(lambda v: jnp.vdot(jax.grad(loss(lambda u: max_pool(u, 2)))(v), tangent))(x)
    ref = jax.grad(lambda v: jnp.vdot(jax.grad(loss(lambda u: _reference(u, 2)))(v), tangent))(x)
    np.testing.assert_allclose(hvp, ref, rtol=1e-6)


def test_nan_in_a_window_stays_nan():
    x = jnp.zeros((1, 4, 4, 1)).at[0, 1, 2, 0].set(jnp.nan)
    pooled = max_pool(x, 2)
    assert bool(jnp.isnan(pooled[0, 0, 1, 0]))
    assert int(jnp.sum(jnp.isnan(pooled))) == 1


@pytest.mark.parametrize(
    "shape,window,message",
    [((4, 4, 3), 2, "NHWC"), ((1, 4, 4, 1), 0, ">= 1"), ((1, 2, 5, 1), 3, "larger than the map")],
)
def test_bad_input_is_named(shape, window, message):
    with pytest.raises(ValueError, match=message):
        max_pool(jnp.zeros(shape), window)


@pytest.mark.parametrize(
    "model,shape",
    [(VGG(depth=11, num_classes=10, width_multiplier=0.125), (2, 32, 32, 3)),
     (LeNet5(num_classes=10), (2, 28, 28, 1))],
)
def test_models_pool_without_reduce_window(model, shape):
    # The models must not fall back to reduce_window, whose gradient
    # (select_and_scatter) is the slow path this module replaces.
    x = jax.random.normal(jax.random.key(0), shape)
    variables = jax.jit(lambda k: model.init(k, x, train=False))(jax.random.key(1))
    text = jax.jit(jax.grad(lambda v: jnp.sum(model.apply(v, x, train=False)))).lower(
        variables
    ).as_text()
    assert "reduce_window" not in text
    assert "select_and_scatter" not in text
