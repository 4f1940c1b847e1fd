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
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from force_jax.core import sharding

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


def run_schedule(step: Callable, params: PyTree, batches: Any, counts: jax.Array,
                 key: jax.Array, mask: PyTree, *, batches_per_step: int, batch_size: int,
                 fresh_final: bool, mesh: Mesh | None) -> tuple[PyTree, tuple]:
    """The streamed schedule: the pooled scan's steps, one call each, fresh batches each.

    Keys follow the scan's chain, so a stream that yields the batches the
    pool would have drawn gives the pooled schedule's mask. The final
    objective reuses the last step's batches unless `fresh_final`.

    Args:
      step: the compiled streamed step (`force_jax.core.pruning_step.step_fn`).
      params: the dense parameters.
      batches: the iterator of batches.
      counts: keep counts, T of them plus the last repeated (the final step).
      key: the schedule's PRNG key.
      mask: the mask the schedule starts from.
      batches_per_step, batch_size, mesh: as in `force_jax.prune`.
      fresh_final: draw one more step's batches for the final objective.

    Returns:
      (final mask, the steps' outputs stacked: objective, finite, revived,
      kept per layer).
    """
    counts = np.asarray(counts)
    steps = counts.shape[0] - 1
    step_keys = key_chain(key, steps + 1)  # one dispatch, not one per step
    outputs, step_data, expected = [], None, None
    for index in range(steps + 1):
        is_last = index == steps
        if not is_last or fresh_final:
            step_data, expected = draw_step(
                batches, batches_per_step=batches_per_step, batch_size=batch_size,
                step=index + 1, steps=steps, expected=expected, mesh=mesh)
        mask, *out = step(params, step_data, mask, step_keys[index], counts[index],
                          np.bool_(is_last))
        outputs.append(out)
    return mask, tuple(jnp.stack(column) for column in zip(*outputs))


@functools.partial(jax.jit, static_argnums=1)
def key_chain(key: jax.Array, length: int) -> jax.Array:
    """The keys the pooled scan gives its steps: split, keep the second, carry the first.

    Args:
      key: the schedule's PRNG key.
      length: number of steps.

    Returns:
      The (length,) step keys, made in one dispatch.
    """
    def body(carry, _):
        carry, this = jax.random.split(carry)
        return carry, this

    return jax.lax.scan(body, key, None, length=length)[1]
