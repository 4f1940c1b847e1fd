"""Sanity checks of a pruning-at-initialisation mask, as pure functions.

Frankle et al. ("Pruning Neural Networks at Initialization: Why are We
Missing the Mark?", ICLR 2021) ask three questions of any mask found at
initialisation; a method passes a check when the ablated network trains
*worse* than the original:

- **shuffle**: the kept positions redrawn uniformly at random inside each
  layer, with exactly the same count per layer. If nothing is lost, the
  method chose per-layer densities, not weights. `random_with_densities_of`
  is the same draw under the name of that baseline, for any reference mask.
- **shuffle_taps**: the same, keeping also the count at every spatial tap of
  a convolution kernel (positions redrawn among its input and output
  channels). It separates the taps a method uses (on a 1×1 feature map only
  the centre tap of a SAME-padded 3×3 kernel sees data) from the weights it
  picks within them.
- **reinit**: the same mask on new initial weights (the model's own
  initialiser, another key). If nothing is lost, the kept weights' values
  did not matter.
- **invert**: the same method keeping its *lowest* scores (at every step
  of a progressive method). If this is not much worse, the scores carry
  little information.

Two more checks corrupt the data the method scores with instead (random
labels, random pixels: `force_jax.core.data_checks`).

Every function is deterministic for its key and traceable (jit-friendly).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from force_jax.core import data_checks
from force_jax.core import masks as masks_lib
from force_jax.core import methods as methods_lib

PyTree = Any

# The data checks (force_jax.core.data_checks) corrupt the scoring data instead of the mask.
ABLATIONS = ("none", "shuffle", "reinit", "invert", "shuffle_taps", *data_checks.DATA_CHECKS)
# The ablations that redraw the final mask, and the shuffle_within_layers options of each.
MASK_SHUFFLES = {"shuffle": {}, "shuffle_taps": {"per_tap": True}}
# Folded into the run's seed for the ablation's own randomness, so that it is
# independent of the keys of initialisation and pruning.
_ABLATION_STREAM = 0x5A4E


def ablation_key(seed: int) -> jax.Array:
    """The PRNG key of a run's ablation (the shuffle, or the new initial weights).

    Args:
      seed: the run's seed (config.seed).

    Returns:
      A key independent of `jax.random.split(jax.random.key(seed))`'s keys.
    """
    return jax.random.fold_in(jax.random.key(seed), _ABLATION_STREAM)


def _shuffle_leaf(mask: jax.Array, key: jax.Array, per_output_channel: bool,
                  per_tap: bool = False) -> jax.Array:
    if per_tap and mask.ndim > 2:
        # A Flax conv kernel is (*spatial, in, out): permute within each tap's (in, out) slice,
        # or, per output channel too, within each (tap, out) column of inputs.
        taps = mask.reshape(-1, mask.shape[-2], mask.shape[-1])
        if per_output_channel:
            groups = jnp.swapaxes(taps, 1, 2).reshape(-1, mask.shape[-2])
            shuffled = jax.random.permutation(key, groups, axis=1, independent=True)
            return jnp.swapaxes(shuffled.reshape(taps.shape[0], mask.shape[-1], mask.shape[-2]),
                                1, 2).reshape(mask.shape)
        groups = taps.reshape(taps.shape[0], -1)
        return jax.random.permutation(key, groups, axis=1, independent=True).reshape(mask.shape)
    if not per_output_channel:
        return jax.random.permutation(key, mask.reshape(-1)).reshape(mask.shape)
    # Flax kernels put the output channel last: permute each column of (fan_in, out) apart.
    columns = mask.reshape(-1, mask.shape[-1])
    return jax.random.permutation(key, columns, axis=0, independent=True).reshape(mask.shape)


def shuffle_within_layers(mask: PyTree, key: jax.Array, *,
                          per_output_channel: bool = False, per_tap: bool = False) -> PyTree:
    """Redraws the kept positions of every prunable layer uniformly at random.

    Each prunable leaf keeps exactly its number of kept weights (or, with
    per_output_channel, the number kept in each output channel: the last
    axis of a Flax kernel); where they sit is a uniform random arrangement.
    With per_tap, a kernel of more than two axes (a convolution,
    (*spatial, in, out)) also keeps its count at every spatial tap; a
    two-axis (dense) kernel has one tap. Non-prunable leaves (scalar True)
    are unchanged.

    Args:
      mask: a mask pytree (bool arrays on prunable leaves).
      key: PRNG key; one independent draw per leaf.
      per_output_channel: keep the count of every output channel, not only
        of the layer.
      per_tap: keep the count of every spatial tap of a convolution kernel
        (with per_output_channel: of every tap and output channel).

    Returns:
      The shuffled mask, of the same structure, shapes and dtypes.
    """
    leaves, treedef = jax.tree.flatten(mask)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([
        _shuffle_leaf(m, k, per_output_channel, per_tap) if masks_lib.is_prunable_leaf(m) else m
        for m, k in zip(leaves, keys)])


def random_with_densities_of(reference: PyTree, key: jax.Array, *,
                             per_output_channel: bool = False) -> PyTree:
    """The "layer densities only" baseline: random positions, another mask's densities.

    The mask keeps, in every prunable layer, as many weights as `reference`
    does, at positions drawn uniformly at random: it is what a method
    contributes when only its per-layer densities matter. The same
    distribution as `shuffle_within_layers(reference, key)`.

    Args:
      reference: the mask whose per-layer (or per-channel) counts are kept.
      key: PRNG key.
      per_output_channel: match the counts of every output channel.

    Returns:
      A mask of the structure of `reference`.
    """
    return shuffle_within_layers(reference, key, per_output_channel=per_output_channel)


def reinitialize(init: Callable[[jax.Array], PyTree], key: jax.Array, mask: PyTree) -> PyTree:
    """New initial weights under the same mask: init(key) with the pruned weights zeroed.

    Args:
      init: key -> variables, the model's own initialiser (e.g.
        ``lambda k: model.init(k, x)``). Either a params pytree, or a
        mapping of collections with the params under "params" (other
        collections, such as batch_stats, are returned as they are).
      key: PRNG key of the new weights (not the one the mask was found at).
      mask: the mask, for the params.

    Returns:
      The new variables (or params) with exactly the mask's weights kept.
    """
    variables = init(key)
    if isinstance(variables, Mapping) and "params" in variables:
        return {**variables, "params": masks_lib.apply_mask(variables["params"], mask)}
    return masks_lib.apply_mask(variables, mask)


def invert_scores(scores: PyTree) -> PyTree:
    """Scores whose top-k is the original scores' bottom-k: keep the lowest.

    Negates every finite score; -inf (a weight a method never lets back)
    stays -inf, so inversion chooses among the same candidates.

    Args:
      scores: pytree of float scores (higher means keep).

    Returns:
      The inverted scores, same structure and dtypes.
    """
    return jax.tree.map(lambda s: jnp.where(s == -jnp.inf, s, -s), scores)


@dataclasses.dataclass(frozen=True)
class _InvertedScore:
    """A score function keeping the lowest scores of another (equal when that one is)."""

    score: Callable

    def __call__(self, inputs):
        scores, grads = self.score(inputs)
        return invert_scores(scores), grads


def inverted(method: str | methods_lib.Method) -> methods_lib.Method:
    """The "invert" ablation as a method: the same method keeping its lowest scores.

    At every step of a progressive method. The record is otherwise the
    method's own (it reads the same data, gives S(m) the same way), and two
    calls give equal records, so they share one compiled program.

    Args:
      method: a method name or `Method` record.

    Returns:
      A `Method` named "<name>:inverted".
    """
    record = methods_lib.get(method)
    # A score with its own inversion (PHEW's walks towards small weights) gives it.
    own = getattr(record.score, "inverted", None)
    score = own() if callable(own) else _InvertedScore(record.score)
    return record._replace(name=f"{record.name}:inverted", score=score)
