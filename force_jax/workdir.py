"""A workdir answers to the config that made it.

``DIR/config.json`` records the config of the run whose results the workdir
holds. A rerun on the same workdir (to resume, or to reread the results)
must have the same *defining* settings, the ones that decide the result:
data, model, prune, train and seed. Settings that only say where or how often
(``data.data_dir``, ``data.download``, the device mesh, ``distributed``, the
evaluation batch size and frequency, a sweep's grid) may differ. A rerun whose
defining settings differ is refused before anything is read or written, with
the differing keys listed; config.json is written only once the run is known
to be the one it describes.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from force_jax.checkpoint import write_atomic
from force_jax.errors import WorkdirError

CONFIG_FILE = "config.json"
# Keys (dotted prefixes) that do not change a run's result.
NON_DEFINING = (
    "data.data_dir", "data.download", "mesh", "distributed", "eval_batch_size",
    "eval_every_steps", "sweep",
)
# Files whose presence means the workdir already holds results of some run.
RESULT_FILES = ("prune.json", "metrics.jsonl", "metrics.json", "checkpoints", "mask")


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
    return {k: v for k, v in _flatten(record).items() if _is_defining(k)}


def differences(recorded: dict, current: dict) -> list[str]:
    """Lines "key: recorded -> current" for every defining setting that differs.

    Args:
      recorded: the config record of the workdir.
      current: the config record of the new run.

    Returns:
      One line per differing key, sorted; empty when the run matches.
    """
    old, new = defining_settings(recorded), defining_settings(current)
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
      True when the workdir already records this run's config, False when it
      holds no run yet.

    Raises:
      WorkdirError: listing the differing keys, or when the workdir holds
        results but no config.json to check them against.
    """
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        found = [f for f in RESULT_FILES if os.path.exists(os.path.join(workdir, f))]
        if found:
            raise WorkdirError(
                f"{workdir} holds results ({', '.join(found)}) but no {CONFIG_FILE} saying which "
                "config made them; use a new --workdir.")
        return False
    try:
        with open(path) as f:
            recorded = json.load(f)
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


def record_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Writes config.json atomically (call after `check_config` has passed).

    Args:
      workdir: the run's folder.
      config: the config of the run.
    """
    write_atomic(os.path.join(workdir, CONFIG_FILE),
                 json.dumps(config_record(config), indent=2, sort_keys=True) + "\n")
