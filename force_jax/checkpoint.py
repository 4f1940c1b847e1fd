"""Atomic files and orbax checkpoints of the train state.

Result files are written to a temporary name in the same folder and renamed,
so a reader never sees half a file and an interrupted run loses nothing that
was already written. orbax writes each checkpoint into a temporary folder and
renames it when complete, so the latest complete checkpoint is always intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import orbax.checkpoint as ocp


def publish(tmp: str, path: str) -> None:
    """Renames a finished temporary file onto `path`, with the usual file mode.

    `tempfile.mkstemp` creates files readable by their owner only; the
    published file gets 0o666 minus the process umask, like `open(path, "w")`.

    Args:
      tmp: the complete temporary file, in the folder of `path`.
      path: destination file.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def write_atomic(path: str, text: str) -> None:
    """Writes `text` to `path` atomically (temporary file + rename).

    Args:
      path: destination file.
      text: its full content.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: str, value: Any) -> None:
    """Writes `value` as indented JSON, atomically."""
    write_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def read_jsonl(path: str) -> list[dict]:
    """Reads a JSON-lines file; a missing file is an empty list."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def append_jsonl(path: str, record: dict) -> None:
    """Appends one record to a JSON-lines file (rewritten atomically)."""
    records = read_jsonl(path) + [record]
    write_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def truncate_jsonl(path: str, max_step: int) -> None:
    """Drops the records of steps after `max_step` (a resumed run redoes them)."""
    records = [r for r in read_jsonl(path) if r.get("step", 0) <= max_step]
    write_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def manager(directory: str, *, max_to_keep: int = 2) -> ocp.CheckpointManager:
    """An orbax CheckpointManager for the train state in `directory`.

    Args:
      directory: checkpoint folder (created if missing).
      max_to_keep: how many recent checkpoints to keep.

    Returns:
      The manager; use `save_state` / `restore_state`.
    """
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save_state(mngr: ocp.CheckpointManager, step: int, state: Any) -> None:
    """Saves `state` at `step` and waits until it is safely on disk."""
    mngr.save(step, args=ocp.args.StandardSave(state))
    mngr.wait_until_finished()


def restore_state(mngr: ocp.CheckpointManager, abstract_state: Any) -> tuple[Any, int] | None:
    """Restores the latest checkpoint into the structure of `abstract_state`.

    Args:
      mngr: the manager.
      abstract_state: a pytree of arrays (or ShapeDtypeStructs) of the state.

    Returns:
      (state, step), or None when there is no checkpoint yet.
    """
    step = mngr.latest_step()
    if step is None:
        return None
    return mngr.restore(step, args=ocp.args.StandardRestore(abstract_state)), step
