"""The processes of a multi-host run: starting JAX's distributed runtime, agreeing.

`initialize_distributed` starts the runtime from a cluster description (the
config's `cluster` keys, FORCE_JAX_* variables, or JAX's own detection);
the other functions make the processes agree: a barrier, a check that every
process holds the same value, and a failure raised on every process when one
process's check fails. With one process every function here is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from force_jax.errors import ConfigError

# Environment variables that name the cluster when the config does not (config wins).
CLUSTER_ENV = {"coordinator_address": "FORCE_JAX_COORDINATOR",
               "num_processes": "FORCE_JAX_NUM_PROCESSES", "process_id": "FORCE_JAX_PROCESS_ID"}


def cluster_arguments(cluster: Mapping[str, Any] | None,
                      environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The arguments of `jax.distributed.initialize` from config.cluster and the environment.

    Each of coordinator_address, num_processes and process_id comes from
    config.cluster when set there ("", 0 and -1 mean unset), else from
    FORCE_JAX_COORDINATOR, FORCE_JAX_NUM_PROCESSES and FORCE_JAX_PROCESS_ID,
    else is left out, so that JAX detects it (TPU pods, SLURM, Open MPI).

    Args:
      cluster: config.cluster (may be None or lack keys).
      environ: the environment (default: os.environ).

    Returns:
      Keyword arguments for `jax.distributed.initialize`, including
      initialization_timeout (seconds; config.cluster.initialization_timeout,
      default 300).

    Raises:
      ConfigError: for a number that is not one, or an address without the
        other two (or the reverse), naming the key or variable.
    """
    cluster = dict(cluster or {})
    environ = os.environ if environ is None else environ
    unset = {"coordinator_address": "", "num_processes": 0, "process_id": -1}
    args: dict[str, Any] = {}
    for key, variable in CLUSTER_ENV.items():
        value = cluster.get(key, unset[key])
        source = f"config.cluster.{key}"
        if value in (unset[key], None) and environ.get(variable, "") != "":
            value, source = environ[variable], variable
        if value in (unset[key], None, ""):
            continue
        if key != "coordinator_address":
            try:
                value = int(value)
            except ValueError:
                raise ConfigError(f"{source}={value!r}: expected an integer") from None
            if value < (1 if key == "num_processes" else 0):
                raise ConfigError(f"{source}={value}: expected an integer >= "
                                  f"{1 if key == 'num_processes' else 0}")
        args[key] = value
    if args and len(args) != 3:
        missing = [f"config.cluster.{k} (or {CLUSTER_ENV[k]})" for k in CLUSTER_ENV
                   if k not in args]
        raise ConfigError("a cluster named by hand needs its coordinator address, process count "
                          f"and this process's id: missing {', '.join(missing)}")
    if args and not args["process_id"] < args["num_processes"]:
        raise ConfigError(f"process_id={args['process_id']} is not below "
                          f"num_processes={args['num_processes']}")
    args["initialization_timeout"] = int(cluster.get("initialization_timeout", 300))
    return args


def wait_for_coordinator(address: str, timeout: float) -> None:
    """Waits until something accepts connections at the coordinator's host:port.

    Args:
      address: "host:port" of process 0's coordinator.
      timeout: seconds to keep trying.

    Raises:
      ConfigError: naming the address and the keys that set it, when nothing
        answered in time or the address is not host:port.
    """
    import socket
    import time

    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # [::1]:1234
    if not host or not port.isdigit():
        raise ConfigError(f"config.cluster.coordinator_address={address!r}: expected host:port, "
                          "e.g. 127.0.0.1:12345")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"no coordinator answered at {address} within {timeout:g} s "
                    "(config.cluster.coordinator_address or FORCE_JAX_COORDINATOR): start "
                    "process 0 there, or fix the address") from None
            time.sleep(0.2)


def initialize_distributed(enabled: bool, cluster: Mapping[str, Any] | None = None,
                           environ: Mapping[str, str] | None = None) -> None:
    """Starts JAX's multi-process runtime when asked.

    Args:
      enabled: call `jax.distributed.initialize` (config.distributed).
      cluster: config.cluster: the coordinator, process count and process id
        (see `cluster_arguments`); left unset, JAX detects them on TPU pods
        and SLURM or Open MPI clusters.
      environ: the environment (default: os.environ).

    Raises:
      ConfigError: for bad cluster settings, FORCE_JAX_* variables naming a
        cluster while `enabled` is False (the run would silently be one
        process), or a coordinator that did not answer within the
        initialization timeout.
    """
    environ = os.environ if environ is None else environ
    if not enabled:
        named = [variable for variable in CLUSTER_ENV.values() if environ.get(variable, "")]
        if named:
            raise ConfigError(f"{', '.join(named)} name a cluster, but config.distributed is "
                              "False: add --config.distributed=True, or unset them to run one "
                              "process")
        return
    if jax.distributed.is_initialized():
        return
    args = cluster_arguments(cluster, environ)
    if args.get("process_id", 0) != 0:
        # JAX aborts the process (no exception) when the coordinator never answers.
        wait_for_coordinator(args["coordinator_address"], args["initialization_timeout"])
    if "coordinator_address" in args:
        print(f"process {args['process_id']} of {args['num_processes']}: joining the "
              f"coordinator at {args['coordinator_address']} (up to "
              f"{args['initialization_timeout']} s)", flush=True)
    try:
        jax.distributed.initialize(**args)
    except Exception as error:  # noqa: BLE001 - JAX raises several types for a dead coordinator
        where = args.get("coordinator_address", "the detected coordinator")
        raise ConfigError(
            f"the JAX distributed runtime did not start (coordinator {where}, "
            f"{args['initialization_timeout']} s allowed): "
            f"{(str(error).splitlines() or [repr(error)])[0][:200]}"
        ) from error


def check_same_on_all_processes(value: int, what: str) -> None:
    """Checks that every process holds the same integer (e.g. a restored step).

    Args:
      value: this process's value, in the int32 range (the gather carries
        int32 unless x64 is on).
      what: what it is, for the error message.

    Raises:
      RuntimeError: when the processes disagree.
    """
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    if not -2**31 <= value < 2**31:
        raise ValueError(f"{what}={value} is outside the int32 range the check carries")
    values = np.asarray(multihost_utils.process_allgather(np.int32(value)))
    if not np.all(values == value):
        raise RuntimeError(f"processes disagree on the {what}: {values.tolist()}")


def barrier(name: str) -> None:
    """Waits until every process reaches this point (a no-op with one process).

    Args:
      name: a label shared by all processes for this barrier.
    """
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def raise_on_every_process(error: Exception | None) -> None:
    """Raises on every process when any process failed a check.

    A check that only one process makes (e.g. process 0 taking the workdir's
    lock) must not leave the other processes waiting in the run's first
    collective: every process calls this with its own outcome.

    Args:
      error: this process's error, or None.

    Raises:
      The process's own error, or a ConfigError naming the processes that
      failed when this one did not.
    """
    if jax.process_count() == 1:
        if error is not None:
            raise error
        return
    from jax.experimental import multihost_utils

    failed = np.asarray(multihost_utils.process_allgather(np.int32(error is not None)))
    if error is not None:
        raise error
    if failed.any():
        raise ConfigError(f"process(es) {np.flatnonzero(failed).tolist()} refused the run; "
                          "their error says why")
