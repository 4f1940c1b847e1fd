"""LeNet-300-100: the fully connected baseline of the pruning-at-init papers."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from force_jax.models.common import Dtype, Initializer, dense, kaiming_normal, logits_float32


class MLP(nn.Module):
    """Multi-layer perceptron with ReLU activations (LeNet-300-100 by default).

    The input is flattened, so images of any shape (e.g. 28x28x1 MNIST) work.
    With 784 inputs and 10 classes it has 266,200 prunable kernel weights.

    Attributes:
      num_classes: Number of output logits.
      hidden: Widths of the hidden layers.
      dtype: Computation dtype; parameters are always float32.
      kernel_init: Initializer for every dense kernel (Kaiming normal, fan_in).
    """

    num_classes: int
    hidden: Sequence[int] = (300, 100)
    dtype: Dtype = jnp.float32
    kernel_init: Initializer = kaiming_normal()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Computes logits.

        Args:
          x: Inputs of shape ``(batch, ...)``; everything after the batch axis
            is flattened.
          train: Unused (no BatchNorm or dropout); kept so all models share
            one call signature.

        Returns:
          Float32 logits of shape ``(batch, num_classes)``.
        """
        del train
        x = x.reshape((x.shape[0], -1))
        for i, width in enumerate(self.hidden):
            x = dense(width, dtype=self.dtype, kernel_init=self.kernel_init, name=f"dense_{i}")(x)
            x = nn.relu(x)
        x = dense(
            self.num_classes, dtype=self.dtype, kernel_init=self.kernel_init, name="classifier"
        )(x)
        return logits_float32(x)
