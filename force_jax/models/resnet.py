"""ResNets (He et al. 2016) in CIFAR and ImageNet form.

All convs are bias-free because BatchNorm follows each of them. Whenever a
block changes the spatial size or channel count its shortcut is a projection
(1x1 conv + BatchNorm, "option B"). The last BatchNorm scale in each block
starts at 1, not 0: the paper trains with PyTorch's default initialisation.

ResNet-50 on CIFAR-10 (CIFAR stem) has exactly 23,467,712 prunable weights;
ResNet-50 with the ImageNet stem and 1000 classes has 25,557,032 trainable
parameters, the torchvision number.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

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


def _shortcut(
    module: nn.Module, x: jax.Array, out_features: int, strides: int, train: bool
) -> jax.Array:
    """Returns the residual branch input: identity, or a 1x1 projection if shapes differ.

    Must be called from a block's compact ``__call__`` (``module`` is that block);
    the projection layers are created as its children.
    """
    if strides == 1 and x.shape[-1] == out_features:
        return x
    x = conv(
        out_features,
        1,
        strides=strides,
        dtype=module.dtype,
        kernel_init=module.kernel_init,
        ops=module.ops,
        name="proj_conv",
    )(x)
    return batch_norm(train, dtype=module.dtype, name="proj_bn")(x)


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with a residual connection; output width ``features``.

    Attributes:
      features: Channels of both convs (and of the block output).
      strides: Stride of the first conv (2 halves the spatial size).
      dtype: Computation dtype; parameters are always float32.
      kernel_init: Conv kernel initializer.
      ops: How convs are computed (:mod:`force_jax.models.kernels`).
    """

    features: int
    strides: int = 1
    dtype: Dtype = jnp.float32
    kernel_init: Initializer = kaiming_normal()
    ops: Ops = DEFAULT_OPS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Applies the block.

        Args:
          x: NHWC input.
          train: Use batch statistics in BatchNorm.

        Returns:
          NHWC output with ``features`` channels.
        """
        residual = _shortcut(self, x, self.features, self.strides, train)
        y = conv(
            self.features,
            3,
            strides=self.strides,
            dtype=self.dtype,
            kernel_init=self.kernel_init,
            ops=self.ops,
            name="conv_0",
        )(x)
        y = nn.relu(batch_norm(train, dtype=self.dtype, name="bn_0")(y))
        y = conv(self.features, 3, dtype=self.dtype, kernel_init=self.kernel_init, ops=self.ops,
                 name="conv_1")(y)
        y = batch_norm(train, dtype=self.dtype, name="bn_1")(y)
        return nn.relu(y + residual)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand; output width ``4 * features``.

    The stride sits on the 3x3 conv, as in torchvision ("ResNet v1.5"); the
    parameter count is the same either way, the features are not.

    Attributes:
      features: Channels of the inner convs; the output has ``expansion`` times more.
      strides: Stride of the 3x3 conv.
      dtype: Computation dtype; parameters are always float32.
      kernel_init: Conv kernel initializer.
      ops: How convs are computed (:mod:`force_jax.models.kernels`).
    """

    features: int
    strides: int = 1
    dtype: Dtype = jnp.float32
    kernel_init: Initializer = kaiming_normal()
    ops: Ops = DEFAULT_OPS
    expansion: int = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Applies the block.

        Args:
          x: NHWC input.
          train: Use batch statistics in BatchNorm.

        Returns:
          NHWC output with ``expansion * features`` channels.
        """
        out_features = self.features * self.expansion
        residual = _shortcut(self, x, out_features, self.strides, train)
        y = x
        for i, (features, size, strides) in enumerate(
            ((self.features, 1, 1), (self.features, 3, self.strides), (out_features, 1, 1))
        ):
            y = conv(
                features,
                size,
                strides=strides,
                dtype=self.dtype,
                kernel_init=self.kernel_init,
                ops=self.ops,
                name=f"conv_{i}",
            )(y)
            y = batch_norm(train, dtype=self.dtype, name=f"bn_{i}")(y)
            if i < 2:
                y = nn.relu(y)
        return nn.relu(y + residual)


class ResNet(nn.Module):
    """Residual network: stem, stages of blocks, global average pool, dense classifier.

    Stage ``i`` uses ``widths[i]`` (times ``width_multiplier``) and stride 2 in
    its first block for every stage but the first.

    Attributes:
      num_classes: Number of output logits.
      stage_sizes: Number of blocks in each stage.
      block_cls: ``BasicBlock`` or ``Bottleneck``.
      widths: Base channel count of each stage; the stem uses ``widths[0]``.
      stem: "cifar" (3x3 stride-1 conv, no pooling) or "imagenet" (7x7
        stride-2 conv followed by a 3x3 stride-2 max-pool).
      width_multiplier: Scales every channel count (rounded, at least 1).
      dtype: Computation dtype; parameters are always float32.
      kernel_init: Initializer for conv and dense kernels (Kaiming normal, fan_in).
      ops: How convs are computed (:mod:`force_jax.models.kernels`).
    """

    num_classes: int
    stage_sizes: Sequence[int]
    block_cls: type[nn.Module] = BasicBlock
    widths: Sequence[int] = (64, 128, 256, 512)
    stem: str = "cifar"
    width_multiplier: float = 1.0
    dtype: Dtype = jnp.float32
    kernel_init: Initializer = kaiming_normal()
    ops: Ops = DEFAULT_OPS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Computes logits.

        Args:
          x: NHWC images, e.g. ``(batch, 32, 32, 3)`` or ``(batch, 224, 224, 3)``.
          train: Use batch statistics in BatchNorm (then pass
            ``mutable=["batch_stats"]`` to ``apply``).

        Returns:
          Float32 logits of shape ``(batch, num_classes)``.

        Raises:
          ValueError: If ``stem`` or the stage/width lengths are invalid.
        """
        if len(self.stage_sizes) != len(self.widths):
            raise ValueError(
                f"stage_sizes {tuple(self.stage_sizes)} and widths {tuple(self.widths)} "
                "must have the same length."
            )
        x = self._stem(x, train)
        for stage, (num_blocks, width) in enumerate(
            zip(self.stage_sizes, self.widths, strict=True)
        ):
            for block in range(num_blocks):
                x = self.block_cls(
                    features=scaled_width(width, self.width_multiplier),
                    strides=2 if stage > 0 and block == 0 else 1,
                    dtype=self.dtype,
                    kernel_init=self.kernel_init,
                    ops=self.ops,
                    name=f"stage{stage}_block{block}",
                )(x, train)
        x = global_average_pool(x)
        x = dense(
            self.num_classes, dtype=self.dtype, kernel_init=self.kernel_init, name="classifier"
        )(x)
        return logits_float32(x)

    def _stem(self, x: jax.Array, train: bool) -> jax.Array:
        """Applies the input stem selected by ``self.stem`` (called from the compact method)."""
        features = scaled_width(self.widths[0], self.width_multiplier)
        if self.stem == "cifar":
            kernel_size, strides = 3, 1
        elif self.stem == "imagenet":
            kernel_size, strides = 7, 2
        else:
            raise ValueError(f'stem must be "cifar" or "imagenet", got {self.stem!r}.')
        x = conv(
            features,
            kernel_size,
            strides=strides,
            dtype=self.dtype,
            kernel_init=self.kernel_init,
            ops=self.ops,
            name="stem_conv",
        )(x)
        x = nn.relu(batch_norm(train, dtype=self.dtype, name="stem_bn")(x))
        if self.stem == "imagenet":
            # PyTorch's MaxPool2d(3, 2, padding=1): the padding never wins the max.
            x = nn.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        return x


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock)
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck)
# He et al.'s CIFAR ResNet-110 (6n + 2 layers with n = 18). The original uses
# parameter-free zero-padding shortcuts ("option A"); we use projection
# shortcuts ("option B") at the two down-sampling points, like every other
# ResNet here, which adds two 1x1 convs (16*32 + 32*64 = 2,560 weights) + BN.
ResNet110 = functools.partial(
    ResNet, stage_sizes=(18, 18, 18), block_cls=BasicBlock, widths=(16, 32, 64)
)
