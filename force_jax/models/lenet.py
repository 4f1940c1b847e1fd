"""LeNet-5 in its Caffe form, the small conv net of the SNIP paper's MNIST results."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from force_jax.models.common import (
    Dtype,
    Initializer,
    conv,
    dense,
    kaiming_normal,
    logits_float32,
)
from force_jax.models.kernels import DEFAULT_OPS, Ops


class LeNet5(nn.Module):
    """LeNet-5-Caffe: two 5x5 conv + max-pool stages, then two dense layers.

    conv 20 (5x5, VALID) -> ReLU -> max-pool 2 -> conv 50 (5x5, VALID) -> ReLU
    -> max-pool 2 -> flatten -> dense 500 -> ReLU -> dense num_classes, all
    with biases. On 28x28x1 inputs with 10 classes it has
    500 + 25,000 + 400,000 + 5,000 = 430,500 prunable kernel weights.

    Attributes:
      num_classes: Number of output logits.
      dtype: Computation dtype; parameters are always float32.
      kernel_init: Initializer for conv and dense kernels (Kaiming normal, fan_in).
      ops: How convs and pools are computed (:mod:`force_jax.models.kernels`).
    """

    num_classes: int
    dtype: Dtype = jnp.float32
    kernel_init: Initializer = kaiming_normal()
    ops: Ops = DEFAULT_OPS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Computes logits.

        Args:
          x: NHWC images, e.g. ``(batch, 28, 28, 1)``.
          train: Unused (no BatchNorm or dropout); kept so all models share
            one call signature.

        Returns:
          Float32 logits of shape ``(batch, num_classes)``.
        """
        del train
        for i, features in enumerate((20, 50)):
            # No BatchNorm follows these convs, so they keep their biases (as in Caffe).
            x = conv(
                features,
                5,
                padding="VALID",
                use_bias=True,
                dtype=self.dtype,
                kernel_init=self.kernel_init,
                ops=self.ops,
                name=f"conv_{i}",
            )(x)
            x = nn.relu(x)
            x = self.ops.max_pool(x, 2)
        x = x.reshape((x.shape[0], -1))
        x = dense(500, dtype=self.dtype, kernel_init=self.kernel_init, name="dense_0")(x)
        x = nn.relu(x)
        x = dense(
            self.num_classes, dtype=self.dtype, kernel_init=self.kernel_init, name="classifier"
        )(x)
        return logits_float32(x)
