"""Which conv and pooling kernels a model uses, chosen per backend.

Three exact rewrites in :mod:`force_jax.models` exist because XLA:CPU runs the
plain ops slowly on the shapes of pruning at initialisation, as measured on CPU
(``benchmarks/layer_bench.py``): stride-1 convs over maps of at most four
pixels as one matmul (:func:`force_jax.models.fast_conv.small_map_conv`), conv
gradients through a custom VJP that stays fast inside ``lax.scan``
(:mod:`force_jax.models.loop_conv`), and non-overlapping max-pooling through
strided slices (:mod:`force_jax.models.pooling`). Nothing says they help on
GPU or TPU, and the custom VJP rules out forward-mode differentiation, so
every model takes a ``kernels`` attribute:

- ``"auto"`` (the default): the rewrites on CPU, the plain Flax/lax ops on
  any other backend (``jax.default_backend()`` when the model is traced);
- ``"cpu"``: the rewrites on any backend;
- ``"plain"``: ``flax.linen.Conv`` and ``flax.linen.max_pool`` everywhere.

Both kinds compute the same function with the same parameters, in value and
gradient (tests/models_kernels_test.py), so a checkpoint or a mask moves
between them.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from force_jax.models import pooling

KERNELS = ("auto", "cpu", "plain")


def use_cpu_kernels(kernels: str = "auto", backend: str | None = None) -> bool:
    """Whether a model built with ``kernels`` takes the CPU rewrites.

    Args:
      kernels: One of ``KERNELS`` (config.model.kernels).
      backend: Platform the model runs on ("cpu", "gpu", "tpu"); None means
        ``jax.default_backend()``. Only read for ``"auto"``.

    Returns:
      True for "cpu", False for "plain"; for "auto", whether the backend is CPU.

    Raises:
      ValueError: naming config.model.kernels, for a value outside ``KERNELS``.
    """
    if kernels not in KERNELS:
        raise ValueError(f"config.model.kernels (a model's `kernels`) is {kernels!r}; "
                         f"expected one of {', '.join(KERNELS)}")
    if kernels == "auto":
        return (backend or jax.default_backend()) == "cpu"
    return kernels == "cpu"


def max_pool(x: jax.Array, window: int, kernels: str = "auto") -> jax.Array:
    """Non-overlapping ``window x window`` max-pooling ("VALID") of an NHWC map.

    Args:
      x: Array of shape ``(batch, H, W, C)``.
      window: Side of the square window, also the stride.
      kernels: One of ``KERNELS``: strided slices
        (:func:`force_jax.models.pooling.max_pool`) where it says CPU,
        ``flax.linen.max_pool`` otherwise.

    Returns:
      Array of shape ``(batch, H // window, W // window, C)``.
    """
    if use_cpu_kernels(kernels):
        return pooling.max_pool(x, window)
    return nn.max_pool(x, (window, window), strides=(window, window), padding="VALID")
