"""VGG with BatchNorm in the CIFAR form used by the FORCE paper.

Differences from ImageNet VGG, following the paper's reference code: no
max-pool after the last stage, global average pooling instead of the large
fully connected head, and a single dense classifier. VGG-19 on CIFAR-10 then
has exactly 20,024,000 prunable weights (conv kernels plus the dense kernel).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from force_jax.models.common import (
    Dtype,
    Initializer,
    batch_norm,
    conv,
    dense,
    global_average_pool,
    kaiming_normal,
    logits_float32,
    scaled_width,
)
from force_jax.models.kernels import DEFAULT_OPS, Ops

# Output channels of the 3x3 convs, one tuple per stage (configs A, B, D, E of
# Simonyan & Zisserman). A 2x2 max-pool separates consecutive stages.
VGG_STAGES: dict[int, tuple[tuple[int, ...], ...]] = {
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: (
        (64, 64),
        (128, 128),
        (256, 256, 256, 256),
        (512, 512, 512, 512),
        (512, 512, 512, 512),
    ),
}


class VGG(nn.Module):
    """VGG-{11,13,16,19} with BatchNorm for small images (CIFAR form).

    Every conv is 3x3, padded to keep the spatial size, has no bias (the
    BatchNorm after it would cancel one) and is followed by BatchNorm and ReLU.

    Attributes:
      depth: One of 11, 13, 16, 19.
      num_classes: Number of output logits.
      width_multiplier: Scales every conv's channel count (rounded, at least
        1), e.g. 0.125 for a VGG small enough for CPU tests.
      dtype: Computation dtype; parameters are always float32.
      kernel_init: Initializer for conv and dense kernels (Kaiming normal, fan_in).
      ops: How convs and pools are computed (:mod:`force_jax.models.kernels`).
    """

    depth: int
    num_classes: int
    width_multiplier: float = 1.0
    dtype: Dtype = jnp.float32
    kernel_init: Initializer = kaiming_normal()
    ops: Ops = DEFAULT_OPS

    def stage_channels(self) -> tuple[tuple[int, ...], ...]:
        """Looks up the stage configuration for ``depth``.

        Returns:
          The channel tuples of each stage, before width scaling.

        Raises:
          ValueError: If ``depth`` is not a supported VGG depth.
        """
        if self.depth not in VGG_STAGES:
            raise ValueError(f"VGG depth must be one of {sorted(VGG_STAGES)}, got {self.depth}.")
        return VGG_STAGES[self.depth]

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Computes logits.

        Args:
          x: NHWC images, e.g. ``(batch, 32, 32, 3)``. Spatial size must be at
            least 16 so the four max-pools leave a non-empty map.
          train: Use batch statistics in BatchNorm (then pass
            ``mutable=["batch_stats"]`` to ``apply``).

        Returns:
          Float32 logits of shape ``(batch, num_classes)``.
        """
        stages = self.stage_channels()
        layer = 0
        for stage_index, stage in enumerate(stages):
            if stage_index > 0:
                x = self.ops.max_pool(x, 2)
            for channels in stage:
                x = self._conv_bn_relu(
                    x, scaled_width(channels, self.width_multiplier), layer, train
                )
                layer += 1
        # On 32x32 inputs the map is 2x2 here and this equals the reference
        # code's AvgPool2d(2); the global form also accepts 28x28 inputs.
        x = global_average_pool(x)
        x = dense(
            self.num_classes, dtype=self.dtype, kernel_init=self.kernel_init, name="classifier"
        )(x)
        return logits_float32(x)

    def _conv_bn_relu(self, x: jax.Array, features: int, layer: int, train: bool) -> jax.Array:
        """Applies one 3x3 conv, BatchNorm and ReLU (called from the compact method)."""
        x = conv(features, 3, dtype=self.dtype, kernel_init=self.kernel_init, ops=self.ops,
                 name=f"conv_{layer}")(x)
        x = batch_norm(train, dtype=self.dtype, name=f"bn_{layer}")(x)
        return nn.relu(x)
