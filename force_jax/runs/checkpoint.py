"""JSON record files and orbax checkpoints of the train state.

Record files (JSON, JSON lines) are read and written through
`force_jax.runs.files` (`write_atomic` is that module's, re-exported
here), so a reader never sees half a file and an interrupted run loses
nothing that was already written, on a local disk or an object store.
orbax marks a checkpoint complete only once all of it is written (locally it
renames a temporary folder; on GCS it writes a commit marker last), so the
latest complete checkpoint is always intact.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import orbax.checkpoint as ocp

from force_jax.errors import ConfigError
from force_jax.runs import disk, files

# Re-exported: the one writer of result files.
from force_jax.runs.files import write_atomic


class ResultFileError(ConfigError):
    """A result file (metrics.jsonl) or checkpoint folder that cannot be trusted."""


def write_json(path: str, value: Any) -> None:
    """Writes `value` as indented JSON (sorted keys, a final newline), atomically.

    Args:
      path: destination file.
      value: a JSON-ready value.
    """
    write_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def read_jsonl(path: str) -> list[dict]:
    """Reads a JSON-lines file of records; a missing file is an empty list.

    Args:
      path: the file.

    Returns:
      One dict per non-blank line; a last line without its newline that is
      not valid JSON (an append cut short) is dropped.

    Raises:
      ResultFileError: naming the file and line of a line that is not a JSON object.
    """
    if not files.exists(path):
        return []
    records = []
    lines = files.read_text(path).splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines) and not line.endswith("\n"):
                break  # an append cut short by a kill: its record was never checkpointed
            raise ResultFileError(f"{path} line {number} is not valid JSON ({e.msg}): "
                                  f"{line.strip()[:60]!r}") from None
        if not isinstance(record, dict):
            raise ResultFileError(f"{path} line {number} is not a JSON object")
        records.append(record)
    return records


def write_jsonl(path: str, records: list[dict]) -> None:
    """Writes records as JSON lines, atomically (the whole file each time).

    A run keeps its records in memory and rewrites them all, so a file deleted
    or damaged during the run is restored whole at the next write.

    Args:
      path: the file.
      records: JSON-ready dicts, one per line.
    """
    write_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def resume_records(path: str, step: int) -> list[dict]:
    """The metrics records a run resumed at `step` continues from.

    Records of later steps (written after the checkpoint) are dropped, and so
    is an identical copy of a record; a run resumed after step 0 must find the
    record of its checkpoint's step, since
    every checkpoint is saved right after its evaluation record: without it,
    the best validation accuracy would come from a partial record.

    Args:
      path: metrics.jsonl of the workdir.
      step: the step of the restored checkpoint.

    Returns:
      The records up to and including `step`.

    Raises:
      ResultFileError: for a bad line, two different records of one step,
        steps out of order, or a missing record.
    """
    records = []
    for record in read_jsonl(path):  # an identical copy of a record is dropped: it adds nothing
        if not records or record != records[-1]:
            records.append(record)
    steps = [r.get("step") for r in records]
    repeated = sorted({s for s in steps if steps.count(s) > 1}, key=str)
    if repeated:
        raise ResultFileError(
            f"{path} holds two different records of step {repeated[0]} (edited, or written by "
            "two runs): delete the wrong line (the next write rewrites the file whole), or "
            "use a new --workdir.")
    if any(not isinstance(s, int) for s in steps) or steps != sorted(steps):
        raise ResultFileError(f"{path}: records must have increasing integer steps, got {steps}; "
                              "it was edited or written by two runs. Use a new --workdir.")
    kept = [r for r in records if r["step"] <= step]
    if step > 0 and (not kept or kept[-1]["step"] != step):
        raise ResultFileError(
            f"{path} has no record of step {step}, the checkpoint this run resumes from (the "
            "file was deleted or cut short), so its best validation accuracy cannot be trusted. "
            "Restore the file or use a new --workdir.")
    return kept


def manager(directory: str, *, max_to_keep: int = 2) -> ocp.CheckpointManager:
    """An orbax CheckpointManager for the train state in `directory`.

    Args:
      directory: checkpoint folder (created if missing), local or a URL.
      max_to_keep: how many recent checkpoints to keep.

    Returns:
      The manager; use `save_state` / `restore_state`.
    """
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(files.absolute(directory), options=options)


def save_state(mngr: ocp.CheckpointManager, step: int, state: Any) -> None:
    """Saves `state` at `step` and waits until it is safely on disk.

    Args:
      mngr: the manager.
      step: the step the checkpoint is of.
      state: a pytree of arrays.

    Raises:
      OSError: naming the checkpoint's folder when the disk refuses the write
        (full, read-only, no permission; errno in DISK_ERRNOS). orbax's own
        reports of it (a traceback per writer thread) are not shown. The
        previous checkpoint is intact: orbax renames a checkpoint's folder
        into place only once it is complete.
    """
    target = os.path.join(_directory(mngr), str(step))
    with disk.reports_dropped_on_disk_error():
        try:
            mngr.save(step, args=ocp.args.StandardSave(state))
            mngr.wait_until_finished()
        except Exception as e:  # noqa: BLE001 - only a refusal by the disk is translated
            disk.raise_disk_error(e, target)
            raise


def save_tree(directory: str, tree: Any) -> None:
    """Writes a pytree of arrays (a mask) as a standalone orbax checkpoint, replacing any.

    Args:
      directory: the checkpoint folder (made absolute), local or a URL.
      tree: the pytree.

    Raises:
      OSError: naming `directory` when the disk refuses the write, as in `save_state`.
    """
    directory = files.absolute(directory)
    with disk.reports_dropped_on_disk_error():
        try:
            with ocp.StandardCheckpointer() as ckpt:
                ckpt.save(directory, tree, force=True)
        except Exception as e:  # noqa: BLE001 - only a refusal by the disk is translated
            disk.raise_disk_error(e, directory)
            raise


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}"


def set_aside_folder(directory: str) -> str:
    """Where unreadable checkpoints of `directory` are moved: a sibling folder."""
    return files.absolute(directory).rstrip("/") + ".damaged"


def _set_aside(mngr: ocp.CheckpointManager, step: int) -> str:
    """Moves the folder of checkpoint `step` out of the manager's sight; returns its new path.

    Locally one rename. On an object store a move copies every object and
    deletes the original: a kill in between leaves the step both set aside and
    in place, still unreadable, and the next run sets it aside again (under a
    new name).
    """
    directory = _directory(mngr)
    source = os.path.join(directory, str(step))
    target_dir = set_aside_folder(directory)
    files.makedirs(target_dir)
    target, n = os.path.join(target_dir, str(step)), 1
    while files.exists(target):
        target, n = os.path.join(target_dir, f"{step}.{n}"), n + 1
    files.move(source, target)
    return target


def _directory(mngr: ocp.CheckpointManager) -> str:
    """The manager's folder as a path string (an epath keeps a URL's scheme in str)."""
    return str(mngr.directory)


def restore_state(
    mngr: ocp.CheckpointManager, abstract_state: Any, *, set_aside: bool = True
) -> tuple[Any, int] | None:
    """Restores the newest checkpoint that can be read, setting damaged newer ones aside.

    Checkpoints are tried from the newest. One that cannot be read is reported
    in one line on stderr (step and error); once an older one restores, every
    newer unreadable one is moved into ``<checkpoints>.damaged/`` (never
    deleted), so the run resumes from the intact one and later saves do not
    collide with it. When none can be read nothing is moved and an error says
    why for each step.

    Args:
      mngr: the manager.
      abstract_state: a pytree of arrays (or ShapeDtypeStructs) of the state.
      set_aside: move unreadable checkpoints away (only one process of a
        multi-process run should; the others pass False).

    Returns:
      (state, step), or None when there is no checkpoint yet.

    Raises:
      ResultFileError: when checkpoints exist but none can be read.
    """
    steps = sorted(mngr.all_steps(), reverse=True)
    damaged = []
    for step in steps:
        try:
            state = mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))
        except Exception as e:  # noqa: BLE001 - any failure to read means: try the previous one
            damaged.append((step, _one_line(e)))
            print(f"checkpoint of step {step} cannot be read: {damaged[-1][1]}", file=sys.stderr)
            continue
        if damaged and set_aside:
            for bad_step, _ in damaged:
                moved = _set_aside(mngr, bad_step)
                print(f"checkpoint of step {bad_step} set aside in {moved}; resuming from step "
                      f"{step}", file=sys.stderr)
            mngr.reload()
        return state, step
    if damaged:
        reasons = "; ".join(f"step {s}: {why}" for s, why in damaged)
        raise ResultFileError(
            f"no checkpoint in {mngr.directory} can be read ({reasons}). Nothing was moved; "
            "use a new --workdir, or move the checkpoints folder away to start over.")
    return None
