"""PHEW (Patil and Dovrolis, ICML 2021): a mask built from biased random walks.

Data-free: PHEW keeps the weights that random walks through the network
traverse, from the inputs to the outputs and back, each step choosing the
next unit with probability proportional to the magnitude of the initial
weights. The prunable layers are walked as a chain, in the order the network
runs them (the probe's `layer_order`, `force_jax.network_probe`): a unit is a
channel of a convolution or a neuron of a dense layer.

- A forward walk starts at an input channel (in turn: 0, 1, ... of the
  first layer) and, at each layer, from unit i draws the next unit o with
  probability A[i, o] / sum_o' A[i, o'], where A[i, o] is the sum of |w| over
  the kernel's taps from i to o, then one tap of that kernel with probability
  |w| / A[i, o]. That one tap is kept.
- A backward walk starts at an output unit (in turn over the last layer's
  outputs) and goes down the layers the same way, drawing the input unit i
  of o with probability A[i, o] / sum_i' A[i', o].
- From a convolution to a dense layer that flattens its S positions per
  channel, a forward walk enters at a uniformly drawn position of its
  channel (Flax flattens channel-last: dense input s * C + c), and a
  backward walk leaves to that input's channel.
- Walks alternate forward, backward, forward, ... (the official order).

The mask is the union of the walks until it holds the step's keep count.
Here the score of a weight is the order in which a walk first reached it
(earlier is higher; never reached is lowest), so the step's exact top-k keeps
exactly floor((1 - s) N) weights, in the order the walks added them; the
official code stops after the walk that reaches its count and keeps that
walk's excess (up to one walk's length). With the layer-wise scope the walks
go on until every layer holds its own count.

Read from the official code (ShreyasMalakarjunPatil/PHEW,
`Prune/phew_utils.py`). Its random streams (numpy's and Python's) are never
seeded, so its masks differ between runs of one seed; here a key gives one
mask. Its forward walk, at a block with a 1x1 projection shortcut, skips the
convolution before that block (an off-by-one); this module walks chains
only and refuses a network whose consecutive layers do not chain (a
projection shortcut breaks the chain), so that case does not arise. Walks
are drawn in chunks of `walks_per_chunk` forward-and-backward pairs, all
from the same fixed probabilities (PHEW's walks are independent), by the
inverse of each row's cumulative distribution under a uniform draw:
`walk_uniforms` gives the draws of a chunk, so a reference implementation
fed them takes the same walks.

The "invert" sanity check of PHEW is its own: walks biased towards the
smallest magnitudes (probabilities proportional to 1 / |w|, the paper's
"inverse" ablation), not a ranking turned over.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from force_jax.core import density
from force_jax.core import masks as masks_lib
from force_jax.core import scores as scores_lib

PyTree = Any
WEIGHTINGS = ("magnitude", "inverse")
_NEVER = np.iinfo(np.int32).max
# The score of a weight no walk reached: below every visit, finite (-inf marks pruned weights).
_UNVISITED = float(-np.finfo(np.float32).max)
# Draws per layer of a walk: the next unit, the tap, the position at a flatten.
_UNIT, _TAP, _POSITION = 0, 1, 2


class Layer(NamedTuple):
    """One prunable layer of the chain, as the walks see it.

    Attributes:
      leaf: the index of its leaf among the params' leaves.
      taps: the kernel's spatial taps (1 for a dense layer).
      inputs: input units (channels or neurons).
      outputs: output units.
      positions: S, the positions per channel of a flatten before this layer
        (1 where there is none).
    """

    leaf: int
    taps: int
    inputs: int
    outputs: int
    positions: int


def chain(params: PyTree, mask: PyTree, order: tuple[str, ...] = ()) -> list[Layer]:
    """The prunable layers in walking order, checked to form a chain.

    Args:
      params: the parameters.
      mask: a mask of them (its full-shape leaves are the prunable ones).
      order: leaf names (`masks.path_name`) from input to output; the
        prunable leaves are taken in this order (those it does not name
        after, by name).

    Returns:
      The `Layer`s from input to output.

    Raises:
      ValueError: naming the layers whose units do not connect.
    """
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    flags = [masks_lib.is_prunable_leaf(m) for m in jax.tree.leaves(mask)]
    rank = {name: i for i, name in enumerate(order)}
    named = sorted(((masks_lib.path_name(path), i, jnp.shape(x)) for i, ((path, x), f)
                    in enumerate(zip(flat, flags)) if f),
                   key=lambda t: (rank.get(t[0], len(rank)), density.natural_key(t[0])))
    layers: list[Layer] = []
    previous = None
    for name, index, shape in named:
        taps = math.prod(shape[:-2])
        inputs, outputs = shape[-2], shape[-1]
        positions = 1
        if previous is not None:
            prev_name, prev_shape = previous
            if len(prev_shape) > 2 and len(shape) == 2 and inputs % prev_shape[-1] == 0:
                positions = inputs // prev_shape[-1]
            elif inputs != prev_shape[-1] or (len(prev_shape) == 2 and len(shape) > 2):
                raise ValueError(
                    f"phew walks the prunable layers as a chain from input to output, but "
                    f"{name} {tuple(shape)} does not take the outputs of {prev_name} "
                    f"{tuple(prev_shape)}: a network with branches or projection shortcuts is "
                    "not a chain")
        layers.append(Layer(index, taps, inputs, outputs, positions))
        previous = (name, shape)
    if not layers:
        raise ValueError("phew needs prunable layers to walk through")
    return layers


def walk_uniforms(key: jax.Array, chunk: jax.Array | int, num_layers: int,
                  walks_per_chunk: int) -> jax.Array:
    """The uniform draws of one chunk of walks.

    Args:
      key: the step's key.
      chunk: the chunk's index.
      num_layers: L.
      walks_per_chunk: B, forward-and-backward pairs per chunk.

    Returns:
      float32 (2, L, 3, B): [forward or backward, layer (in the chain's
      order), draw (unit, tap, position), walk].
    """
    return jax.random.uniform(jax.random.fold_in(key, chunk),
                              (2, num_layers, 3, walks_per_chunk), jnp.float32)


def _draw(weights: jax.Array, u: jax.Array) -> jax.Array:
    """Row-wise inverse-CDF draw: index j of row b with probability w[b, j] / sum_j w[b, j].

    A row of zeros draws uniformly, as the official code does.
    """
    n = weights.shape[-1]
    cdf = jnp.cumsum(weights, axis=-1)
    total = cdf[..., -1]
    picked = jnp.sum(cdf <= (u * total)[..., None], axis=-1)
    uniform = jnp.floor(u * n).astype(jnp.int32)
    return jnp.minimum(jnp.where(total > 0, picked, uniform), n - 1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class PhewScore:
    """The PHEW "score" (the order of the walks' first visits), with its options.

    Attributes:
      weighting: "magnitude" (PHEW: probabilities proportional to |w|) or
        "inverse" (proportional to 1 / |w|: its "invert" sanity check).
      walks_per_chunk: forward-and-backward walk pairs drawn together (> 0);
        the mask does not depend on it beyond the order of the keys' draws.
      max_chunks_per_weight: the walks stop after this many chunks per
        (2 * walks_per_chunk) prunable weights even short of the count
        (a bound, reached only when walks cannot reach enough weights).
    """

    weighting: str = "magnitude"
    walks_per_chunk: int = 256
    max_chunks_per_weight: int = 64

    def __post_init__(self):
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"phew weighting={self.weighting!r}; expected one of {WEIGHTINGS}")
        if self.walks_per_chunk < 1 or self.max_chunks_per_weight < 1:
            raise ValueError("phew walks_per_chunk and max_chunks_per_weight must be >= 1")

    def inverted(self) -> PhewScore:
        """PHEW's own inversion: walks biased towards the smallest magnitudes."""
        return dataclasses.replace(
            self, weighting="inverse" if self.weighting == "magnitude" else "magnitude")

    def magnitudes(self, params: PyTree, mask: PyTree, layers: list[Layer]) -> list[jax.Array]:
        """Each layer's walk weights a[t, i, o] (|w|, or 1 / |w|, on kept weights)."""
        leaves = jax.tree.leaves(params)
        masks = jax.tree.leaves(mask)
        out = []
        for layer in layers:
            w = jnp.abs(leaves[layer.leaf].astype(jnp.float32))
            if self.weighting == "inverse":
                w = jnp.where(w > 0, 1.0 / jnp.where(w > 0, w, 1.0), 0.0)
            w = jnp.where(masks[layer.leaf], w, 0.0)
            out.append(w.reshape(layer.taps, layer.inputs, layer.outputs))
        return out

    def first_visits(self, params: PyTree, mask: PyTree, count: jax.Array,
                     key: jax.Array, order: tuple[str, ...] = ()) -> list[jax.Array]:
        """When the walks first reached each weight: t = walk * L + step, or int32 max.

        Args:
          params: theta_0.
          mask: the current mask (walks use only its kept weights).
          count: the keep count (a scalar), or (L,) per-layer counts in the
            params' leaf order of prunable leaves.
          key: the step's key.
          order: the layers' order (`chain`).

        Returns:
          int32 arrays shaped (taps, inputs, outputs), one per layer of the
          chain (`chain`'s order).
        """
        layers = chain(params, mask, order)
        mags = self.magnitudes(params, mask, layers)
        kept = jax.tree.leaves(mask)
        lmask = [jnp.broadcast_to(kept[layer.leaf], jnp.shape(jax.tree.leaves(params)[
            layer.leaf])).reshape(layer.taps, layer.inputs, layer.outputs) for layer in layers]
        num_layers, walks = len(layers), self.walks_per_chunk
        # Per-layer counts arrive in leaf order; the walks go in chain order.
        leaf_rank = {layer.leaf: r for r, layer in
                     enumerate(sorted(layers, key=lambda layer: layer.leaf))}
        count = jnp.asarray(count)
        total_weights = sum(int(np.prod(m.shape)) for m in mags)
        max_chunks = self.max_chunks_per_weight * max(1, -(-total_weights // (2 * walks)))

        def visited(times):
            return [masks_lib.count_true((t != _NEVER) & m) for t, m in zip(times, lmask)]

        def done(times):
            counts = visited(times)
            if count.ndim == 0:
                return sum(counts) >= count
            return jnp.all(jnp.stack([counts[r] >= count[leaf_rank[layer.leaf]]
                                      for r, layer in enumerate(layers)]))

        def chunk_walks(times, chunk):
            u = walk_uniforms(key, chunk, num_layers, walks)
            pair = chunk * walks + jnp.arange(walks)
            times = _forward_walks(layers, mags, u[0], pair, list(times))
            return _backward_walks(layers, mags, u[1], pair, times)

        def cond(state):
            times, chunk = state
            return jnp.logical_and(chunk < max_chunks, jnp.logical_not(done(times)))

        def body(state):
            times, chunk = state
            return chunk_walks(times, chunk), chunk + 1

        start = [jnp.full(a.shape, _NEVER, jnp.int32) for a in mags]
        times, _ = jax.lax.while_loop(cond, body, (start, jnp.int32(0)))
        return times

    def __call__(self, inputs: scores_lib.StepInputs) -> scores_lib.Scores:
        if inputs.count is None:
            raise ValueError("phew builds its mask up to a keep count: give the step's count")
        order = inputs.probe.layer_order if inputs.probe is not None else ()
        layers = chain(inputs.params, inputs.mask, order)
        times = self.first_visits(inputs.params, inputs.mask, inputs.count, inputs.key, order)
        leaves, treedef = jax.tree.flatten(inputs.params)
        by_leaf = {layer.leaf: t for layer, t in zip(layers, times)}
        scores = []
        for i, x in enumerate(leaves):
            if i in by_leaf:
                t = by_leaf[i].reshape(jnp.shape(x))
                scores.append(jnp.where(t == _NEVER, _UNVISITED, -t.astype(jnp.float32)))
            else:
                scores.append(jnp.zeros((), jnp.float32))
        return scores_lib.only_kept(treedef.unflatten(scores), inputs.mask), None


def _forward_walks(layers, mags, u, pair, times):
    """Input-to-output walks (ids 2 * pair) of one chunk; each weight keeps its first time.

    Walk `pair` starts at input channel pair mod C_in; at each layer it draws a
    spatial position (for a flattening layer), an output unit with probability
    proportional to the summed magnitudes of the unit's row, then a tap.
    """
    num_layers = len(layers)
    unit = pair % layers[0].inputs
    for step, (layer, a) in enumerate(zip(layers, mags)):
        if layer.positions > 1:
            position = jnp.minimum(
                jnp.floor(u[step, _POSITION] * layer.positions).astype(jnp.int32),
                layer.positions - 1)
            unit = position * (layer.inputs // layer.positions) + unit
        rows = a[:, unit, :]  # (taps, B, outputs)
        out = _draw(jnp.sum(rows, axis=0), u[step, _UNIT])
        tap = _draw(jnp.take_along_axis(rows, out[None, :, None], axis=2)[..., 0].T,
                    u[step, _TAP])
        flat = (tap * layer.inputs + unit) * layer.outputs + out
        t = (2 * pair) * num_layers + step
        times[step] = times[step].reshape(-1).at[flat].min(t).reshape(a.shape)
        unit = out
    return times


def _backward_walks(layers, mags, u, pair, times):
    """Output-to-input walks (ids 2 * pair + 1) of one chunk, from output unit pair mod C_out."""
    num_layers = len(layers)
    unit = pair % layers[-1].outputs
    for step, r in enumerate(reversed(range(num_layers))):
        layer, a = layers[r], mags[r]
        cols = a[:, :, unit]  # (taps, inputs, B)
        inp = _draw(jnp.sum(cols, axis=0).T, u[r, _UNIT])
        tap = _draw(jnp.take_along_axis(cols, inp[None, None, :], axis=1)[:, 0, :].T,
                    u[r, _TAP])
        flat = (tap * layer.inputs + inp) * layer.outputs + unit
        t = (2 * pair + 1) * num_layers + step
        times[r] = times[r].reshape(-1).at[flat].min(t).reshape(a.shape)
        unit = inp % (layer.inputs // layer.positions) if layer.positions > 1 else inp
    return times
