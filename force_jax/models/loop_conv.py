"""A 2-D convolution whose gradients stay fast inside XLA:CPU loops.

XLA:CPU runs a convolution through its fast library kernels only when the
dimension numbers are canonical (input NHWC, kernel HWIO, output NHWC).
`lax.conv_general_dilated`'s gradients are convolutions with other dimension
numbers (the kernel gradient contracts over the batch axis); XLA:CPU rewrites
them into canonical form with explicit transposes, but only in the top-level
computation of a program. Inside a `while` loop (a `lax.scan` or `fori_loop`
body, which is where `prune` computes every score gradient) they are left as
they are and run through a generic emitter, measured here 4 to 25 times
slower than the canonical form.

`conv2d` computes the same convolution as `lax.conv_general_dilated`, with a
custom VJP whose two gradients are themselves canonical convolutions on
explicitly transposed operands, so every derivative of any order, in or out
of a loop, runs on the fast kernels. Forward-mode differentiation (`jax.jvp`,
`jax.hessian`) is not defined through a custom VJP: models built with
``fast_loop_grad=False`` use the plain convolution instead.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

_CANONICAL = ("NHWC", "HWIO", "NHWC")


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _valid_conv(
    x: jax.Array, kernel: jax.Array, strides: tuple[int, int], dilation: tuple[int, int]
) -> jax.Array:
    """Unpadded canonical conv: y[i] = sum_p x[s * i + d * p] @ kernel[p] per spatial axis."""
    return lax.conv_general_dilated(
        x, kernel, strides, "VALID", rhs_dilation=dilation, dimension_numbers=_CANONICAL
    )


def _valid_conv_fwd(x, kernel, strides, dilation):
    return _valid_conv(x, kernel, strides, dilation), (x, kernel)


def _valid_conv_bwd(strides, dilation, residuals, dy):
    x, kernel = residuals
    kh, kw = kernel.shape[:2]
    out_h, out_w = dy.shape[1:3]
    # Input gradient: dx[j] = sum over s * i + d * p = j of dy[i] @ kernel[p]^T, a
    # correlation of dy (spread by the stride, zero-padded by the kernel's reach)
    # with the flipped kernel whose in and out channels are swapped.
    pads = [(0, 0, 0)]
    for size, out, k, s, d in zip(x.shape[1:3], (out_h, out_w), (kh, kw), strides, dilation):
        pads.append((d * (k - 1), size - 1 - s * (out - 1), s - 1))
    pads.append((0, 0, 0))
    spread = lax.pad(dy, jnp.zeros((), dy.dtype), pads)
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    dx = _valid_conv(spread, flipped, (1, 1), dilation)
    # Kernel gradient: dk[p] = sum_i x[s * i + d * p] dy[i], summed over the batch:
    # a conv of x with channels as batch and batch as features by dy as the kernel.
    dk = _valid_conv(x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), dilation, strides)
    dk = dk[:, :kh, :kw].transpose(1, 2, 0, 3)
    return dx.astype(x.dtype), dk.astype(kernel.dtype)


_valid_conv.defvjp(_valid_conv_fwd, _valid_conv_bwd)


def conv2d(
    x: jax.Array,
    kernel: jax.Array,
    strides: Sequence[int],
    padding: Sequence[tuple[int, int]],
) -> jax.Array:
    """A 2-D NHWC convolution equal to `lax.conv_general_dilated`, fast to differentiate.

    Args:
      x: input of shape (batch, H, W, Cin).
      kernel: HWIO kernel of shape (kh, kw, Cin, Cout).
      strides: (stride_h, stride_w).
      padding: ((top, bottom), (left, right)) zero padding.

    Returns:
      (batch, Ho, Wo, Cout), as ``lax.conv_general_dilated(x, kernel, strides,
      padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))``.
    """
    (top, bottom), (left, right) = padding
    padded = lax.pad(
        x, jnp.zeros((), x.dtype), ((0, 0, 0), (top, bottom, 0), (left, right, 0), (0, 0, 0))
    )
    return _valid_conv(padded, kernel, tuple(int(s) for s in strides), (1, 1))
