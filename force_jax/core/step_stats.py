"""What a pruning step reports of its scores and masks, as traceable scalars.

The FORCE objective S(m) of a mask, whether the scores were finite and
informative, and how many weights each prunable layer keeps: the fields of
`force_jax.core.program.StepOutput`, computed inside the compiled step.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from force_jax.core import masks as masks_lib
from force_jax.core import scores as scores_lib

PyTree = Any


def objective_of(params: PyTree, grads: PyTree, mask: PyTree) -> jax.Array:
    """S(mask): sum over kept prunable weights of |theta0 * g|."""
    sal = scores_lib.saliency(params, grads)
    return jnp.float32(sum(
        jnp.sum(jnp.where(m, s, 0.0))
        for s, m in zip(jax.tree.leaves(sal), jax.tree.leaves(mask))
        if masks_lib.is_prunable_leaf(m)
    ))


def all_finite(scores: PyTree, mask: PyTree) -> jax.Array:
    """True when every prunable score is finite, -inf allowed on pruned weights.

    A float sum, not a bool reduction (which XLA:CPU runs slower): each score
    times 0 is 0 when finite and NaN otherwise, and the allowed -infs count 0,
    so the sum is 0 exactly when every score passes (no overflow: all terms
    are 0 or NaN).
    """
    total = jnp.float32(0.0)
    for s, m in zip(jax.tree.leaves(scores), jax.tree.leaves(mask)):
        if masks_lib.is_prunable_leaf(m):
            total = total + jnp.sum(jnp.where((s == -jnp.inf) & ~m, 0.0, s * 0.0),
                                    dtype=jnp.float32)
    return total == 0.0


def informative(scores: PyTree, mask: PyTree) -> jax.Array:
    """True when some finite prunable score is not zero."""
    largest = jnp.float32(0.0)
    for s, m in zip(jax.tree.leaves(scores), jax.tree.leaves(mask)):
        if masks_lib.is_prunable_leaf(m):
            magnitude = jnp.where(jnp.isfinite(s), jnp.abs(s), 0.0).astype(jnp.float32)
            largest = jnp.maximum(largest, jnp.max(magnitude))
    return largest > 0.0


def layer_kept(mask: PyTree) -> jax.Array:
    """Weights kept in each prunable leaf, in tree order (int32, shape (L,))."""
    return jnp.stack([masks_lib.count_true(m) for m in jax.tree.leaves(mask)
                      if masks_lib.is_prunable_leaf(m)])
