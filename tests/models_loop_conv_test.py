"""Tests for the conv whose gradients stay canonical inside loops (models.loop_conv)."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from force_jax.models import get_model, loop_conv
from force_jax.models.loop_conv import conv2d

CANONICAL = "b01f_01io->b01f"  # NHWC input, HWIO kernel, NHWC output


def _plain(x, kernel, strides, padding):
    return lax.conv_general_dilated(
        x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=lax.Precision.HIGHEST,
    )


CASES = [  # (H, W, kh, kw, strides, padding)
    (8, 8, 3, 3, (1, 1), ((1, 1), (1, 1))),
    (9, 7, 3, 3, (2, 2), ((1, 1), (1, 1))),  # stride drops trailing rows
    (8, 8, 1, 1, (2, 2), ((0, 0), (0, 0))),  # ResNet projection shortcut
    (10, 10, 5, 5, (1, 1), ((0, 0), (0, 0))),  # LeNet-5
    (7, 9, 3, 2, (2, 3), ((2, 0), (1, 1))),  # asymmetric everything
    (12, 12, 7, 7, (2, 2), ((3, 3), (3, 3))),  # ImageNet stem
    (6, 6, 1, 1, (1, 1), ((1, 2), (2, 0))),  # padding beyond the kernel's reach
    # A kernel larger than the output: the input gradient slides dy instead of the kernel
    # (what a kernel-gradient convolution's own derivative is).
    (10, 10, 8, 8, (1, 1), ((0, 0), (0, 0))),
    (11, 9, 7, 6, (2, 1), ((1, 0), (2, 1))),
    (6, 6, 6, 6, (1, 1), ((2, 1), (0, 3))),
]


# Two cases run by default (strides dropping rows, a kernel larger than the output); the
# others in the slow tier.
@pytest.mark.parametrize("case", [
    c if i in (1, 7) else pytest.param(c, marks=pytest.mark.slow)
    for i, c in enumerate(CASES)])
def test_values_gradients_and_second_order_match_lax_in_float64(case):
    height, width, kh, kw, strides, padding = case
    with jax.enable_x64(True):
        kx, kk, kc = jax.random.split(jax.random.key(0), 3)
        x = jax.random.normal(kx, (3, height, width, 4), jnp.float64)
        kernel = jax.random.normal(kk, (kh, kw, 4, 5), jnp.float64)
        out = conv2d(x, kernel, strides, padding)
        reference = _plain(x, kernel, strides, padding)
        assert out.shape == reference.shape
        np.testing.assert_allclose(out, reference, rtol=1e-12, atol=1e-12)

        weights = jax.random.normal(kc, out.shape, jnp.float64)

        def loss(fn):
            return lambda x, k: jnp.sum(jnp.tanh(fn(x, k, strides, padding)) * weights)

        grads = jax.grad(loss(conv2d), (0, 1))(x, kernel)
        expected = jax.grad(loss(_plain), (0, 1))(x, kernel)
        for got, want in zip(grads, expected):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)

        # Reverse over reverse (GraSP's H g): d<grad, v>/d(x, kernel).
        def second(fn):
            def directional(x, k):
                gx, gk = jax.grad(loss(fn), (0, 1))(x, k)
                return jnp.sum(gx * jnp.cos(x)) + jnp.sum(gk * jnp.sin(k))

            return jax.grad(directional, (0, 1))(x, kernel)

        for got, want in zip(second(conv2d), second(_plain)):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def _conv_dim_labels_in_loop(conv_fn) -> set[str]:
    """dim_labels of every convolution XLA:CPU compiles for a gradient in a fori_loop."""
    x = jnp.ones((4, 9, 9, 3))
    kernel = jnp.ones((3, 3, 3, 5))

    def loop(x, kernel):
        def body(i, acc):
            loss = lambda k: jnp.sum(jnp.tanh(conv_fn(x * i, k, (2, 2), ((1, 1), (1, 1)))))  # noqa: E731
            return acc + jax.grad(loss)(kernel)

        return lax.fori_loop(0, 3, body, jnp.zeros_like(kernel))

    text = jax.jit(loop).lower(x, kernel).compile().as_text()
    return set(re.findall(r"convolution\(.*?dim_labels=(\S+?),", text))


def test_gradient_inside_a_loop_compiles_to_canonical_convs_only():
    # The reason for the module: XLA:CPU canonicalises conv gradients only
    # outside loops; non-canonical ones run on a slow generic emitter.
    labels = _conv_dim_labels_in_loop(conv2d)
    assert labels == {CANONICAL}
    # The check can fail: lax's own kernel gradient is not canonical in a loop.
    assert _conv_dim_labels_in_loop(_plain) - {CANONICAL}


@pytest.mark.parametrize(
    "make, shape",
    [
        pytest.param(lambda fast: get_model("vgg11", 10, width_multiplier=0.125,
                                            forward_mode=not fast),
                     (2, 32, 32, 3), marks=pytest.mark.slow),
        pytest.param(lambda fast: get_model("resnet18", 10, width_multiplier=0.125,
                                            forward_mode=not fast),
                     (2, 16, 16, 3), marks=pytest.mark.slow),
        (lambda fast: get_model("lenet5", 10, forward_mode=not fast), (2, 28, 28, 1)),
    ],
)
def test_models_match_plain_convs_and_allow_forward_mode_when_asked(make, shape):
    fast, plain = make(True), make(False)
    x = jax.random.normal(jax.random.key(1), shape)
    variables = fast.init(jax.random.key(0), x)
    assert jax.tree.structure(variables) == jax.tree.structure(
        jax.eval_shape(lambda k: plain.init(k, x), jax.random.key(0)))

    def loss(model):
        def fn(params):
            logits, _ = model.apply(
                {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
            ) if "batch_stats" in variables else (model.apply({"params": params}, x), None)
            return jnp.sum(jnp.sin(logits))

        return fn

    params = variables["params"]
    np.testing.assert_allclose(loss(fast)(params), loss(plain)(params), rtol=1e-5)
    for got, want in zip(jax.tree.leaves(jax.grad(loss(fast))(params)),
                         jax.tree.leaves(jax.grad(loss(plain))(params))):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
    # Forward mode through the plain model works; through the custom VJP it cannot.
    jax.jvp(loss(plain), (params,), (params,))
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(loss(fast), (params,), (params,))


@pytest.mark.parametrize("padding, strides", [("SAME", 1), ("VALID", 2), (((1, 2), (0, 1)), 1)])
def test_a_users_nnx_conv_takes_the_fast_gradient_conv_and_computes_the_same(padding, strides):
    from flax import nnx

    x = jax.random.normal(jax.random.key(0), (4, 12, 12, 3))
    plain = nnx.Conv(3, 8, (3, 3), strides=strides, padding=padding, rngs=nnx.Rngs(0))
    fast = nnx.Conv(3, 8, (3, 3), strides=strides, padding=padding, rngs=nnx.Rngs(0),
                    conv_general_dilated=loop_conv.conv_general_dilated)

    def loss(kernel, conv):
        return jnp.sum(jnp.sin(conv.conv_general_dilated(
            x, kernel, (strides, strides), padding if isinstance(padding, str) else padding,
            dimension_numbers=jax.lax.conv_dimension_numbers(
                x.shape, kernel.shape, ("NHWC", "HWIO", "NHWC")))))

    np.testing.assert_allclose(fast(x), plain(x), rtol=1e-5, atol=1e-5)
    kernel = plain.kernel.value
    np.testing.assert_allclose(jax.grad(loss)(kernel, fast), jax.grad(loss)(kernel, plain),
                               rtol=1e-4, atol=1e-5)
    jaxpr = str(jax.make_jaxpr(lambda k: loss(k, fast))(kernel))
    assert "custom_vjp" in jaxpr  # the fast path ran, not the fallback


def test_the_fast_conv_falls_back_to_lax_for_what_it_does_not_cover():
    x = jax.random.normal(jax.random.key(0), (2, 9, 9, 4))
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 2, 6))
    dims = jax.lax.conv_dimension_numbers(x.shape, kernel.shape, ("NHWC", "HWIO", "NHWC"))
    grouped = loop_conv.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=dims,
                                             feature_group_count=2)
    expected = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=dims,
                                            feature_group_count=2)
    np.testing.assert_array_equal(grouped, expected)
    x2, k2 = x[..., :2], kernel[:, :, :2]
    dims2 = jax.lax.conv_dimension_numbers(x2.shape, k2.shape, ("NHWC", "HWIO", "NHWC"))
    dilated = loop_conv.conv_general_dilated(x2, k2, (1, 1), "SAME", rhs_dilation=(2, 2),
                                             dimension_numbers=dims2)
    np.testing.assert_array_equal(dilated, jax.lax.conv_general_dilated(
        x2, k2, (1, 1), "SAME", rhs_dilation=(2, 2), dimension_numbers=dims2))
