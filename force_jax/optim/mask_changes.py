"""How a mask changes during training: gradual magnitude pruning, SET and RigL.

Each rule is a frozen record with the steps at which it acts (`Period`) and a
pure `new_mask(mask, params, grads, count, key)`, run inside the jitted train
step by `force_jax.optim.changing_masked_updates` at those steps only.

- `gradual_magnitude`: Zhu and Gupta (2017). At update step t of
  [start, end] the sparsity is s_f + (s_i - s_f) (1 - (t - start) / (end -
  start))^3, so it is s_i at `start` and s_f at `end`; the weights of lowest
  magnitude among those kept are removed and never return. The keep count of
  every update is floor((1 - s_t) N), the rule of the pruning schedules
  (`schedules.count_kept`), computed once on the host.
- `drop_and_grow`: SET (Mocanu et al. 2018, grow at random) and RigL (Evci
  et al. 2020, grow where the dense gradient is largest). At an update step
  each layer drops floor(n_l d_t) of its kept weights of lowest magnitude,
  with the drop fraction d_t = d_0 / 2 (1 + cos(pi min(t, end) / end)), and
  grows as many among the weights it does not keep then, the just-dropped
  included (as RigL's code does). Every layer keeps its count exactly.

Selections are exact with ties to the lower index (`masks.topk_mask`). An
update step is a step t with start <= t <= end and t a multiple of `every`,
as in RigL's and jaxpruner's code.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from force_jax.core import allocation, masks, schedules

PyTree = Any
GROW = ("gradient", "random")  # RigL, SET


@dataclasses.dataclass(frozen=True)
class Period:
    """The update steps: every multiple of `every` in [start, end] (train step counts)."""

    start: int
    end: int
    every: int

    def steps(self) -> tuple[int, ...]:
        """The update steps, in order."""
        first = -(-self.start // self.every) * self.every
        return tuple(range(first, self.end + 1, self.every))

    def at(self, count: jax.Array) -> jax.Array:
        """Whether train step `count` (traced int) updates the mask."""
        return (count >= self.start) & (count <= self.end) & (count % self.every == 0)


def check_period(start: int, end: int, every: int, *, name: str = "") -> Period:
    """A checked `Period`.

    Args:
      start, end: the first and last steps that may update the mask.
      every: the update period in steps.
      name: prefix of the argument names in error messages.

    Returns:
      The Period.

    Raises:
      ValueError: for every < 1, a negative start or an end before start.
    """
    for arg, value in (("start", start), ("end", end), ("every", every)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name}{arg}={value!r}: expected an integer step count")
    if every < 1:
        raise ValueError(f"{name}every={every}: the update period must be at least 1 step")
    if start < 0 or end < start:
        raise ValueError(f"{name}start={start}, {name}end={end}: expected 0 <= start <= end")
    return Period(int(start), int(end), int(every))


def _magnitudes(mask: PyTree, params: PyTree, where: PyTree) -> PyTree:
    """|param| where `where` holds, -inf elsewhere (scalar leaves: 0, unused)."""
    def one(m, p, w):
        if not masks.is_prunable_leaf(m):
            return jnp.zeros((), jnp.float32)
        return jnp.where(w, jnp.abs(p).astype(jnp.float32), -jnp.inf)
    return jax.tree.map(one, mask, params, where)


@dataclasses.dataclass(frozen=True)
class GradualMagnitude:
    """Gradual magnitude pruning: `keep[i]` weights after the i-th update step of `period`.

    `keep` holds one total per update step (global scope) or one tuple of
    per-layer counts per update step (layer-wise scope).
    """

    period: Period
    keep: tuple
    skip_gradient = False

    def new_mask(self, mask: PyTree, params: PyTree, grads: PyTree, count: jax.Array,
                 key: jax.Array) -> PyTree:
        """The mask after the update at step `count`: the largest |params| among those kept."""
        del grads, key
        index = jnp.searchsorted(jnp.asarray(self.period.steps()), count)
        k = jnp.asarray(self.keep, jnp.int32)[index]
        return masks.topk_mask(_magnitudes(mask, params, mask), mask, k)


def gradual_magnitude(mask: PyTree, *, sparsity: float, start: int, end: int, every: int,
                      initial_sparsity: float | None = None,
                      scope: str = "global") -> GradualMagnitude:
    """Zhu and Gupta's gradual magnitude pruning, from `mask` (dense or a pruned one).

    Args:
      mask: the mask training starts from (all True for a dense start).
      sparsity: s_f, the final fraction of prunable weights removed.
      start, end: the first and last update steps; both multiples of `every`.
      every: steps between updates.
      initial_sparsity: s_i, the sparsity of the schedule at `start` (default:
        the sparsity of `mask`).
      scope: "global" (one magnitude ranking over all layers) or "layerwise"
        (every layer pruned to the same sparsity, as Zhu and Gupta do; from a
        dense mask only).

    Returns:
      The GradualMagnitude record, its keep counts computed.

    Raises:
      ValueError: naming the argument that is out of range.
    """
    period = check_period(start, end, every)
    if start % every or end % every:
        raise ValueError(f"start={start}, end={end}: both must be multiples of every={every}, "
                         "so that the schedule starts at start and reaches its sparsity at end")
    final = schedules.check_sparsity(sparsity)
    n = masks.num_prunable(mask)
    kept = int(masks.num_kept(mask))
    initial = 1 - kept / n if initial_sparsity is None else float(initial_sparsity)
    if not 0 <= initial <= final:
        raise ValueError(f"initial_sparsity={initial:g}: expected 0 <= initial_sparsity <= "
                         f"sparsity={final:g}")
    steps = np.asarray(period.steps(), np.float64)
    progress = (steps - start) / (end - start) if end > start else np.ones_like(steps)
    levels = final + (initial - final) * (1 - progress) ** 3
    totals = np.minimum(schedules.count_kept(1 - levels, n), kept)
    totals[-1] = min(int(schedules.count_kept(1 - final, n)), kept)
    if totals[-1] < 1:
        raise ValueError(f"sparsity={final:g} keeps no weight of {n:,}; lower it")
    if scope == "global":
        return GradualMagnitude(period, tuple(int(t) for t in totals))
    if scope != "layerwise":
        raise ValueError(f"scope={scope!r}: expected 'global' or 'layerwise'")
    if kept != n:
        raise ValueError("scope='layerwise' starts from a dense mask; a pruned mask keeps "
                         "its own per-layer densities: use scope='global'")
    sizes = [math.prod(shape) for _, shape in allocation.prunable_layers(mask)]
    counts = allocation.layer_counts(np.ones(len(sizes)), sizes, totals)
    return GradualMagnitude(period, tuple(tuple(int(c) for c in row) for row in counts))


@dataclasses.dataclass(frozen=True)
class DropAndGrow:
    """SET (grow="random") or RigL (grow="gradient"): each layer's count stays fixed."""

    period: Period
    drop_fraction: float
    grow: str
    skip_gradient = True  # the update step only rewires, as RigL's and jaxpruner's code do

    def fraction(self, count: jax.Array) -> jax.Array:
        """The cosine-decayed drop fraction d_0 / 2 (1 + cos(pi min(t, end) / end))."""
        end = max(self.period.end, 1)
        t = jnp.minimum(count, end).astype(jnp.float32)
        return 0.5 * self.drop_fraction * (1 + jnp.cos(jnp.pi * t / end))

    def new_mask(self, mask: PyTree, params: PyTree, grads: PyTree, count: jax.Array,
                 key: jax.Array) -> PyTree:
        """The mask after dropping and growing at step `count`."""
        flags = [masks.is_prunable_leaf(m) for m in jax.tree.leaves(mask)]
        active = jnp.stack([masks.count_true(m) for m, f in zip(jax.tree.leaves(mask), flags)
                            if f])
        dropped = jnp.floor(active.astype(jnp.float32) * self.fraction(count)).astype(jnp.int32)
        kept = masks.topk_mask(_magnitudes(mask, params, mask), mask, active - dropped)
        if self.grow == "gradient":
            score = jax.tree.map(lambda g: jnp.abs(g).astype(jnp.float32), grads)
        else:
            leaves, treedef = jax.tree.flatten(params)
            keys = jax.random.split(key, len(leaves))
            score = treedef.unflatten([jax.random.uniform(k, jnp.shape(p))
                                       for k, p in zip(keys, leaves)])
        free = jax.tree.map(lambda k: ~k, kept)
        grown = masks.topk_mask(_magnitudes(mask, score, free), mask, dropped)
        return jax.tree.map(lambda k, g: k | g, kept, grown)


def drop_and_grow(*, grow: str, drop_fraction: float = 0.3, start: int = 0, end: int,
                  every: int = 100) -> DropAndGrow:
    """SET or RigL's rewiring rule.

    Args:
      grow: "gradient" (RigL: the largest |dense gradient|) or "random" (SET).
      drop_fraction: d_0, the fraction of a layer's kept weights rewired at the
        first update, in (0, 1); it decays along a cosine to 0 at `end`.
      start, end: the first and last steps that may rewire.
      every: steps between rewirings (RigL's default: 100).

    Returns:
      The DropAndGrow record.

    Raises:
      ValueError: naming the argument that is out of range.
    """
    if grow not in GROW:
        raise ValueError(f"grow={grow!r}: expected one of {GROW}")
    if not 0 < drop_fraction < 1:
        raise ValueError(f"drop_fraction={drop_fraction!r}: expected a fraction in (0, 1)")
    return DropAndGrow(check_period(start, end, every), float(drop_fraction), grow)
