"""Device meshes and shardings for data-parallel pruning and training.

One mesh axis, "data". Batches are split over it; params, masks and optimiser
state are replicated by default, or sharded FSDP-style over the same axis
(`param_shardings(..., fsdp=True)`): XLA's SPMD partitioner inserts the
all-reduces and all-gathers, so the step functions are written for one device
and run unchanged on a GPU node or a TPU pod slice. Multi-host runs start the
JAX distributed runtime (`force_jax.training.cluster`) and every process feeds
its own slice of each global batch (`global_batch`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

PyTree = Any
DATA_AXIS = "data"


def make_mesh(num_devices: int = -1) -> Mesh:
    """A one-axis ("data") mesh over the first num_devices devices (-1: all).

    Args:
      num_devices: how many devices; -1 for every device of every process.

    Returns:
      The mesh.

    Raises:
      ValueError: if more devices are asked for than exist.
    """
    devices = jax.devices()
    if num_devices > len(devices):
        raise ValueError(f"num_devices={num_devices}, but only {len(devices)} devices exist; "
                         "use -1 for all of them")
    count = len(devices) if num_devices <= 0 else num_devices
    return Mesh(np.asarray(devices[:count]), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding that splits the leading (example) axis over the data axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "batch size") -> None:
    """Raises a clear error when a global batch does not split evenly over the devices.

    Args:
      batch_size: the global batch size.
      mesh: the device mesh.
      what: the name of the setting, for the message.

    Raises:
      ValueError: if batch_size is not a multiple of the number of devices.
    """
    devices = mesh.shape[DATA_AXIS]
    if batch_size % devices:
        raise ValueError(
            f"{what} {batch_size} is not divisible by the {devices} devices of the mesh; "
            f"use a multiple of {devices} (per-device batch = global batch / devices)"
        )


def param_shardings(params: PyTree, mesh: Mesh, *, fsdp: bool = False,
                    min_size: int = 2**18) -> PyTree:
    """Shardings for params (and anything shaped like them: masks, momenta).

    Args:
      params: parameter pytree (arrays or ShapeDtypeStructs).
      mesh: the device mesh.
      fsdp: shard every leaf of at least min_size elements over the data axis,
        along its largest dimension divisible by the number of devices.
      min_size: smallest leaf that is sharded.

    Returns:
      A pytree of NamedShardings with the structure of params.
    """
    devices = mesh.shape[DATA_AXIS]

    def choose(leaf):
        shape = np.shape(leaf)
        if not fsdp or np.prod(shape, dtype=np.int64) < min_size:
            return replicated(mesh)
        for axis in np.argsort(shape)[::-1]:
            if shape[axis] % devices == 0:
                spec = [None] * len(shape)
                spec[axis] = DATA_AXIS
                return NamedSharding(mesh, PartitionSpec(*spec))
        return replicated(mesh)

    return jax.tree.map(choose, params)


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles the global batch from this process's slice, split over the data axis.

    Args:
      local_batch: numpy arrays holding this process's examples.
      mesh: the device mesh.

    Returns:
      Global jax.Arrays sharded along the example axis.
    """
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in local_batch.items()}


def put_replicated_copy(tree: PyTree, sharding_tree: PyTree) -> PyTree:
    """Places a host-identical pytree (same values on every process) on the mesh.

    Args:
      tree: arrays with the same global values on every process.
      sharding_tree: a sharding per leaf (or one sharding for all).

    Returns:
      Global jax.Arrays laid out by the shardings.
    """
    if isinstance(sharding_tree, NamedSharding):
        sharding_tree = jax.tree.map(lambda _: sharding_tree, tree)

    def put(x, sharding):
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree, sharding_tree)


def put_replicated_key(key: jax.Array, mesh: Mesh) -> jax.Array:
    """Places a PRNG key (typed or legacy uint32[2]) replicated on the mesh.

    Works with several processes, where a mesh holds devices this process cannot
    address and ``jax.device_put`` refuses it.

    Args:
      key: the same key on every process.
      mesh: the device mesh.

    Returns:
      The key as a global jax.Array, replicated over the mesh.
    """
    layout = replicated(mesh)
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return put_replicated_copy(key, layout)
    data = put_replicated_copy(jax.random.key_data(key), layout)
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(key))
