"""Non-overlapping max-pooling written with strided slices, fast to differentiate.

``flax.linen.max_pool`` is a ``lax.reduce_window``; its gradient is a
``select_and_scatter``, which XLA:CPU runs element by element, many times
slower than strided slices (``benchmarks/layer_bench.py`` measures both). VGG
pools four times and LeNet-5 twice per forward pass, so every score gradient
paid it.

:func:`max_pool` computes the same pooling (window equal to stride, "VALID"
padding) as the elementwise maximum of the ``k * k`` strided taps of the map.
Its gradient is routed, as ``select_and_scatter``'s and PyTorch's are, to the
*first* maximal element of each window in row-major window order, never split
between ties (which ``jnp.maximum``'s own gradient would do, and which happens
in practice: after a ReLU many windows are all zeros). The selection is a
one-hot mask under ``stop_gradient``, so the function is plain ``jnp``: it
supports forward mode and every order of differentiation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def max_pool(x: jax.Array, window: int) -> jax.Array:
    """Max-pools an NHWC map over ``window x window`` blocks with stride ``window``.

    Equals ``flax.linen.max_pool(x, (window, window), strides=(window,
    window))`` ("VALID": trailing rows and columns that do not fill a block
    are dropped), in value and in gradient.

    Args:
      x: Array of shape ``(batch, H, W, C)`` with ``H, W >= window``.
      window: Side of the square window, also the stride.

    Returns:
      Array of shape ``(batch, H // window, W // window, C)``.

    Raises:
      ValueError: If ``x`` is not 4-D, ``window < 1`` or the map is smaller
        than one window.
    """
    if x.ndim != 4:
        raise ValueError(f"max_pool takes an NHWC array, got shape {x.shape}")
    if window < 1:
        raise ValueError(f"max_pool window must be >= 1, got {window}")
    out_h, out_w = x.shape[1] // window, x.shape[2] // window
    if out_h < 1 or out_w < 1:
        raise ValueError(f"max_pool window {window} is larger than the map {x.shape[1:3]}")
    # Tap (a, b) holds x[:, window * i + a, window * j + b] for every output (i, j).
    taps = [
        x[:, a : a + window * out_h : window, b : b + window * out_w : window]
        for a in range(window)
        for b in range(window)
    ]
    peak = taps[0]
    for tap in taps[1:]:
        peak = jnp.maximum(peak, tap)
    peak = lax.stop_gradient(peak)
    # Each output takes the first tap that reaches the peak, so the gradient goes
    # to that tap only; a window holding a NaN matches no tap and keeps the NaN.
    taken = jnp.zeros(peak.shape, bool)
    pooled = peak
    for tap in taps:
        first = jnp.logical_and(tap == peak, jnp.logical_not(taken))
        taken = jnp.logical_or(taken, first)
        pooled = jnp.where(first, tap, pooled)
    return pooled
