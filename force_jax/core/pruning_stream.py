"""Pruning batches drawn from an iterator: fresh examples at every step.

The in-memory pool of `force_jax.prune` suits small data sets; on ImageNet the
paper's code draws a fresh random batch for every one of its 40 x 60 pruning
batches, which no host can hold at once. In stream mode `prune` takes an
iterator of batches instead and draws `batches_per_step` of them at every
step; this module turns them into one step's input: the micro-batches
stacked on a leading axis, on the devices of the mesh. One step's batches
are held at once (on the host while stacked, then on the devices; each
process holds only its slice): for the paper's ImageNet setting, 40 x 256
images per step, about 6 GB in float32 over all processes, whatever T is.

A batch is a pytree of arrays sharing a leading example axis: either global
``jax.Array`` values (batch_size examples), or numpy arrays holding this
process's share (batch_size / process_count examples, the layout
`force_jax.training.data.train_iterator` yields on each process), which are assembled
into global arrays with ``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from force_jax.core import compile_options, program, sharding

PyTree = Any


def is_stream(data: Any) -> bool:
    """Whether `prune`'s data argument is a stream (an iterator) rather than a pool.

    Args:
      data: the data argument.

    Returns:
      True for an iterator (a generator, ``iter(...)``, a tf.data numpy iterator).
    """
    return isinstance(data, Iterator)


def local_batch_size(batch: PyTree, batch_size: int, mesh: Mesh | None) -> int:
    """How many examples one batch from the stream must hold on this process.

    Args:
      batch: a batch as the iterator yields it.
      batch_size: the global batch size.
      mesh: the device mesh (None: one device, one process).

    Returns:
      batch_size for global ``jax.Array`` batches or a single process;
      batch_size / process_count for numpy batches under a multi-process mesh.
    """
    is_numpy = all(not isinstance(x, jax.Array) for x in jax.tree.leaves(batch))
    if mesh is None or not is_numpy:
        return batch_size
    return batch_size // jax.process_count()


def signature(tree: PyTree) -> tuple:
    """The structure, shapes and dtypes of a batch, to compare steps with."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((tuple(np.shape(x)), str(np.asarray(x).dtype) if not isinstance(
        x, jax.Array) else str(x.dtype)) for x in leaves)


def draw_step(batches: Iterator, *, batches_per_step: int, batch_size: int, step: int,
              steps: int, expected: tuple | None, mesh: Mesh | None) -> tuple[PyTree, tuple]:
    """The next step's micro-batches, stacked, checked and placed on the devices.

    Args:
      batches: the iterator of batches.
      batches_per_step: micro-batches drawn for this step.
      batch_size: examples per micro-batch (global).
      step: this step's number, 1-based (steps + 1 is the final objective's).
      steps: the schedule's number of steps T.
      expected: the signature of the first step's micro-batch (None at step 1).
      mesh: device mesh (None: the default device).

    Returns:
      (stacked, signature): leaves of shape (batches_per_step, batch_size, ...)
      split over the mesh's data axis on their second axis, and the
      signature of one micro-batch.

    Raises:
      ValueError: when the iterator runs out (naming the step), or a batch
        has another size, structure, shape or dtype than the first step's.
    """
    micro = []
    for _ in range(batches_per_step):
        try:
            micro.append(next(batches))
        except StopIteration:
            what = f"step {step} of {steps}" if step <= steps else "the final objective"
            raise ValueError(
                f"the pruning batch iterator ran out at {what}: each of the {steps} steps takes "
                f"batches_per_step={batches_per_step} batches, and the final objective "
                "one more step's worth when tracked") from None
    local = local_batch_size(micro[0], batch_size, mesh)
    for batch in micro:
        sizes = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves(batch)}
        if sizes != {local}:
            raise ValueError(
                f"pruning batch at step {step} has leading sizes {sorted(sizes, key=str)}; "
                f"expected {local} examples (batch_size={batch_size}"
                + (f" over {jax.process_count()} processes)" if local != batch_size else ")"))
        got = signature(batch)
        expected = expected or got
        if got != expected:
            raise ValueError(f"pruning batch at step {step} changed shape or dtype: {got[1]} "
                             f"after {expected[1]} (structure {got[0]} after {expected[0]})")
    stacked = jax.tree.map(lambda *xs: _stack(xs), *micro)
    return _place(stacked, batch_size, mesh), expected


def _stack(values: tuple) -> Any:
    if any(isinstance(v, jax.Array) for v in values):
        return jnp.stack(values)
    return np.stack(values)


def _place(stacked: PyTree, batch_size: int, mesh: Mesh | None) -> PyTree:
    """Stacked micro-batches on the mesh, split over its data axis on axis 1."""
    if mesh is None:
        return jax.tree.map(jnp.asarray, stacked)
    layout = NamedSharding(mesh, PartitionSpec(None, sharding.DATA_AXIS))

    def put(x):
        if isinstance(x, jax.Array):
            return jax.device_put(x, layout)
        global_shape = (x.shape[0], batch_size, *x.shape[2:])
        return jax.make_array_from_process_local_data(layout, x, global_shape)

    return jax.tree.map(put, stacked)


def run_schedule(pruner: program.Pruner, params: PyTree, batches: Any, counts: np.ndarray,
                 key: jax.Array, mask: PyTree, *, fresh_final: bool) -> tuple[PyTree, tuple]:
    """The streamed schedule: the pooled scan's steps, one compiled call each, fresh batches each.

    The state carries the pooled schedule's key chain, so a stream that
    yields the batches the pool would have drawn gives the pooled
    schedule's mask. The final objective reuses the last step's batches
    unless `fresh_final`.

    Args:
      pruner: the program's `force_jax.core.program.Pruner` (its batch shape
        and mesh say how batches are drawn and placed).
      params: the dense parameters.
      batches: the iterator of batches.
      counts: (T,) keep counts.
      key: the schedule's PRNG key.
      mask: the mask the schedule starts from.
      fresh_final: draw one more step's batches for the final objective.

    Returns:
      (final mask, a `force_jax.core.program.StepOutput` of arrays with a
      leading axis of T, as `program.schedule` returns).
    """
    step = compile_options.outer_jit(program.step, static_argnums=0)
    objective = compile_options.outer_jit(program.objective, static_argnums=0)
    counts = np.asarray(counts, np.int32)
    steps = counts.shape[0]
    draw = functools.partial(draw_step, batches, batches_per_step=pruner.batches_per_step,
                             batch_size=pruner.batch_size, steps=steps, mesh=pruner.mesh)
    state, outputs, step_data, expected = program.init_state(mask, key), [], None, None
    for index in range(steps):
        step_data, expected = draw(step=index + 1, expected=expected)
        state, out = step(pruner, params, state, step_data, counts[index])
        outputs.append(out)
    if fresh_final:
        step_data, expected = draw(step=steps + 1, expected=expected)
    final = objective(pruner, params, state, step_data)
    trace = jax.tree.map(lambda *column: jnp.stack(column), *outputs)
    return state.mask, program.objectives_after(trace, final)
