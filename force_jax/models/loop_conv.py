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
of a loop, runs on the fast kernels. The input gradient slides whichever of
the kernel and the output gradient is smaller over the other: a second
derivative (ProsPr's meta-gradient, GraSP's H g) differentiates the
kernel-gradient convolution, whose "kernel" is a whole feature map.
Forward-mode differentiation (`jax.jvp`, `jax.hessian`) is not defined
through a custom VJP: models whose
``ops`` allow forward mode (:class:`force_jax.models.kernels.Ops`) use the
plain convolution instead.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

_CANONICAL = ("NHWC", "HWIO", "NHWC")


Pad = tuple[tuple[int, int], tuple[int, int]]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(
    x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding: Pad,
    dilation: tuple[int, int],
) -> jax.Array:
    """Canonical conv: y[i] = sum_p xpad[s * i + d * p] @ kernel[p] per spatial axis."""
    return lax.conv_general_dilated(
        x, kernel, strides, padding, rhs_dilation=dilation, dimension_numbers=_CANONICAL
    )


def _conv_fwd(x, kernel, strides, padding, dilation):
    return _conv(x, kernel, strides, padding, dilation), (x, kernel)


def _input_gradient_by_output(x_shape, kernel, dy, strides, padding):
    """The input gradient with dy as the sliding window: for a kernel larger than the output.

    dx[n, j, ci] = sum over i, co of dy[n, i, co] * kernel[j + low - s * i, ci, co]
    (zero outside the kernel), without dilation: a correlation of the kernel
    (channels ci as batch, co as features, zero-padded) with the flipped dy
    (dilated by the stride) as the window. Its cost grows with dy's area
    instead of the kernel's, which is what a kernel-gradient convolution's
    own derivative (a "kernel" as large as a feature map) needs.
    """
    lhs = kernel.transpose(2, 0, 1, 3)  # (Cin, kh, kw, Cout)
    rhs = jnp.flip(dy, (1, 2)).transpose(1, 2, 3, 0)  # (Ho, Wo, Cout, N)
    pads = [(0, 0, 0)]
    for size, out, k, s, (low, _high) in zip(x_shape[1:3], dy.shape[1:3], kernel.shape[:2],
                                             strides, padding):
        before = s * (out - 1) - low
        pads.append((before, size + s * (out - 1) - k - before, 0))
    pads.append((0, 0, 0))
    padded = lax.pad(lhs, jnp.zeros((), lhs.dtype), pads)  # negative pads crop
    dx = _conv(padded, rhs, (1, 1), ((0, 0), (0, 0)), strides)  # (Cin, H, W, N)
    return dx.transpose(3, 1, 2, 0)


def _conv_bwd(strides, padding, dilation, residuals, dy):
    x, kernel = residuals
    kh, kw = kernel.shape[:2]
    if dilation == (1, 1) and kh * kw > dy.shape[1] * dy.shape[2]:
        dx = _input_gradient_by_output(x.shape, kernel, dy, strides, padding)
        return dx.astype(x.dtype), _kernel_gradient(x, dy, kh, kw, strides, padding,
                                                    dilation).astype(kernel.dtype)
    # Input gradient: dx[j] = sum over s * i + d * p - low = j of dy[i] @ kernel[p]^T,
    # a correlation of dy (spread by the stride and padded, or cropped, to reach
    # every input pixel) with the flipped kernel whose in and out channels swap.
    pads = [(0, 0, 0)]
    for size, out, k, s, d, (low, _high) in zip(
        x.shape[1:3], dy.shape[1:3], (kh, kw), strides, dilation, padding
    ):
        pads.append((d * (k - 1) - low, size + low - 1 - s * (out - 1), s - 1))
    pads.append((0, 0, 0))
    spread = lax.pad(dy, jnp.zeros((), dy.dtype), pads)
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    dx = _conv(spread, flipped, (1, 1), ((0, 0), (0, 0)), dilation)
    dk = _kernel_gradient(x, dy, kh, kw, strides, padding, dilation)
    return dx.astype(x.dtype), dk.astype(kernel.dtype)


def _kernel_gradient(x, dy, kh, kw, strides, padding, dilation):
    """dk[p] = sum_i xpad[s * i + d * p] dy[i], summed over the batch.

    A conv of x with channels as batch and batch as features, by dy as the
    kernel. The padding stays in the conv window: XLA:CPU runs this conv
    2-3x slower on an explicitly padded copy of x.
    """
    dk = _conv(x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), dilation, padding, strides)
    return dk[:, :kh, :kw].transpose(1, 2, 0, 3)


_conv.defvjp(_conv_fwd, _conv_bwd)


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
      padding: ((top, bottom), (left, right)) zero padding, each >= 0.

    Returns:
      (batch, Ho, Wo, Cout), as ``lax.conv_general_dilated(x, kernel, strides,
      padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))``.

    Raises:
      ValueError: on negative padding.
    """
    pads = tuple((int(low), int(high)) for low, high in padding)
    if any(p < 0 for pair in pads for p in pair):
        raise ValueError(f"conv2d takes padding >= 0, got {pads}")
    return _conv(x, kernel, tuple(int(s) for s in strides), pads, (1, 1))


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: str | Sequence[tuple[int, int]], lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count: int = 1,
                         precision=None, **kwargs) -> jax.Array:
    """`lax.conv_general_dilated` through `conv2d` where it applies, for a model of your own.

    Pass it to a Flax conv (``nnx.Conv(..., conv_general_dilated=conv_general_dilated)``
    or the Linen ``nn.Conv`` attribute of the same name): a 2-D NHWC/HWIO
    convolution without dilation or groups then differentiates fast inside
    the pruning schedule's loop; any other convolution goes to `lax` as given.

    Args:
      lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
      dimension_numbers, feature_group_count, precision: as for
        `lax.conv_general_dilated`.
      **kwargs: other `lax.conv_general_dilated` arguments (they send the
        call to `lax`).

    Returns:
      The convolution, equal to `lax.conv_general_dilated`'s.
    """
    canonical = (lhs.ndim == 4 and rhs.ndim == 4 and dimension_numbers is not None
                 and lax.conv_dimension_numbers(lhs.shape, rhs.shape, _CANONICAL)
                 == lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers))
    undilated = all(d in (None, 1) for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
    extra = {k: v for k, v in kwargs.items() if v is not None}
    if not (canonical and undilated and feature_group_count == 1 and not extra
            and precision is None):
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count, precision=precision, **kwargs)
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
    return conv2d(lhs, rhs, window_strides, padding)
