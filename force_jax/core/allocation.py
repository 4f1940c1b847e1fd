"""Per-layer keep counts: how a layer-wise scope shares a sparsity between layers.

The paper ranks every prunable weight together (the global scope, the
default). A layer-wise scope gives each prunable layer its own keep count and
keeps the top scores of each layer separately; the counts enter the compiled
schedule as data, one row per step (`program.schedule` with counts of shape
(T, L)), so nothing recompiles between allocations or sparsities.

An allocation is a set of relative per-layer densities r_l:

- ``"uniform"``: the same density in every layer (Synaptic-Flow's local scope);
- ``"erk"``: Erdos-Renyi-Kernel (Evci et al. 2020, RigL), r proportional to
  the sum of a kernel's dimensions over their product;
- ``"er"``: Erdos-Renyi, the same over the last two (input, output)
  dimensions only;
- a mapping from layer name (`masks.path_name`, e.g. "conv_0/kernel") to a
  density in (0, 1], naming every prunable layer;
- another mask: its own per-layer densities (so `random` pruning under it is
  "random with that mask's densities").

The counts: the real quota of layer l for a total K is c_l = min(n_l,
eps r_l n_l), with eps chosen so that the quotas sum to K (the layers that
reach density 1 are capped and the rest share what remains, as in RigL's
ERK). The final step's counts round the quotas by largest remainder
(Hamilton's method: floors, then one more weight to the layers with the
largest fractional parts, ties to the lower layer index), so they sum to
floor((1 - s) N) exactly, the global rule. An earlier step starts from the
next step's counts and hands out the difference of the totals by the same
rule over each layer's shortfall from its quota, so along a schedule a
layer's count never grows: Iterative SNIP never needs a weight back. A map
or a mask that already gives the requested total is used as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from force_jax.core import masks as masks_lib

PyTree = Any
ALLOCATIONS = ("uniform", "erk", "er")
SCOPES = ("global", "layerwise")


def prunable_layers(mask_like: PyTree) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every prunable leaf, in tree order.

    Args:
      mask_like: a mask (its full-shape leaves are the prunable ones).

    Returns:
      A list of (`masks.path_name`, shape) pairs.
    """
    flat, _ = jax.tree_util.tree_flatten_with_path(mask_like)
    return [(masks_lib.path_name(path), tuple(np.shape(leaf))) for path, leaf in flat
            if masks_lib.is_prunable_leaf(leaf)]


def relative_densities(allocation: str | Mapping[str, float] | PyTree,
                       mask_like: PyTree) -> np.ndarray:
    """The allocation's relative density of every prunable layer.

    Args:
      allocation: "uniform", "erk", "er", a mapping from layer name to a
        density in (0, 1], or a mask of the same structure whose per-layer
        densities are copied.
      mask_like: a mask of the params (decides the prunable layers).

    Returns:
      float64 array (L,) of densities >= 0 (scaled later to the total).

    Raises:
      ValueError: naming the allocation, for an unknown name, a map that
        misses or invents a layer or holds a density outside (0, 1], or a
        mask of another structure.
    """
    layers = prunable_layers(mask_like)
    if isinstance(allocation, str):
        if allocation not in ALLOCATIONS:
            raise ValueError(f"unknown allocation {allocation!r}; expected one of "
                             f"{', '.join(ALLOCATIONS)}, a map of layer densities or a mask")
        return np.asarray([_named_density(allocation, shape) for _, shape in layers])
    if _is_density_map(allocation):
        return _map_densities(allocation, layers)
    return _mask_densities(allocation, mask_like)


def _is_density_map(allocation: Any) -> bool:
    """A flat mapping of names to numbers (a mask is a tree of arrays)."""
    return isinstance(allocation, Mapping) and not any(
        isinstance(v, Mapping) or hasattr(v, "shape") for v in allocation.values())


def _named_density(allocation: str, shape: tuple[int, ...]) -> float:
    if allocation == "uniform":
        return 1.0
    dims = shape if allocation == "erk" else shape[-2:]
    return float(sum(dims)) / float(np.prod(dims))


def _map_densities(allocation: Mapping[str, float],
                   layers: list[tuple[str, tuple[int, ...]]]) -> np.ndarray:
    names = [name for name, _ in layers]
    unknown = sorted(set(allocation) - set(names))
    missing = [name for name in names if name not in allocation]
    if unknown or missing:
        problem = (f"names {', '.join(unknown)}, which is not a prunable layer" if unknown
                   else f"misses {', '.join(missing)}")
        raise ValueError(f"the allocation map {problem}; its layers: {', '.join(names)}")
    for name, density in allocation.items():
        if not (isinstance(density, int | float) and 0.0 < float(density) <= 1.0):
            raise ValueError(f"the allocation map gives {name} the density {density!r}; "
                             "a density lies in (0, 1]")
    return np.asarray([float(allocation[name]) for name in names])


def _mask_densities(reference: PyTree, mask_like: PyTree) -> np.ndarray:
    try:
        pairs = jax.tree.map(lambda r, m: (r, m), reference, mask_like)
    except (ValueError, TypeError) as error:
        raise ValueError("the allocation is neither a name, a map nor a mask of the params' "
                         f"structure: {error}") from None
    densities = []
    for r, m in jax.tree.leaves(pairs, is_leaf=lambda x: isinstance(x, tuple)):
        if masks_lib.is_prunable_leaf(m):
            if np.shape(r) != np.shape(m):
                raise ValueError(f"the allocation mask has a leaf of shape {np.shape(r)} "
                                 f"where the params have {np.shape(m)}")
            densities.append(float(np.mean(np.asarray(r, bool))))
    return np.asarray(densities)


def quotas(relative: np.ndarray, sizes: np.ndarray, total: int) -> np.ndarray:
    """Real per-layer keep counts min(n_l, eps r_l n_l) that sum to `total`.

    Args:
      relative: (L,) relative densities r_l >= 0.
      sizes: (L,) layer sizes n_l.
      total: the keep count K to share.

    Returns:
      float64 (L,) quotas.

    Raises:
      ValueError: when the layers with r_l > 0 hold fewer than K weights.
    """
    relative = np.asarray(relative, np.float64)
    sizes = np.asarray(sizes, np.float64)
    reachable = float(sizes[relative > 0].sum())
    if total > reachable:
        raise ValueError(f"the allocation cannot keep {total:,} weights: the layers it gives a "
                         f"density hold {int(reachable):,}")
    capped = np.zeros(len(sizes), bool)
    while True:
        free = ~capped & (relative > 0)
        weight = float((relative * sizes)[free].sum())
        eps = (total - sizes[capped].sum()) / weight if weight > 0 else 0.0
        over = free & (eps * relative >= 1.0)
        if not over.any():
            break
        capped |= over
    return np.where(capped, sizes, np.where(relative > 0, eps * relative * sizes, 0.0))


def round_to_total(targets: np.ndarray, caps: np.ndarray, total: int) -> np.ndarray:
    """Largest-remainder rounding of real targets to integers that sum to `total`.

    Floors first; the remaining weights go one each to the layers with the
    largest fractional parts (ties to the lower index), never above a cap.

    Args:
      targets: (L,) real targets, 0 <= target <= cap, summing to about `total`.
      caps: (L,) integer upper bounds.
      total: the integer sum wanted.

    Returns:
      int64 (L,) counts summing to `total`.
    """
    targets = np.clip(np.asarray(targets, np.float64), 0.0, caps)
    counts = np.minimum(np.floor(targets).astype(np.int64), caps)
    order = np.lexsort((np.arange(len(targets)), -(targets - counts)))  # largest part first
    for index in np.concatenate([order, order]):  # a second pass if float noise left seats
        missing = total - int(counts.sum())
        if missing <= 0:
            break
        if counts[index] < caps[index]:
            counts[index] += 1
    for index in order[::-1]:  # float noise above the total: smallest parts give back
        if int(counts.sum()) <= total:
            break
        if counts[index] > 0:
            counts[index] -= 1
    if int(counts.sum()) != total:
        raise ValueError(f"cannot share {total:,} weights within layer sizes {caps.tolist()}")
    return counts


def layer_counts(relative: np.ndarray, sizes: Any, totals: Any) -> np.ndarray:
    """Per-layer keep counts for every step of a schedule.

    Args:
      relative: (L,) relative densities (`relative_densities`).
      sizes: (L,) layer sizes.
      totals: (T,) total keep counts, non-increasing (a schedule's).

    Returns:
      int64 (T, L): row t sums to totals[t]; every column is non-increasing.

    Raises:
      ValueError: when a total cannot be reached, or totals increase.
    """
    sizes = np.asarray(sizes, np.int64)
    totals = np.asarray(totals, np.int64).reshape(-1)
    if np.any(np.diff(totals) > 0):
        raise ValueError("layer-wise counts need a non-increasing schedule of totals")
    counts = np.zeros((len(totals), len(sizes)), np.int64)
    counts[-1] = round_to_total(quotas(relative, sizes, int(totals[-1])), sizes,
                                int(totals[-1]))
    for t in range(len(totals) - 2, -1, -1):
        base = counts[t + 1]
        extra = int(totals[t] - totals[t + 1])
        shortfall = np.maximum(quotas(relative, sizes, int(totals[t])) - base, 0.0)
        targets = shortfall * (extra / shortfall.sum()) if shortfall.sum() > 0 else shortfall
        counts[t] = base + round_to_total(targets, sizes - base, extra)
    return counts
