"""Tests for the one-matmul conv over tiny maps (force_jax.models.fast_conv.Conv)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from force_jax.models import VGG, common, fast_conv, kernels


def _reference_conv(x: jax.Array, kernel: jax.Array, padding) -> jax.Array:
    """The plain XLA convolution, stride 1."""
    return lax.conv_general_dilated(
        x,
        kernel,
        (1, 1),
        padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=lax.Precision.HIGHEST,
    )


# Every size with 3x3 kernels by default; 1x1 kernels beyond the 1x1 map in the slow tier.
@pytest.mark.parametrize("size, kernel_size", [
    (size, k) if k == 3 or size == (1, 1) else pytest.param(size, k, marks=pytest.mark.slow)
    for k in (1, 3) for size in ((1, 1), (2, 2), (3, 3), (1, 2), (2, 3))])
def test_small_map_conv_matches_lax(size, kernel_size):
    pad = kernel_size // 2
    padding = ((pad, pad), (pad, pad))
    kx, kk = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (4, *size, 5))
    kernel = jax.random.normal(kk, (kernel_size, kernel_size, 5, 7))

    def loss(fn, x, kernel):
        return jnp.sum(jnp.sin(fn(x, kernel)))

    fast = lambda x, k: fast_conv.small_map_conv(x, k, padding, precision=lax.Precision.HIGHEST)  # noqa: E731
    plain = lambda x, k: _reference_conv(x, k, padding)  # noqa: E731
    np.testing.assert_allclose(fast(x, kernel), plain(x, kernel), rtol=1e-5, atol=1e-5)
    fast_grads = jax.grad(lambda x, k: loss(fast, x, k), argnums=(0, 1))(x, kernel)
    plain_grads = jax.grad(lambda x, k: loss(plain, x, k), argnums=(0, 1))(x, kernel)
    for got, want in zip(fast_grads, plain_grads):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# Every padding on the 2x2 map and SAME on every map by default; the rest in the slow tier.
@pytest.mark.parametrize("padding, size", [
    (padding, size) if size == (2, 2) or padding == "SAME"
    else pytest.param(padding, size, marks=pytest.mark.slow)
    for size in ((1, 1), (2, 2), (3, 3))
    for padding in ("SAME", "VALID", ((1, 1), (1, 1)), ((2, 0), (0, 1)))])
def test_conv_module_matches_nn_conv(padding, size):
    """Same params, outputs and kernel gradients as nn.Conv, matmul path forced on."""
    if padding == "VALID" and size == (1, 1):
        pytest.skip("a 3x3 VALID conv needs at least a 3x3 map")
    fast = fast_conv.Conv(7, (3, 3), padding=padding, use_bias=True, max_matmul_pixels=9)
    plain = fast_conv.Conv(7, (3, 3), padding=padding, use_bias=True, max_matmul_pixels=0)
    x = jax.random.normal(jax.random.key(1), (2, *size, 4))
    variables = plain.init(jax.random.key(2), x)
    fast_variables = fast.init(jax.random.key(2), x)
    assert jax.tree.map(jnp.shape, variables) == jax.tree.map(jnp.shape, fast_variables)
    np.testing.assert_array_equal(variables["params"]["kernel"], fast_variables["params"]["kernel"])
    variables = jax.tree.map(lambda v: v + 0.1, variables)  # a non-zero bias too

    def loss(module, params):
        return jnp.sum(jnp.tanh(module.apply({"params": params}, x)))

    np.testing.assert_allclose(
        fast.apply(variables, x), plain.apply(variables, x), rtol=1e-5, atol=1e-5
    )
    fast_grads = jax.grad(lambda p: loss(fast, p))(variables["params"])
    plain_grads = jax.grad(lambda p: loss(plain, p))(variables["params"])
    for name in ("kernel", "bias"):
        np.testing.assert_allclose(fast_grads[name], plain_grads[name], rtol=1e-4, atol=1e-4)


def _route(layer, x) -> str:
    """Which computation a conv layer traces to: matmul, loop_conv or plain."""
    variables = layer.init(jax.random.key(0), x)
    text = str(jax.make_jaxpr(layer.apply)(variables, x))
    if "custom_vjp_call" in text:
        return "loop_conv"
    return "plain" if "conv_general_dilated" in text else "matmul"


def test_conv_helper_routes_small_stride_one_maps_to_the_matmul(monkeypatch):
    """The matmul at 2x2; loop_conv at 4x4, with stride 2, or with the matmul off."""
    x_small = jnp.ones((1, 2, 2, 3))
    x_big = jnp.ones((1, 4, 4, 3))
    layer = common.conv(4, 3)
    assert _route(layer, x_small) == "matmul"
    assert _route(layer, x_big) == "loop_conv"
    assert _route(common.conv(4, 3, strides=2), x_small) == "loop_conv"
    forward_mode = kernels.make_ops(forward_mode=True)
    assert _route(common.conv(4, 3, ops=forward_mode), x_big) == "plain"
    assert _route(common.conv(4, 3, ops=forward_mode), x_small) == "matmul"
    assert _route(common.conv(4, 3, ops=kernels.make_ops("plain")), x_small) == "plain"
    monkeypatch.setattr(fast_conv, "SMALL_CONV_MAX_PIXELS", 0)
    assert _route(layer, x_small) == "loop_conv"


@pytest.mark.slow
def test_vgg19_forward_and_grads_match_plain_convs(monkeypatch):
    """A narrow VGG-19 on 32x32 inputs (2x2 last stage): same logits and kernel grads."""
    model = VGG(depth=19, num_classes=10, width_multiplier=0.125)
    x = jax.random.normal(jax.random.key(3), (4, 32, 32, 3))
    variables = jax.jit(lambda k: model.init(k, x))(jax.random.key(4))

    def loss(params):
        logits, _ = model.apply(
            {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
        )
        return jnp.sum(logits**2), logits

    # One program each (traced after the patch that picks the conv path), not op by op.
    (_, fast_logits), fast_grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(
        variables["params"])
    monkeypatch.setattr(fast_conv, "SMALL_CONV_MAX_PIXELS", 0)
    (_, plain_logits), plain_grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(
        variables["params"])
    np.testing.assert_allclose(fast_logits, plain_logits, rtol=1e-4, atol=1e-4)
    for layer in ("conv_12", "conv_15"):
        got, want = fast_grads[layer]["kernel"], plain_grads[layer]["kernel"]
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(want))))
