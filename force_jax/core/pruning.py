"""prune(): a whole pruning schedule, the convenient driver.

The pieces it runs are the pure functions of `force_jax.core.program` (a
state, one step, the pooled schedule), which a user may also compose under
their own `jax.jit` and `jax.vmap`. `prune` adds what a driver does: it
checks its arguments, places data on a mesh, chooses between a pool (the
whole schedule is one compiled `lax.scan`, so it compiles once whatever the
number of steps, and makes no host round trip per step) and a stream (an
iterator of batches, `force_jax.core.pruning_stream`: one compiled step per
step on fresh batches), checks the scores were finite, and returns numpy.
The keep counts enter the program as data, so one compile serves every
sparsity level of a model; compiled programs are reused through jax.jit's
own cache (`jax.clear_caches()` frees them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from force_jax.core import allocation as allocation_lib
from force_jax.core import compile_options, density, program, pruning_stream, schedules, sharding
from force_jax.core import masks as masks_lib
from force_jax.core import methods as methods_lib

PyTree = Any
LossFn = Callable[[PyTree, Any], jax.Array]


class History(NamedTuple):
    """Per-step record of a pruning schedule (numpy arrays of length T).

    Attributes:
      keep_fraction: target keep fraction after each step.
      kept: number of prunable weights kept after each step.
      objective: FORCE objective S(m_t) = sum over kept weights of
        |theta0 * g(theta0 * m_t)|, each on fresh batches (NaN when not
        tracked or when there is no data).
      revived: weights kept at step t that were pruned at step t-1 (only
        FORCE lets this be non-zero).
      layer_kept: (T, L) weights kept in each of the L prunable leaves
        (in tree order, as in `sparsity_report`) after each step.
    """

    keep_fraction: np.ndarray
    kept: np.ndarray
    objective: np.ndarray
    revived: np.ndarray
    layer_kept: np.ndarray


def _check_data(data: PyTree, batch_size: int, batches_per_step: int) -> None:
    """Checks that `data` has one leading example axis, big enough for a step."""
    leaves = jax.tree.leaves(data)
    batches_in_a_list = isinstance(data, list | tuple) and data and isinstance(data[0], Mapping)
    opaque_iterable = (len(leaves) == 1 and leaves[0] is data and not hasattr(data, "shape")
                       and hasattr(data, "__iter__"))
    if batches_in_a_list or opaque_iterable:
        raise TypeError(f"data is an iterable of batches ({type(data).__name__}) but not an "
                        "iterator: pass iter(data) to stream it, or one pytree of arrays with "
                        "a leading example axis as a pool")
    sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in leaves}
    if not sizes or None in sizes or len(sizes) != 1:
        raise ValueError(
            f"data must be a pytree of arrays sharing a leading example axis, got sizes {sizes}"
        )
    (size,) = sizes
    if size < batch_size * batches_per_step:
        raise ValueError(
            f"data has {size} examples, fewer than batch_size * batches_per_step = "
            f"{batch_size} * {batches_per_step}; each step draws that many distinct examples"
        )


def check_key(key: Any, name: str = "key") -> None:
    """Rejects anything but a JAX PRNG key (a typed key, or a legacy uint32[2]).

    Args:
      key: the value passed as a key.
      name: the argument's name, for the message.

    Raises:
      TypeError: saying to use jax.random.key(seed).
    """
    is_typed = isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype,
                                                                     jax.dtypes.prng_key)
    is_legacy = (isinstance(key, jax.Array | np.ndarray) and key.shape == (2,)
                 and key.dtype == np.uint32)
    if not (is_typed and key.shape == ()) and not is_legacy:
        got = type(key).__name__ if not hasattr(key, "shape") else f"{key.dtype}{list(key.shape)}"
        raise TypeError(f"{name} must be a PRNG key, e.g. jax.random.key(seed); got {got}")


def check_scope(scope: str, allocation: Any) -> Any:
    """The allocation a scope uses: None for the global scope.

    Args:
      scope: "global" or "layerwise".
      allocation: the `allocation` argument of `prune`.

    Returns:
      None for "global"; the allocation ("uniform" when None) for "layerwise".

    Raises:
      ValueError: an unknown scope, or an allocation given with the global scope.
    """
    if scope not in allocation_lib.SCOPES:
        raise ValueError(f"unknown scope {scope!r}; expected one of "
                         f"{', '.join(allocation_lib.SCOPES)}")
    if scope == "global":
        if allocation is not None:
            raise ValueError("an allocation shares the sparsity between layers: it needs "
                             "scope='layerwise' (the global scope ranks all weights together)")
        return None
    return "uniform" if allocation is None else allocation


def prune(
    loss_fn: LossFn | None,
    params: PyTree,
    data: Mapping[str, Any] | PyTree | None = None,
    *,
    method: str | methods_lib.Method = "force",
    sparsity: float,
    steps: int | None = None,
    schedule: str = "exp",
    batch_size: int = 128,
    batches_per_step: int | None = None,
    key: jax.Array,
    is_prunable: masks_lib.IsPrunable | None = None,
    synflow_fn: LossFn | None = None,
    track_objective: bool = True,
    on_collapse: str = "warn",
    mesh: Mesh | None = None,
    initial_mask: PyTree | None = None,
    scope: str = "global",
    allocation: str | Mapping[str, float] | PyTree | None = None,
    probe: Any = None,
) -> tuple[PyTree, History]:
    """Prunes `params` at initialisation with one of the methods of `scores`.

    Args:
      loss_fn: loss_fn(params, batch) -> scalar, the scoring loss (see
        `classification_loss`); may be None for data-free methods.
      params: the dense parameters at initialisation (any pytree).
      data: the pruning examples, in one of two modes. A pool: a pytree of
        arrays with a leading example axis, from which each step draws
        batches_per_step batches of batch_size distinct examples (the whole
        schedule is one compiled scan). A stream: an iterator of batches
        (pytrees of global jax.Arrays of batch_size examples, or numpy
        arrays of this process's batch_size / process_count; see
        `force_jax.core.pruning_stream`), of which each step takes batches_per_step
        fresh ones, and the final objective one more step's worth when
        tracked (one compiled step, called T + 1 times).
      method: a name in `force_jax.core.methods.METHODS` (force, iter_snip,
        snip, grasp_it, grasp, synflow, magnitude, random, prospr, ntk_sap,
        phew), or a `Method` record: one with options
        (`methods.get("prospr", inner_lr=0.5)`), or one built elsewhere (e.g.
        `force_jax.core.sanity.inverted("force")`, the "invert" sanity check).
        What the program does follows the record.
      sparsity: fraction of prunable weights removed, in [0, 1): a Python
        float, a numpy scalar or a 0-d array.
      steps: number of pruning steps T; defaults to the method's
        `default_steps` (60 for force, iter_snip and grasp_it, 100 for
        synflow) and must be 1 for a one-shot method.
      schedule: "exp" or "linear" keep-fraction schedule.
      batch_size: examples per micro-batch.
      batches_per_step: micro-batches whose gradients are averaged per step
        (default 1); a method that uses its micro-batches one by one fixes it
        (ProsPr: inner_steps + 1 with new data), and another value is an error.
      key: PRNG key (batches, random scores).
      is_prunable: predicate on (key path, leaf); defaults to ndim >= 2.
      synflow_fn: SynFlow objective (see `synflow_objective`), needed by
        method="synflow".
      track_objective: also evaluate S(m_t) where the method's scores do not
        give it for free (costs one gradient per step for synflow).
      on_collapse: what to do when a layer ends with no weight: "warn",
        "raise" or "ignore".
      mesh: a device mesh with a "data" axis (see `force_jax.core.sharding`):
        every micro-batch is split over it, params and scores are replicated,
        and the selection runs on every device without gathering anything.
        batch_size must be a multiple of the number of devices.
      initial_mask: the mask the schedule starts from (default: dense). The
        schedule's keep fractions still run from 1 to 1 - sparsity, so with
        steps=1 this is one step of the method from a given mask: how single
        steps are compared with a reference implementation.
      scope: "global" (the paper's: all prunable weights ranked together) or
        "layerwise": every prunable layer keeps its own count, its own top
        scores, the counts annealed along the schedule
        (`force_jax.core.allocation`).
      allocation: for the layer-wise scope, how the sparsity is shared:
        "uniform" (the default there), "erk", "er", a map from layer name to
        density, or a mask whose per-layer densities are copied. The counts
        sum to the global rule's exactly.
      probe: for methods "ntk_sap" and "phew", what they need of the network
        (`force_jax.network_probe(model, variables, input_shape)`).

    Returns:
      (mask, history): the mask pytree (bool arrays on prunable leaves, scalar
      True elsewhere) with exactly floor((1 - sparsity) * N) weights kept
      (float noise forgiven, so 0.9 of 430,500 keeps 43,050; see
      `schedules.count_kept`), and a `History`.

    Raises:
      ValueError: bad sparsity, steps, schedule, method, data or NaN/inf scores
        (including those from labels outside [0, num_classes)).
      TypeError: if key is not a PRNG key, or sparsity not a number.
    """
    _refuse_tracers(params, data, key)
    record = methods_lib.get(method)
    check_key(key)
    sparsity = schedules.check_sparsity(sparsity)
    steps = _check_steps(record, record.default_steps if steps is None else steps)
    if batches_per_step is None:
        batches_per_step = record.batches_per_step or 1
    if record.needs_data and (data is None or loss_fn is None):
        raise ValueError(f"method {record.name!r} needs loss_fn and data")
    # Data-free methods read no batches (from a stream either), unless S(m) is tracked.
    if not (record.reads_data(track_objective) and data is not None and loss_fn is not None):
        data = None
    # The Pruner checks batch_size, batches_per_step and synflow_fn.
    pruner = program.Pruner(record, loss_fn if data is not None else None, synflow_fn,
                            int(batch_size), int(batches_per_step), bool(track_objective), mesh,
                            probe if record.needs_probe else None)
    streamed = data is not None and pruning_stream.is_stream(data)
    if data is not None and not streamed:
        _check_data(data, batch_size, batches_per_step)
    fractions = schedules.keep_fractions(schedule, 1.0 - sparsity, steps)
    counts = _counts(params, fractions, sparsity, schedule, is_prunable, scope, allocation)
    start_mask = _start_mask(params, is_prunable, initial_mask)
    if mesh is not None:
        params, data, start_mask, key = _place_on_mesh(mesh, batch_size, params, data,
                                                       start_mask, key, streamed)
    if streamed:
        mask, trace = pruning_stream.run_schedule(
            pruner, params, data, counts, key, start_mask, fresh_final=bool(track_objective))
    else:
        mask, trace = compile_options.outer_jit(program.schedule, static_argnums=0)(
            pruner, params, data, jnp.asarray(counts, jnp.int32), key, start_mask)
    _check_trace(trace, record, steps, synflow_fn if record.needs_synflow else loss_fn)
    density.check_collapse(mask, on_collapse)
    return mask, History(
        keep_fraction=fractions,
        kept=counts.sum(axis=-1) if counts.ndim == 2 else counts,
        objective=np.asarray(trace.objective, np.float64),
        revived=np.asarray(trace.revived, np.int64),
        layer_kept=np.asarray(trace.layer_kept, np.int64),
    )


def _refuse_tracers(params: PyTree, data: Any, key: jax.Array) -> None:
    """`prune` is the driver: under a transformation the user composes `program` instead."""
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((params, data, key))):
        raise TypeError(
            "fj.prune is the driver: it compiles its own program, checks the scores on the "
            "host and returns numpy, so it cannot run inside jax.jit, vmap or grad. Compose "
            "fj.program.schedule there instead: jax.jit(fj.program.schedule, "
            "static_argnums=0)(pruner, params, pool, counts, key, start_mask) "
            "(force_jax.core.program)")


def _check_steps(record: methods_lib.Method, steps: Any) -> int:
    """The number of pruning steps, an integer >= 1, and 1 for a one-shot method."""
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not record.progressive and steps != 1:
        raise ValueError(f"method {record.name!r} prunes in one shot; got steps={steps}")
    return int(steps)


def _counts(params: PyTree, fractions: np.ndarray, sparsity: float, schedule: str,
            is_prunable: masks_lib.IsPrunable | None, scope: str, allocation: Any) -> np.ndarray:
    """The keep counts of every step: (T,) for the global scope, (T, L) for the layer-wise."""
    allocation = check_scope(scope, allocation)
    if allocation is None:
        dense = masks_lib.dense_mask(params, masks_lib.prunable_flags(params, is_prunable))
        return schedules.keep_counts(fractions, masks_lib.num_prunable(dense))
    return program.schedule_counts(params, sparsity=sparsity, steps=len(fractions),
                                   schedule=schedule, is_prunable=is_prunable,
                                   allocation=allocation)


def _start_mask(params: PyTree, is_prunable: masks_lib.IsPrunable | None,
                initial_mask: PyTree | None) -> PyTree:
    """The mask the schedule starts from: dense, or the given one on the prunable leaves."""
    dense = masks_lib.dense_mask(params, masks_lib.prunable_flags(params, is_prunable))
    if initial_mask is None:
        return dense
    masks_lib.check_mask(params, initial_mask)
    # Prunable leaves take the given mask; the others stay scalar True.
    return jax.tree.map(
        lambda d, m: jnp.broadcast_to(jnp.asarray(m, bool), d.shape) if d.ndim else d,
        dense, initial_mask)


def _place_on_mesh(mesh: Mesh, batch_size: int, params: PyTree, data: Any, start_mask: PyTree,
                   key: jax.Array, streamed: bool) -> tuple[PyTree, Any, PyTree, jax.Array]:
    """Params, mask and key replicated over the mesh, a pool split over its data axis.

    The layouts are those of the states the steps return, so no step recompiles.
    """
    sharding.check_batch_size(batch_size, mesh, "pruning batch_size")
    replicated = sharding.replicated(mesh)
    params = sharding.put_replicated_copy(params, replicated)
    if data is not None and not streamed:
        size = jax.tree.leaves(data)[0].shape[0]
        divisible = size % mesh.shape[sharding.DATA_AXIS] == 0
        data = sharding.put_replicated_copy(
            data, sharding.batch_sharding(mesh) if divisible else replicated)
    start_mask = sharding.put_replicated_copy(start_mask, replicated)
    return params, data, start_mask, sharding.put_replicated_key(key, mesh)


def _check_trace(trace: Any, record: methods_lib.Method, steps: int, scored_by: Any) -> None:
    """Refuses scores that were NaN or inf at some step, or all zero at the first."""
    finite = np.asarray(trace.finite)
    if not finite.all():
        bad = int(np.argmin(finite)) + 1
        # The scoring losses of `losses` turn a label that is not a class index into NaN.
        raise ValueError(
            f"{record.name} scores contain NaN or inf at step {bad} of {steps}: a loss that is "
            "NaN or inf at these weights, or labels outside [0, num_classes) in the pruning data")
    if not bool(np.asarray(trace.informative)[0]):
        name = getattr(scored_by, "__name__", type(scored_by).__name__)
        raise ValueError(
            f"{record.name} scores are all zero at step 1: the loss ({name}) has no gradient at "
            "these weights (a constant loss, one that ignores the params, or inf * 0 in it), "
            "so the scores rank nothing and no mask is chosen from them")
