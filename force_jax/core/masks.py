"""Mask pytrees: which leaves are prunable, applying a mask, top-k, reports.

A mask has the tree structure of the params it belongs to. A prunable leaf's
mask is a bool array of the leaf's shape; a non-prunable leaf's mask is a
scalar True, which broadcasts. Every leaf is present (a None would vanish from
`jax.tree.map`). The scalar/full-shape distinction is how a mask alone tells
which leaves are prunable, so reports need nothing but the mask.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from force_jax.core.selection import top_k_masks

PyTree = Any
IsPrunable = Callable[[tuple, jax.Array], bool]


def path_name(path: tuple) -> str:
    """Readable name of a pytree key path, e.g. "params/Conv_0/kernel".

    Args:
      path: a key path from `jax.tree_util.tree_flatten_with_path`.

    Returns:
      The keys joined with "/"; the ".value" attribute an NNX Variable adds
      at the end of a path is left out ("fc/kernel", not "fc/kernel/value").
    """
    parts = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
        else:
            parts.append(str(entry))
    if len(parts) > 1 and parts[-1] == "value" and isinstance(path[-1], jax.tree_util.GetAttrKey):
        parts.pop()
    return "/".join(parts)


def default_is_prunable(path: tuple, leaf: jax.Array) -> bool:
    """Prunable by default: every float kernel of ndim >= 2 (convs and dense layers).

    An integer or boolean leaf (a lookup table, a counter) is no weight: it
    has no gradient to score, so it is never prunable by default.

    Args:
      path: the leaf's key path (unused by the default, there for overrides).
      leaf: the parameter array.

    Returns:
      True when the leaf is a float array with at least two dimensions.
    """
    del path
    return jnp.ndim(leaf) >= 2 and jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)


def prunable_flags(params: PyTree, is_prunable: IsPrunable | None = None) -> tuple[bool, ...]:
    """Which leaves of `params` are prunable, in `jax.tree.leaves` order.

    Args:
      params: parameter pytree (arrays or ShapeDtypeStructs).
      is_prunable: predicate on (key path, leaf); defaults to ndim >= 2.

    Returns:
      A tuple of Python bools, one per leaf.

    Raises:
      ValueError: if no leaf is prunable or a scalar leaf is declared prunable.
    """
    predicate = is_prunable or default_is_prunable
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    flags = tuple(bool(predicate(path, leaf)) for path, leaf in flat)
    for (path, leaf), flag in zip(flat, flags):
        if flag and jnp.ndim(leaf) == 0:
            raise ValueError(f"scalar parameter {path_name(path)} cannot be prunable")
    if not any(flags):
        raise ValueError("params have no prunable leaf (default: arrays with ndim >= 2)")
    return flags


def init_mask(params: PyTree, is_prunable: IsPrunable | None = None) -> PyTree:
    """The dense mask: all-True arrays on prunable leaves, scalar True elsewhere.

    Args:
      params: parameter pytree.
      is_prunable: predicate on (key path, leaf); defaults to ndim >= 2.

    Returns:
      A mask pytree with the structure of `params`.
    """
    return dense_mask(params, prunable_flags(params, is_prunable))


def dense_mask(params: PyTree, flags: tuple[bool, ...]) -> PyTree:
    """All-True mask given the prunable flags of the leaves (see `init_mask`).

    Args:
      params: parameter pytree (arrays, tracers or ShapeDtypeStructs).
      flags: one bool per leaf, from `prunable_flags`.

    Returns:
      A mask pytree with the structure of `params`.
    """
    leaves, treedef = jax.tree.flatten(params)
    return treedef.unflatten(
        [jnp.ones(jnp.shape(x), bool) if f else jnp.ones((), bool) for x, f in zip(leaves, flags)]
    )


def is_prunable_leaf(mask_leaf: jax.Array) -> bool:
    """True for a prunable leaf of a mask (a full-shape array, not a scalar)."""
    return jnp.ndim(mask_leaf) > 0


def check_mask(params: PyTree, mask: PyTree) -> None:
    """Checks that `mask` fits `params`: same tree structure, shapes that apply.

    Args:
      params: parameter pytree.
      mask: mask pytree.

    Raises:
      ValueError: naming the first structure or shape mismatch.
    """
    p_flat, p_def = jax.tree_util.tree_flatten_with_path(params)
    m_flat, m_def = jax.tree_util.tree_flatten_with_path(mask)
    if p_def != m_def:
        p_names = {path_name(p) for p, _ in p_flat}
        m_names = {path_name(p) for p, _ in m_flat}
        raise ValueError(
            "mask and params have different tree structures: only in params "
            f"{sorted(p_names - m_names)[:5]}, only in mask {sorted(m_names - p_names)[:5]}"
            + ("" if p_names ^ m_names else f"; params {p_def}, mask {m_def}")
        )
    for (path, p), (_, m) in zip(p_flat, m_flat):
        if jnp.ndim(m) > 0 and jnp.shape(m) != jnp.shape(p):
            raise ValueError(
                f"mask leaf {path_name(path)} has shape {jnp.shape(m)}, "
                f"params leaf has shape {jnp.shape(p)}"
            )


def apply_mask(params: PyTree, mask: PyTree) -> PyTree:
    """Zeroes the pruned weights: where(mask, params, 0), leaf by leaf.

    The mask is checked first (`check_mask`): a leaf of another shape would
    otherwise broadcast and zero the wrong weights. Shapes are static, so
    under jit the check runs once at trace time and costs nothing per step.

    Args:
      params: parameter pytree.
      mask: mask pytree of the same structure.

    Returns:
      The masked params (same dtypes).

    Raises:
      ValueError: if the mask's structure or a prunable leaf's shape differs.
    """
    check_mask(params, mask)
    return jax.tree.map(lambda p, m: jnp.where(m, p, jnp.zeros((), p.dtype)), params, mask)


def topk_mask(scores: PyTree, mask_like: PyTree, k: jax.Array | int) -> PyTree:
    """Keeps the k highest scores over all prunable leaves together, or k_l in each.

    With a scalar k (the global scope) ranking is global with no per-layer
    normalisation; with a vector k (the layer-wise scope,
    `force_jax.core.allocation`) each prunable leaf keeps its own top k_l.
    Exactly the counts asked are kept; ties go to the lower index (leaf
    order, then row-major).

    Args:
      scores: pytree of float scores shaped like the params.
      mask_like: a mask of the same structure; its scalar leaves mark the
        non-prunable leaves, which stay scalar True.
      k: number of weights to keep: a scalar, or one count per prunable
        leaf in tree order, shape (L,) (either may be traced).

    Returns:
      The new mask pytree.
    """
    s_leaves, treedef = jax.tree.flatten(scores)
    m_leaves = treedef.flatten_up_to(mask_like)
    prunable = [i for i, m in enumerate(m_leaves) if is_prunable_leaf(m)]
    if jnp.ndim(k) == 1:
        if jnp.shape(k)[0] != len(prunable):
            raise ValueError(f"{jnp.shape(k)[0]} layer counts for {len(prunable)} prunable leaves")
        kept = [top_k_masks([s_leaves[i]], k[j])[0] for j, i in enumerate(prunable)]
    else:
        kept = top_k_masks([s_leaves[i] for i in prunable], k)
    out = [jnp.ones((), bool)] * len(s_leaves)
    for i, m in zip(prunable, kept):
        out[i] = m
    return treedef.unflatten(out)


@jax.jit
def fingerprint(mask: PyTree) -> jax.Array:
    """A 32-bit checksum of which weights a mask keeps, to compare masks cheaply.

    Each kept weight adds a hash of (its leaf's index, its flat position);
    the sum wraps modulo 2**32. Equal masks give equal fingerprints; masks
    that differ in any kept position almost surely do not.

    Args:
      mask: a mask pytree (scalar leaves count as not prunable).

    Returns:
      A uint32 scalar. On a multi-process mesh each process computes it on
      its own replica, so processes whose masks differ get different values.
    """
    total = jnp.uint32(0)
    for index, leaf in enumerate(jax.tree.leaves(mask)):
        if not is_prunable_leaf(leaf):
            continue
        position = jnp.arange(leaf.size, dtype=jnp.uint32)
        hashed = position * jnp.uint32(2654435761) + jnp.uint32(40503 * (index + 1))
        hashed = hashed ^ (hashed >> 15)
        total = total + jnp.sum(jnp.where(leaf.ravel(), hashed, jnp.uint32(0)), dtype=jnp.uint32)
    return total


def num_prunable(mask: PyTree) -> int:
    """Total number of prunable weights N of a mask."""
    return sum(int(np.size(m)) for m in jax.tree.leaves(mask) if is_prunable_leaf(m))


def count_true(x: jax.Array) -> jax.Array:
    """Number of True entries of a bool array, as an int32 (traceable, exact).

    The entries, one byte each (0 or 1), are read four at a time as uint32
    words, whose set bits are counted (`jax.lax.population_count`) and summed.
    XLA:CPU runs a plain bool sum several times slower (the figures are in
    docs/performance.md), and a pruning step counts every mask twice (kept per
    layer, revived).

    Args:
      x: a bool array of any shape.

    Returns:
      An int32 scalar.
    """
    flat = jnp.ravel(x).astype(jnp.uint8)
    pad = (-flat.size) % 4
    if pad:
        flat = jnp.pad(flat, (0, pad))
    words = jax.lax.bitcast_convert_type(flat.reshape(-1, 4), jnp.uint32)
    return jnp.sum(jax.lax.population_count(words).astype(jnp.int32), dtype=jnp.int32)


def num_kept(mask: PyTree) -> jax.Array:
    """Number of kept prunable weights (traceable)."""
    counts = [count_true(m) for m in jax.tree.leaves(mask) if is_prunable_leaf(m)]
    return sum(counts)


