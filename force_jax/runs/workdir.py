"""A workdir answers to the config that made it.

``DIR/config.json`` records the config of the run whose results the workdir
holds. A rerun on the same workdir (to resume, or to reread the results)
must have the same *defining* settings, the ones that decide the result or
what its numbers mean: data, model, prune, train, seed and the evaluation
(how often, and how many examples). Settings that only say where or how
(``data.data_dir``, ``data.download``, the device mesh, ``distributed``,
``cluster``, the evaluation batch size when whole splits are evaluated, a
sweep's grid) may differ. A rerun whose
defining settings differ is refused before any data is read or any result
written, with the differing keys listed; config.json is written only once the
run is known to be the one it describes. A workdir that holds no result yet
(a run that failed before its first result file) takes the new config.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import jax
import ml_collections

from force_jax.errors import WorkdirError
from force_jax.runs import files, keys, store
from force_jax.runs.lock import workdir_lock
from force_jax.training import cluster

CONFIG_FILE = "config.json"
# Keys (dotted prefixes) that change neither a run's result nor what its numbers mean, from
# the key table: where the data is read from (its name and version are defining), how the
# devices and processes are laid out, and a sweep's grid (each cell records its own config).
# The evaluation's batch size and batch limit only cut a split into batches; what they decide
# together, how many examples one evaluation reads, is the derived EVALUATED_EXAMPLES,
# which is defining. eval_every_steps is defining: it decides which evaluations
# best_validation_accuracy is the best of, and which records metrics.jsonl holds.
NON_DEFINING = keys.non_defining()
# A derived defining setting: how many examples of each split one evaluation reads.
EVALUATED_EXAMPLES = "evaluated examples (eval_max_batches x eval_batch_size)"
# Keys added after runs were recorded, with the value that reproduces those runs (the key
# table's `added`): a config.json without the key counts as having that value, so older
# workdirs still resume.
ADDED_KEYS = keys.added_keys()
# Files whose presence means the workdir already holds results of some run (a
# checkpoints folder counts once it holds anything).
RESULT_FILES = ("prune.json", "metrics.jsonl", "metrics.json", "checkpoints", "mask")


def results_in(workdir: str) -> list[str]:
    """The result files and folders a workdir holds (empty folders do not count).

    Args:
      workdir: the run's folder.

    Returns:
      Names from RESULT_FILES that exist there, in that order.
    """
    found = []
    for name in RESULT_FILES:
        path = os.path.join(workdir, name)
        if files.isfile(path) or (files.isdir(path) and files.listdir(path)):
            found.append(name)
    return found


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        flat = {}
        for key, value in tree.items():
            flat |= _flatten(value, f"{prefix}{key}.")
        return flat
    return {prefix[:-1]: tree}


def _is_defining(key: str) -> bool:
    return not any(key == p or key.startswith(p + ".") for p in NON_DEFINING)


def config_record(config: ml_collections.ConfigDict) -> dict:
    """The config as plain JSON data (tuples become lists), as config.json holds it.

    Args:
      config: experiment config.

    Returns:
      A JSON-ready nested dict.
    """
    return json.loads(config.to_json_best_effort())


def defining_settings(record: dict) -> dict[str, Any]:
    """The defining settings of a config record, as {dotted key: value}.

    Args:
      record: a nested dict from `config_record` or a config.json.

    Returns:
      The flattened settings minus the NON_DEFINING keys.
    """
    flat = _flatten(record)
    settings = {k: v for k, v in flat.items() if _is_defining(k)}
    settings[EVALUATED_EXAMPLES] = evaluated_examples(flat)
    return settings


def evaluated_examples(flat: dict[str, Any]) -> int | str:
    """How many examples of each split one evaluation reads, from a flattened config record.

    Args:
      flat: {dotted key: value} of a config record.

    Returns:
      eval_max_batches * eval_batch_size when eval_max_batches > 0, else
      "whole split" (then the batch size changes nothing but float rounding).
    """
    max_batches = flat.get("eval_max_batches")
    if not isinstance(max_batches, int) or max_batches <= 0:
        return "whole split"
    return max_batches * flat.get("eval_batch_size", 0)


def differences(recorded: dict, current: dict) -> list[str]:
    """Lines "key: recorded -> current" for every defining setting that differs.

    A key of ADDED_KEYS that one side lacks counts as set there to its value
    in ADDED_KEYS (the library's behaviour before the key existed, and its
    default since).

    Args:
      recorded: the config record of the workdir.
      current: the config record of the new run.

    Returns:
      One line per differing key, sorted; empty when the run matches.
    """
    old, new = defining_settings(recorded), defining_settings(current)
    old, new = ({**{k: v for k, v in ADDED_KEYS.items() if k in other}, **side}
                for side, other in ((old, new), (new, old)))
    missing = "(absent)"
    return [f"{key}: {json.dumps(old.get(key, missing))} -> {json.dumps(new.get(key, missing))}"
            for key in sorted(old.keys() | new.keys()) if old.get(key, missing) != new.get(
                key, missing)]


def check_config(workdir: str, config: ml_collections.ConfigDict) -> bool:
    """Refuses a workdir whose results came from other defining settings.

    Args:
      workdir: the run's folder (may not exist yet).
      config: the config of the new run.

    Returns:
      True when the workdir already holds results of this run's config,
      False when it holds no results yet (a config.json left by a run that
      failed before writing any result is then replaced, so a corrected
      rerun is not refused).

    Raises:
      WorkdirError: listing the differing keys, or when the workdir holds
        results but no config.json to check them against.
    """
    path = os.path.join(workdir, CONFIG_FILE)
    found = results_in(workdir)
    if not found:
        return False
    if not files.exists(path):
        raise WorkdirError(
            f"{workdir} holds results ({', '.join(found)}) but no {CONFIG_FILE} saying which "
            "config made them; use a new --workdir.")
    try:
        recorded = json.loads(files.read_text(path))
    except (OSError, json.JSONDecodeError) as e:
        raise WorkdirError(f"{path} cannot be read ({e}); use a new --workdir.") from None
    diff = differences(recorded, config_record(config))
    if diff:
        shown = "\n  ".join(diff[:20]) + (f"\n  ... {len(diff) - 20} more" if len(diff) > 20
                                           else "")
        raise WorkdirError(
            f"{workdir} holds a run of another config; these settings differ (recorded -> now):"
            f"\n  {shown}\nUse a new --workdir for the new settings, or rerun with the recorded "
            "ones to resume.")
    return True


# The config the workdir's checkpoints were made under, as config.json holds it. config.json
# itself can be edited; this copy is what a resumed checkpoint is checked against.
CHECKPOINT_CONFIG = "checkpoints_made_under.json"


def record_checkpoint_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Records the config the workdir's checkpoints are made under.

    Args:
      workdir: the run's folder.
      config: the config of the run, whose step-0 checkpoint is about to be saved.
    """
    files.write_atomic(os.path.join(workdir, CHECKPOINT_CONFIG),
                       json.dumps(config_record(config), indent=2, sort_keys=True) + "\n")


def check_checkpoint_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Refuses to resume checkpoints made under other defining settings than `config`'s.

    config.json is checked against the config first (`check_config`); this
    catches a config.json edited by hand after the checkpoints were made. The
    comparison is `differences`, as for config.json. A workdir from before
    this record existed passes.

    Args:
      workdir: the run's folder.
      config: the config of the run that would resume.

    Raises:
      WorkdirError: listing the differing keys.
    """
    path = os.path.join(workdir, CHECKPOINT_CONFIG)
    if not files.exists(path):
        return
    try:
        made_under = json.loads(files.read_text(path))
    except (OSError, ValueError) as e:
        raise WorkdirError(f"{path} cannot be read ({e}); use a new --workdir.") from None
    diff = differences(made_under, config_record(config))
    if diff:
        raise WorkdirError(
            f"the checkpoints in {workdir} were made under other settings than this run's "
            f"({'; '.join(diff[:5])}): {CONFIG_FILE} was edited after they were made. "
            "Restore it and rerun with its settings, or use a new --workdir.")


def record_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Writes config.json atomically (call after `check_config` has passed).

    Args:
      workdir: the run's folder.
      config: the config of the run.
    """
    files.write_atomic(os.path.join(workdir, CONFIG_FILE),
                       json.dumps(config_record(config), indent=2, sort_keys=True) + "\n")


def check_location(workdir: str) -> None:
    """Checks, before any work, that a workdir can be used where it is.

    A URL must name an installed filesystem and its store must answer within
    `store.REACHABLE_TIMEOUT_S`; a URL typed with one slash (``gs:/bucket``)
    is refused instead of becoming a local folder named ``gs:``.

    Args:
      workdir: the run's folder, local or a URL.

    Raises:
      ConfigError: one line naming --workdir and the fix.
    """
    store.check_path(workdir, "--workdir")
    store.check_reachable(workdir, "--workdir")


@contextlib.contextmanager
def claim(workdir: str, config: ml_collections.ConfigDict | None = None, *,
          check: Callable[[], Any] | None = None) -> Iterator[None]:
    """Makes the workdir this run's for a ``with`` block: locked, checked, recorded.

    Process 0 takes the lock; every process runs the check; every process
    learns whether any refused (so none waits alone in a collective); process
    0 then records the config.

    Args:
      workdir: the run's folder.
      config: the run's config, checked with `check_config` and recorded
        with `record_config`; None for a folder without a config record (a
        sweep's), which `check` then vouches for.
      check: a further check run on every process; raises WorkdirError.

    Yields:
      Nothing; the workdir is the run's inside the block.

    Raises:
      WorkdirError: when the workdir is in use or holds results of another config.
    """
    is_main = jax.process_index() == 0
    with contextlib.ExitStack() as stack:
        error = None
        try:
            stack.enter_context(workdir_lock(workdir, enabled=is_main))
            if config is not None:
                check_config(workdir, config)
            if check is not None:
                check()
        except WorkdirError as e:
            error = e
        cluster.raise_on_every_process(error)
        if is_main and config is not None:
            record_config(workdir, config)
        yield
