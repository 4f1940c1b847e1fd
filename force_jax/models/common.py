"""Building blocks shared by every model: the initializer, conv, norm and pooling helpers.

The paper's PyTorch code initialises every conv and linear weight with
``kaiming_normal_(mode="fan_in", nonlinearity="relu")``, i.e. an untruncated
normal with variance ``2 / fan_in``. Pruning-at-init scores depend directly on
the initial weights, so that distribution is reproduced exactly here, in one
place, and every model takes it as an overridable ``kernel_init`` attribute.

Each layer kind is built by a small factory function rather than written
inline in the models. That keeps the PyTorch-matching choices (padding,
momentum, epsilon, no conv bias before BatchNorm) in one spot, and lets the
conv implementation be chosen in one place, the model's ``ops``
(:mod:`force_jax.models.kernels`), without touching the models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from force_jax.models.kernels import DEFAULT_OPS, Ops

# jax.nn.initializers.Initializer is a typing Protocol; alias it for the hints below.
Initializer = jax.nn.initializers.Initializer
Dtype = Any

def kaiming_normal() -> Initializer:
    """He/Kaiming normal initializer as used by the paper's PyTorch code.

    Returns:
      An initializer drawing from an *untruncated* normal with variance
      ``2 / fan_in`` (fan_in = product of all but the last axis of the kernel).
    """
    # "normal" (not "truncated_normal") matches torch.nn.init.kaiming_normal_:
    # truncation would shrink the tails that magnitude-style scores look at.
    return nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def scaled_width(channels: int, width_multiplier: float) -> int:
    """Scales a channel count, keeping at least one channel.

    Args:
      channels: Channel count of the full-width model.
      width_multiplier: Factor applied to it (1.0 keeps the reference width).

    Returns:
      ``max(1, round(channels * width_multiplier))``.
    """
    return max(1, int(round(channels * width_multiplier)))


def conv(
    features: int,
    kernel_size: int,
    *,
    strides: int = 1,
    padding: str | Sequence[tuple[int, int]] | None = None,
    use_bias: bool = False,
    dtype: Dtype = jnp.float32,
    kernel_init: Initializer | None = None,
    ops: Ops = DEFAULT_OPS,
    name: str | None = None,
) -> nn.Conv:
    """Creates a square 2-D convolution over NHWC inputs.

    ``ops`` picks the implementation (the CPU rewrites or ``nn.Conv``);
    parameters are those of ``nn.Conv`` either way.

    Must be called inside a ``@nn.compact`` method; the layer then becomes a
    child of that module (named ``name`` or auto-named).

    Args:
      features: Number of output channels.
      kernel_size: Side length of the square kernel.
      strides: Stride in both spatial dimensions.
      padding: Flax padding spec. Defaults to symmetric ``kernel_size // 2`` on
        each side, which is PyTorch's ``padding=k // 2``; it differs from
        "SAME" for strided convs, where XLA would pad more at the end.
      use_bias: Whether to add a bias (off by default: BatchNorm follows).
      dtype: Computation dtype; parameters stay float32.
      kernel_init: Kernel initializer; defaults to :func:`kaiming_normal`.
      ops: The model's kernel choice (:class:`force_jax.models.kernels.Ops`).
      name: Optional submodule name.

    Returns:
      An unbound ``nn.Conv`` ready to be applied to an NHWC array.
    """
    if padding is None:
        pad = kernel_size // 2
        padding = ((pad, pad), (pad, pad))
    return ops.conv(
        features=features,
        kernel_size=(kernel_size, kernel_size),
        strides=(strides, strides),
        padding=padding,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=kernel_init or kaiming_normal(),
        bias_init=nn.initializers.zeros,
        name=name,
    )


def dense(
    features: int,
    *,
    dtype: Dtype = jnp.float32,
    kernel_init: Initializer | None = None,
    name: str | None = None,
) -> nn.Dense:
    """Creates a fully connected layer with a zero-initialised bias.

    Args:
      features: Number of outputs.
      dtype: Computation dtype; parameters stay float32.
      kernel_init: Kernel initializer; defaults to :func:`kaiming_normal`.
      name: Optional submodule name.

    Returns:
      An unbound ``nn.Dense``.
    """
    return nn.Dense(
        features=features,
        use_bias=True,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=kernel_init or kaiming_normal(),
        bias_init=nn.initializers.zeros,
        name=name,
    )


def batch_norm(train: bool, *, dtype: Dtype = jnp.float32, name: str | None = None) -> nn.BatchNorm:
    """Creates a BatchNorm layer with PyTorch's default hyper-parameters.

    Args:
      train: If True normalise with batch statistics (and update running
        averages when ``batch_stats`` is mutable); else use running averages.
      dtype: Computation dtype; parameters and statistics stay float32.
      name: Optional submodule name.

    Returns:
      An unbound ``nn.BatchNorm`` with scale 1 and bias 0 at init.
    """
    # Flax's momentum weighs the old running value, PyTorch's the new batch:
    # flax 0.9 == torch 0.1.
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        dtype=dtype,
        param_dtype=jnp.float32,
        scale_init=nn.initializers.ones,
        bias_init=nn.initializers.zeros,
        name=name,
    )


def global_average_pool(x: jax.Array) -> jax.Array:
    """Averages an NHWC feature map over its spatial dimensions.

    Args:
      x: Array of shape ``(batch, height, width, channels)``.

    Returns:
      Array of shape ``(batch, channels)``.
    """
    return jnp.mean(x, axis=(1, 2))


def logits_float32(x: jax.Array) -> jax.Array:
    """Casts logits to float32 so losses are computed in full precision.

    Args:
      x: Logits in the model's computation dtype.

    Returns:
      The same logits as float32.
    """
    return x.astype(jnp.float32)
