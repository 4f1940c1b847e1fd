"""Exact reformulations of a 2-D conv that are fast on XLA:CPU.

XLA:CPU runs a 3x3 conv over a 2x2 map about 20x slower than over a 4x4 map,
so :class:`Conv` computes stride-1 convs over tiny maps (at most
``SMALL_CONV_MAX_PIXELS`` pixels) as one matmul with a matrix gathered from
the same kernel parameter (:func:`small_map_conv`); and XLA:CPU runs conv
gradients inside a ``lax.scan`` (where ``prune`` computes every score) up to
25x slower than outside one, so the other convs are differentiated through
:func:`force_jax.models.loop_conv.conv2d`. Both equal ``nn.Conv`` to float
rounding, with the same parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from force_jax.models import loop_conv

# Maps of at most this many pixels (2x2, 1x2, 1x1) take the one-matmul conv
# path: on XLA:CPU it is far faster than lax.conv at 2x2, and already slower at 3x3
# (its matrix grows as the square of the pixel count); benchmarks/layer_bench.py.
SMALL_CONV_MAX_PIXELS = 4


def _pair(value: int | Sequence[int] | None) -> tuple[int, ...]:
    """A per-axis tuple from Flax's int-or-sequence convention (None: 1, 1)."""
    if value is None:
        return (1, 1)
    return (value, value) if isinstance(value, int) else tuple(value)


def small_map_conv(
    x: jax.Array,
    kernel: jax.Array,
    padding: Sequence[tuple[int, int]],
    *,
    precision: jax.lax.PrecisionLike = None,
) -> jax.Array:
    """A stride-1 2-D conv over a tiny NHWC map, computed as one matmul.

    Output pixel (i, j) is ``sum over (p, q) of x[:, p, q] @ kernel[p - i + pt,
    q - j + pl]`` (pt, pl: top and left padding; out-of-range taps are zero).
    The ``(H * W * Cin, Ho * Wo * Cout)`` matrix of that sum is stacked from
    static slices of the zero-padded ``kernel``, so the result equals
    ``lax.conv_general_dilated`` to float rounding and the kernel gradient is
    the sum of the matrix gradient's blocks over the same taps. It pays off on
    XLA:CPU for maps of a few pixels, where the native conv is very slow.

    Args:
      x: Input of shape ``(batch, H, W, Cin)``.
      kernel: HWIO kernel of shape ``(kh, kw, Cin, Cout)``.
      padding: ``((top, bottom), (left, right))`` zero padding.
      precision: Matmul precision.

    Returns:
      Array of shape ``(batch, Ho, Wo, Cout)`` with ``Ho = H + top + bottom -
      kh + 1`` (likewise ``Wo``).
    """
    batch, height, width, in_features = x.shape
    kh, kw, _, out_features = kernel.shape
    (top, bottom), (left, right) = padding
    out_height = height + top + bottom - kh + 1
    out_width = width + left + right - kw + 1
    # Output (i, j) reads the contiguous taps [top - i, top - i + H) x [left - j,
    # left - j + W); zero-pad the kernel so every such window is in range.
    pad_top = max(0, out_height - 1 - top)
    pad_left = max(0, out_width - 1 - left)
    pad_bottom = max(0, top + height - kh)
    pad_right = max(0, left + width - kw)
    padded = jnp.pad(kernel, ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0), (0, 0)))
    # Static slices (whose gradient is a cheap pad) rather than a gather.
    windows = [
        padded[
            pad_top + top - i : pad_top + top - i + height,
            pad_left + left - j : pad_left + left - j + width,
        ]
        for i in range(out_height)
        for j in range(out_width)
    ]
    matrix = jnp.stack(windows, axis=3)  # (H, W, Cin, Ho * Wo, Cout)
    matrix = matrix.reshape(height * width * in_features, out_height * out_width * out_features)
    y = jnp.dot(x.reshape(batch, -1), matrix, precision=precision)
    return y.reshape(batch, out_height, out_width, out_features)


class Conv(nn.Conv):
    """``nn.Conv`` with two exact reformulations that are fast on XLA:CPU.

    Parameters (``kernel``, ``bias``) have the names, shapes and initialisers
    of ``nn.Conv``; only the computation differs, and only for a
    single-batch-axis NHWC input with explicit, "SAME" or "VALID" padding and
    default dilations, feature groups and ``mask``:

    - stride-1 convs over maps of at most ``max_matmul_pixels`` pixels run as
      one matmul (:func:`small_map_conv`);
    - the others run through :func:`force_jax.models.loop_conv.conv2d`, whose
      gradients stay fast inside ``lax.scan`` (where ``prune`` computes its
      scores), unless ``fast_loop_grad`` is False.

    Anything else runs ``nn.Conv`` unchanged. Models do not build this class
    directly: :class:`force_jax.models.kernels.Ops` decides where it is used
    (on CPU by default) and sets ``fast_loop_grad``.

    Attributes:
      max_matmul_pixels: Largest ``H * W`` routed to the matmul; None reads
        the module constant ``SMALL_CONV_MAX_PIXELS`` at trace time (set it to
        0 to get plain convs everywhere, e.g. for benchmarks).
      fast_loop_grad: Use ``loop_conv.conv2d`` (custom VJP); False allows
        forward-mode differentiation (``Ops.forward_mode``).
    """

    max_matmul_pixels: int | None = None
    fast_loop_grad: bool = True

    def _explicit_padding(self, x: jax.Array) -> tuple[tuple[int, int], ...] | None:
        """Explicit padding pairs when a reformulation applies, else None."""
        kernel_size = self.kernel_size
        if isinstance(kernel_size, int):
            kernel_size = (kernel_size,)
        ones = (1, 1)
        if (
            x.ndim != 4
            or len(kernel_size) != 2
            or len(self._strides()) != 2
            or _pair(self.input_dilation) != ones
            or _pair(self.kernel_dilation) != ones
            or self.feature_group_count != 1
            or self.mask is not None
            or not self.shared_weights
            or self.conv_general_dilated is not None
            or self.conv_general_dilated_cls is not None
        ):
            return None
        padding = self.padding
        if isinstance(padding, str):
            if padding.upper() == "VALID":
                padding = ((0, 0), (0, 0))
            elif padding.upper() == "SAME" and self._strides() == ones:
                padding = tuple(((k - 1) // 2, k // 2) for k in kernel_size)
            else:
                return None
        elif isinstance(padding, int):
            padding = ((padding, padding), (padding, padding))
        pads = tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)
        if len(pads) != 2 or any(p < 0 for pair in pads for p in pair):
            return None
        # Leave empty outputs (padding too small for the kernel) to nn.Conv.
        for size, k, (low, high) in zip(x.shape[1:3], kernel_size, pads):
            if size + low + high - k + 1 < 1:
                return None
        return pads

    def _strides(self) -> tuple[int, ...]:
        return _pair(self.strides)

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        """Applies the convolution to NHWC ``inputs``.

        Args:
          inputs: ``(batch, H, W, Cin)`` array (other ranks go to ``nn.Conv``).

        Returns:
          The convolved map, as ``nn.Conv`` would compute it.
        """
        padding = self._explicit_padding(inputs)
        limit = SMALL_CONV_MAX_PIXELS if self.max_matmul_pixels is None else self.max_matmul_pixels
        small = padding is not None and inputs.shape[1] * inputs.shape[2] <= limit
        small = small and self._strides() == (1, 1)
        fast = self.fast_loop_grad and self.precision is None
        if padding is None or not (small or fast):
            return super().__call__(inputs)
        kh, kw = (self.kernel_size,) * 2 if isinstance(self.kernel_size, int) else self.kernel_size
        kernel = self.param(
            "kernel", self.kernel_init, (kh, kw, inputs.shape[-1], self.features), self.param_dtype
        )
        bias = (
            self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias
            else None
        )
        inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        if small:
            y = small_map_conv(inputs, kernel, padding, precision=self.precision)
        else:
            y = loop_conv.conv2d(inputs, kernel, self._strides(), padding)
        if bias is not None:
            y = y + bias
        return y
