"""The pruning program as pure, traceable functions: a state, one step, the schedule.

`force_jax.prune` is the convenient driver (it checks its arguments, chooses
between a pool and a stream, and returns numpy); these are the pieces it is
built on, for a user who composes them with JAX's own transformations:

    pruner = Pruner("force", loss_fn, batch_size=128)
    counts = schedule_counts(params, sparsity=0.99, steps=60)
    mask, trace = jax.jit(schedule, static_argnums=0)(
        pruner, params, pool, counts, key, init_mask(params))

Everything below `Pruner` is a pure function of arrays: it runs under the
user's `jax.jit`, `jax.vmap` (over params, keys, counts or start masks; the
keep counts are data, so one compile serves every sparsity) and on a mesh.
`Pruner` holds what is static (the method, the losses, the batch shape): it
is hashable and compares by value, so it is the static argument of a jit, and
equal pruners share one compiled program through jax.jit's own cache.

The key chain: the state carries a key; every step splits it into the next
state's key and this step's key, which splits again into the key that draws
the step's batches from a pool (`draw_batches`) and the key the scores may
use (random scores). A stream of batches that yields what the pool would
have drawn therefore gives the pooled schedule's mask.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from force_jax.core import allocation as allocation_lib
from force_jax.core import gradients, schedules, step_stats
from force_jax.core import masks as masks_lib
from force_jax.core import methods as methods_lib
from force_jax.core import scores as scores_lib
from force_jax.core.scores import float_grad

PyTree = Any
LossFn = Callable[[PyTree, Any], jax.Array]


@dataclasses.dataclass(frozen=True)
class Pruner:
    """The static part of a pruning program: what is scored, on what, how.

    Attributes:
      method: a name in `force_jax.core.methods.METHODS` or a `Method` record
        (stored as the record).
      loss_fn: loss_fn(params, batch) -> scalar, the scoring loss; None for a
        method that reads no data.
      synflow_fn: the SynFlow objective, for method "synflow".
      batch_size: examples per micro-batch.
      batches_per_step: micro-batches whose gradients are averaged per step.
      track_objective: also compute S(m) where the method's scores do not
        give it for free (one more gradient per step).
      mesh: a device mesh with a "data" axis: each micro-batch is split over
        it (None: no constraint).
      probe: what a data-free method needs of the network (NTK-SAP, PHEW:
        `force_jax.network_probe(model, variables, input_shape)`).
    """

    method: methods_lib.Method | str
    loss_fn: LossFn | None = None
    synflow_fn: LossFn | None = None
    batch_size: int = 128
    batches_per_step: int = 1
    track_objective: bool = True
    mesh: Mesh | None = None
    probe: Any = None

    def __post_init__(self):
        method = methods_lib.get(self.method)
        object.__setattr__(self, "method", method)
        if method.needs_data and self.loss_fn is None:
            raise ValueError(f"method {method.name!r} scores with data: give Pruner a loss_fn")
        if method.needs_synflow and self.synflow_fn is None:
            raise ValueError(f"method {method.name!r} needs synflow_fn, e.g. "
                             "force_jax.synflow_objective(model, variables, input_shape)")
        if method.needs_probe and self.probe is None:
            raise ValueError(f"method {method.name!r} needs a probe of the network: give Pruner "
                             "one, e.g. force_jax.network_probe(model, variables, input_shape)")
        if self.batch_size < 1 or self.batches_per_step < 1:
            raise ValueError("batch_size and batches_per_step must be >= 1, got "
                             f"{self.batch_size}, {self.batches_per_step}")
        if (method.batches_per_step and self.loss_fn is not None
                and self.batches_per_step != method.batches_per_step):
            raise ValueError(f"method {method.name!r} uses {method.batches_per_step} "
                             f"micro-batches per step, one by one; got batches_per_step="
                             f"{self.batches_per_step}")

    @property
    def reads_data(self) -> bool:
        """Whether the steps take batches (the method's, given track_objective)."""
        return self.loss_fn is not None and self.method.reads_data(self.track_objective)


class PruneState(NamedTuple):
    """What a schedule carries from one step to the next.

    Attributes:
      mask: the current mask (bool on prunable leaves, scalar True elsewhere).
      key: the key of the next step (see the module's key chain).
    """

    mask: PyTree
    key: jax.Array


class StepOutput(NamedTuple):
    """What one step reports (stacked over steps by `schedule`).

    Attributes:
      objective: the FORCE objective S(m) = sum over kept weights of
        |theta0 * g(theta0 * m)|, NaN where not computed. For `step`, of the
        mask it started from; for `schedule`, of the mask each step produced.
      finite: whether every score was finite (-inf allowed on pruned weights).
      informative: whether some finite prunable score was not zero (all-zero
        scores rank nothing: a loss with no gradient at these weights).
      revived: weights kept by the step that the mask it started from had pruned.
      layer_kept: (L,) weights kept in each prunable leaf after the step.
    """

    objective: jax.Array
    finite: jax.Array
    informative: jax.Array
    revived: jax.Array
    layer_kept: jax.Array


def init_state(mask: PyTree, key: jax.Array) -> PruneState:
    """The state a schedule starts from.

    Args:
      mask: the start mask, e.g. `force_jax.init_mask(params)` (dense).
      key: the schedule's PRNG key.

    Returns:
      A `PruneState`.
    """
    return PruneState(mask=mask, key=key)


def schedule_counts(params: PyTree, *, sparsity: float, steps: int, schedule: str = "exp",
                    is_prunable: masks_lib.IsPrunable | None = None,
                    allocation: Any = None) -> np.ndarray:
    """The keep counts after each step of a schedule over `params`' prunable weights.

    Args:
      params: the parameters (only shapes are read).
      sparsity: the final fraction of prunable weights removed, in [0, 1).
      steps: the number of steps T.
      schedule: "exp" or "linear" (`force_jax.core.schedules.keep_fractions`).
      is_prunable: predicate on (key path, leaf); defaults to ndim >= 2.
      allocation: None for the global scope (the paper's); else the
        layer-wise scope with this allocation ("uniform", "erk", "er", a map
        of layer densities or a mask: `force_jax.core.allocation`).

    Returns:
      int32 array: (T,) totals for the global scope, the last
      floor((1 - sparsity) * N) (`schedules.count_kept`); (T, L) per-layer
      counts for the layer-wise scope, each row summing to that step's total.
    """
    leaves, treedef = jax.tree.flatten(params)
    flags = masks_lib.prunable_flags(params, is_prunable)
    # Shapes only: a mask-like tree that allocates nothing however large the model.
    shapes = treedef.unflatten([jax.ShapeDtypeStruct(jnp.shape(x), jnp.bool_) if f
                                else jnp.ones((), bool) for x, f in zip(leaves, flags)])
    fractions = schedules.keep_fractions(schedule, 1.0 - schedules.check_sparsity(sparsity),
                                         int(steps))
    totals = schedules.keep_counts(fractions, masks_lib.num_prunable(shapes))
    if allocation is None:
        return totals.astype(np.int32)
    sizes = [int(np.prod(shape)) for _, shape in allocation_lib.prunable_layers(shapes)]
    relative = allocation_lib.relative_densities(allocation, shapes)
    return allocation_lib.layer_counts(relative, sizes, totals).astype(np.int32)


def _split(key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(next state's key, this step's batch key, this step's score key)."""
    next_key, this_key = jax.random.split(key)
    batch_key, score_key = jax.random.split(this_key)
    return next_key, batch_key, score_key


def draw_batches(pruner: Pruner, pool: PyTree, state: PruneState) -> PyTree:
    """The micro-batches the step at `state` draws from a pool of examples.

    Each step takes batches_per_step * batch_size distinct examples, a fresh
    random choice at every step.

    Args:
      pruner: the program's `Pruner`.
      pool: a pytree of arrays with a leading example axis.
      state: the state of the step that takes them.

    Returns:
      The pool's leaves reshaped to (batches_per_step, batch_size, ...).
    """
    _, batch_key, _ = _split(state.key)
    size = jax.tree.leaves(pool)[0].shape[0]
    take = pruner.batch_size * pruner.batches_per_step
    chosen = jax.random.permutation(batch_key, size)[:take]
    return jax.tree.map(
        lambda x: jnp.take(x, chosen, axis=0).reshape(
            pruner.batches_per_step, pruner.batch_size, *x.shape[1:]), pool)


def step(pruner: Pruner, params: PyTree, state: PruneState, batches: PyTree | None,
         count: jax.Array | int) -> tuple[PruneState, StepOutput]:
    """One step: score the weights at the state's mask and keep the top `count`.

    Args:
      pruner: the program's `Pruner`.
      params: the dense parameters at initialisation, theta0.
      state: the `PruneState` the step starts from.
      batches: this step's micro-batches, leaves of shape (batches_per_step,
        batch_size, ...) (`draw_batches` from a pool, or stacked from a
        stream); None for a pruner that reads no data.
      count: the number of prunable weights to keep, or (L,) counts, one per
        prunable leaf, for the layer-wise scope (data: may be traced).

    Returns:
      (the next state, the step's `StepOutput`), whose objective is S of the
      mask the step started from where the method's gradient gives it.
    """
    next_key, _, score_key = _split(state.key)
    mask = state.mask
    gradient, hessian_vector = gradients.gradients(pruner, batches)
    synflow_gradient = (float_grad(pruner.synflow_fn) if pruner.synflow_fn is not None
                        else None)
    has_data = batches is not None and pruner.loss_fn is not None
    inputs = scores_lib.StepInputs(
        params, mask, gradient, hessian_vector, synflow_gradient, score_key,
        loss=pruner.loss_fn if has_data else None,
        batch=gradients.picker(batches, pruner.mesh) if has_data else None,
        count=jnp.asarray(count), probe=pruner.probe)
    scores, grads = pruner.method.score(inputs)
    extra = pruner.method.extra_gradient(pruner.track_objective)
    if grads is None and extra and gradient is not None:
        grads = gradient(masks_lib.apply_mask(params, mask))
    objective = (step_stats.objective_of(params, grads, mask) if grads is not None
                 else jnp.float32(jnp.nan))
    new_mask = masks_lib.topk_mask(scores, mask, count)
    revived = masks_lib.num_kept(jax.tree.map(lambda a, b: a & ~b, new_mask, mask))
    output = StepOutput(objective=objective, finite=step_stats.all_finite(scores, mask),
                        informative=step_stats.informative(scores, mask),
                        revived=jnp.int32(revived), layer_kept=step_stats.layer_kept(new_mask))
    return PruneState(mask=new_mask, key=next_key), output


def objective(pruner: Pruner, params: PyTree, state: PruneState,
              batches: PyTree | None) -> jax.Array:
    """S of the state's mask on `batches` (NaN without data or when not tracked).

    Args:
      pruner: the program's `Pruner`.
      params: the dense parameters at initialisation.
      state: the state whose mask is measured.
      batches: micro-batches as for `step`, or None.

    Returns:
      A float32 scalar.
    """
    gradient, _ = gradients.gradients(pruner, batches)
    if gradient is None or not pruner.track_objective:
        return jnp.float32(jnp.nan)
    grads = gradient(masks_lib.apply_mask(params, state.mask))
    return step_stats.objective_of(params, grads, state.mask)


def schedule(pruner: Pruner, params: PyTree, pool: PyTree | None, counts: jax.Array,
             key: jax.Array, start_mask: PyTree) -> tuple[PyTree, StepOutput]:
    """The whole pooled schedule: T steps in one `lax.scan`, fresh batches each step.

    Args:
      pruner: the program's `Pruner` (static under jit).
      params: the dense parameters at initialisation.
      pool: a pytree of arrays with a leading example axis, from which every
        step draws its batches (`draw_batches`); None for a pruner that reads
        no data.
      counts: (T,) keep counts, or (T, L) per-layer counts for the
        layer-wise scope, e.g. `schedule_counts(...)`.
      key: the schedule's PRNG key.
      start_mask: the mask of step 0, e.g. `force_jax.init_mask(params)`.

    Returns:
      (the final mask, a `StepOutput` of arrays with a leading axis of T):
      objective[t] is S of the mask step t + 1 produced, each on fresh
      batches (the last from one more draw).
    """
    if pruner.reads_data and pool is None:
        raise ValueError(f"method {pruner.method.name!r} reads data: give schedule a pool")
    pool = pool if pruner.reads_data else None

    def batches_at(state):
        return None if pool is None else draw_batches(pruner, pool, state)

    def body(state, count):
        return step(pruner, params, state, batches_at(state), count)

    state, outputs = jax.lax.scan(body, init_state(start_mask, key), jnp.asarray(counts))
    return state.mask, objectives_after(outputs, objective(pruner, params, state,
                                                           batches_at(state)))


def objectives_after(outputs: StepOutput, final: jax.Array) -> StepOutput:
    """Steps' outputs with objective[t] the S of the mask step t + 1 produced.

    Each `step` reports S of the mask it started from; a schedule reports S
    of the mask each step made, so its outputs move one step earlier and the
    last is S of the final mask.

    Args:
      outputs: `StepOutput` of arrays stacked over the T steps.
      final: S of the final mask (a scalar).

    Returns:
      The outputs with the objective shifted.
    """
    later = jnp.concatenate([outputs.objective[1:], jnp.asarray(final)[None]])
    return outputs._replace(objective=later)
