"""How far a VGG's forward pass lies from the kinks of its gradient, for numerics tests.

The gradient of a ReLU network with max-pooling is discontinuous: where a
ReLU's input lies within float rounding of zero, or the top two inputs of a
pooling window lie within rounding of each other, any change of rounding (a
compiler option, another CPU's kernels, another summation order) can switch
the branch and route a whole upstream gradient elsewhere. Measured on VGG-11
x0.125 (docs/performance.md, "Compiler options"): one ReLU input at -3.5e-7
moved plain jax.jit's gradient by 0.2 % of its largest entry when nudged by
1e-6. A test that compares two compiled programs to 1e-5 is therefore only
meaningful on a problem whose margin, as measured here, is well above
rounding; the tests assert it of their problem.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def _pool_gaps(activations: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 of every 2x2 window whose maximum is positive."""
    n, h, w, c = activations.shape
    windows = activations[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
    windows = np.sort(windows.transpose(0, 1, 3, 5, 2, 4).reshape(-1, 4), axis=1)
    positive = windows[:, -1] > 0
    return windows[positive, -1] - windows[positive, -2]


def _relu_margin(z: np.ndarray) -> float:
    """min |z| over the channels that are not identically zero.

    A channel whose conv kernel is wholly pruned is exactly zero in every
    program (0 - 0 times anything), so it is no kink that rounding can cross.
    """
    live = np.any(z != 0, axis=tuple(range(z.ndim - 1)))
    return float(np.min(np.abs(z[..., live]))) if live.any() else np.inf


def vgg_kink_margin(model: nn.Module, variables: dict, params: dict, images: jax.Array) -> float:
    """The smallest |ReLU input| and pooling top-2 gap of a VGG's forward pass (train mode).

    Args:
      model: a `force_jax.models.VGG`.
      variables: its variables (batch statistics are not used: train mode).
      params: the params to evaluate at (e.g. masked).
      images: the batch.

    Returns:
      The margin: min over every BatchNorm output of |z| (channels that are
      identically zero left out), and over every
      pooling window with a positive maximum of its top-1 minus top-2 input.
    """
    def forward(variables):  # one compiled program: op by op, a VGG takes half a minute
        return model.apply(
            variables, images, train=True, mutable=["batch_stats", "intermediates"],
            capture_intermediates=lambda module, _: isinstance(module, nn.BatchNorm))

    _, state = jax.jit(forward)({**variables, "params": params})
    found = state["intermediates"]
    outputs = [np.asarray(found[f"bn_{i}"]["__call__"][0]) for i in range(len(found))]
    margin = min(_relu_margin(z) for z in outputs)
    last_of_stage = np.cumsum([len(stage) for stage in model.stage_channels()]) - 1
    for layer in last_of_stage[:-1]:  # a pool follows every stage but the last
        gaps = _pool_gaps(np.maximum(outputs[layer], 0.0))
        if gaps.size:
            margin = min(margin, float(gaps.min()))
    return margin


def masked(params: dict, mask: dict) -> dict:
    """theta * m over a params tree."""
    return jax.tree.map(lambda p, m: p * jnp.asarray(m, p.dtype), params, mask)
