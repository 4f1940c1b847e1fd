"""Guards: optional changes to a method that keep its masks from emptying a layer.

At extreme sparsity FORCE can end with a disconnected mask: a layer thins to
a few weights, then no path joins input to output, every gradient is zero
and S(m) = 0 (docs/scale_fashion_mnist). `layer_floor` is a guard against
that, as a method transform like `force_jax.core.sanity.inverted`: at every
step each prunable layer keeps at least `floor` of its weights, its
highest-scored ones, and the rest of the budget goes to the global top-k as
before. The paper's algorithm has no floor; no method has one by default.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from force_jax.core import masks as masks_lib
from force_jax.core import methods as methods_lib

PyTree = Any


def floor_scores(scores: PyTree, mask: PyTree, floor: int) -> PyTree:
    """Scores whose global top-k keeps at least `floor` weights of every prunable layer.

    In each prunable leaf, the `floor` highest finite scores (ties by
    position, as `jax.lax.top_k` breaks them) become the largest float32,
    above any other score; -inf (a weight the method never lets back) stays
    -inf, so a layer with fewer than `floor` candidates keeps only those.
    A keep count below the sum of the floors keeps a tie-broken part of the
    floored weights.

    Args:
      scores: pytree of float scores (higher means keep).
      mask: the step's mask; its full-shape leaves are the prunable ones.
      floor: weights to keep in each prunable layer (>= 0; capped at the
        layer's size).

    Returns:
      The scores with the same structure and dtypes.
    """

    def one(score, m):
        if not masks_lib.is_prunable_leaf(m) or floor == 0:
            return score
        flat = jnp.ravel(score)
        _, top = jax.lax.top_k(flat, min(floor, flat.size))
        chosen = jnp.zeros(flat.shape, bool).at[top].set(True) & jnp.isfinite(flat)
        raised = jnp.where(chosen, jnp.finfo(jnp.float32).max, flat)
        return raised.reshape(jnp.shape(score)).astype(score.dtype)

    return jax.tree.map(one, scores, mask)


@dataclasses.dataclass(frozen=True)
class _FlooredScore:
    """A score function whose global top-k keeps `floor` weights of every layer."""

    score: Callable
    floor: int

    def __call__(self, inputs):
        scores, grads = self.score(inputs)
        return floor_scores(scores, inputs.mask, self.floor), grads


def layer_floor(method: str | methods_lib.Method, floor: int) -> methods_lib.Method:
    """The method with a per-layer floor: every step keeps `floor` weights of each layer.

    The record is otherwise the method's own (the same data, the same S(m));
    two calls with equal arguments give equal records, so they share one
    compiled program. A floor of 0 returns the method unchanged.

    Args:
      method: a method name or `Method` record.
      floor: weights each prunable layer keeps at every step (an int >= 0).

    Returns:
      A `Method` named "<name>:floor<floor>" (the method itself for 0).

    Raises:
      ValueError: for a floor that is not an integer >= 0.
    """
    if isinstance(floor, bool) or not isinstance(floor, numbers.Integral) or floor < 0:
        raise ValueError(f"floor must be an integer >= 0, got {floor!r}")
    floor = int(floor)
    record = methods_lib.get(method)
    if floor == 0:
        return record
    return record._replace(name=f"{record.name}:floor{floor}",
                           score=_FlooredScore(record.score, floor))
