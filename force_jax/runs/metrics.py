"""Metric writers: one interface for the console, a JSON-lines file and TensorBoard.

In the manner of clu's metric_writers, written here to keep the dependencies
few. Every writer takes `write_scalars(step, scalars)`; `MultiWriter` fans
a record out to several, and `create_writer` builds the usual set for a
workdir (only process 0 writes files).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from force_jax.runs import files, store

Scalars = Mapping[str, Any]


class MetricWriter(Protocol):
    """Anything that records scalars by step."""

    def write_scalars(self, step: int, scalars: Scalars) -> None:
        """Records one evaluation's scalars at `step`."""

    def close(self) -> None:
        """Flushes and releases the writer."""


class ConsoleWriter:
    """One line per record, "key=value" with 4 significant digits.

    Args:
      print_fn: where lines go (e.g. a progress bar's write, so the bar is not broken).
    """

    def __init__(self, print_fn: Callable[[str], None] = print):
        self._print = print_fn

    def write_scalars(self, step: int, scalars: Scalars) -> None:
        """Prints the record."""
        del step  # the record carries its own step
        self._print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in scalars.items()))

    def close(self) -> None:
        """Nothing to release."""


class JsonlWriter:
    """One JSON object per record in a file, on disk after each record.

    On a local disk a record is appended: a run killed mid-write leaves at
    most one torn last line, which `force_jax.runs.checkpoint.read_jsonl`
    drops (that record's checkpoint was never written, so the resumed run
    writes it again). The writer remembers its records and the file's size:
    a file deleted or changed by someone else during the run is rewritten
    whole, atomically, at the next record.

    On an object store, which cannot append, the file is rewritten whole from
    the remembered records at each record, in one upload: a kill leaves the
    previous version, and a resumed run starts from the records up to its
    checkpoint (`checkpoint.resume_records`), as on a local disk.

    Args:
      path: the JSON-lines file.
      records: the records the file holds already (a resumed run's).
    """

    def __init__(self, path: str, records: Sequence[Scalars] = ()):
        self._path = path
        self._remote = store.is_remote(path)
        self._lines = [json.dumps(dict(r), sort_keys=True) + "\n" for r in records]
        self._size = None if self._remote else self._size_now()

    def _size_now(self) -> int | None:
        return files.getsize(self._path) if files.exists(self._path) else None

    def write_scalars(self, step: int, scalars: Scalars) -> None:
        """Writes the record (with its step): appended and fsynced, or the file rewritten."""
        line = json.dumps({"step": step, **scalars}, sort_keys=True) + "\n"
        self._lines.append(line)
        if self._remote:
            files.write_atomic(self._path, "".join(self._lines))
            return
        size = self._size_now()
        if size is None or size != self._size:
            files.write_atomic(self._path, "".join(self._lines))
        else:
            files.append_line(self._path, line)
        self._size = self._size_now()

    def close(self) -> None:
        """Nothing held open between records."""


class TensorBoardWriter:
    """Scalar summaries in a TensorBoard event folder (tf.summary, imported lazily).

    tf.summary writes gs:// through TensorFlow's own GCS client, a second
    client beside the package's (gcsfs, `force_jax.runs.files`), with its
    own credentials and retries, which no local test server can stand in for.
    So for a folder on an object store the events are written to a local
    temporary folder, and each event file is uploaded whole, through
    `files.write_atomic`, after every flush: TensorBoard reads the copies in
    ``logdir`` as it would the originals. A resumed run writes a new event
    file beside the old ones, as on a local disk.

    Args:
      logdir: the event folder, local or a URL.
    """

    def __init__(self, logdir: str):
        import tensorflow as tf

        self._tf = tf
        self._logdir = logdir
        self._local = tempfile.mkdtemp(prefix="tensorboard-") if store.is_remote(logdir) \
            else logdir
        self._writer = tf.summary.create_file_writer(self._local)

    def write_scalars(self, step: int, scalars: Scalars) -> None:
        """Writes the numeric values as scalars at `step` and flushes."""
        with self._writer.as_default(step=step):
            for name, value in scalars.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self._tf.summary.scalar(name, value)
        self._writer.flush()
        self._upload()

    def _upload(self) -> None:
        """Copies the local event files to the object store (nothing for a local logdir)."""
        if self._local == self._logdir:
            return
        for name in sorted(os.listdir(self._local)):
            with open(os.path.join(self._local, name), "rb") as f:
                files.write_atomic(os.path.join(self._logdir, name), f.read())

    def close(self) -> None:
        """Closes the event file (and uploads its last version)."""
        self._writer.close()
        self._upload()
        if self._local != self._logdir:
            shutil.rmtree(self._local, ignore_errors=True)


class MultiWriter:
    """Writes every record to each of `writers`, in order.

    Args:
      writers: the writers.
    """

    def __init__(self, writers: Sequence[MetricWriter]):
        self._writers = tuple(writers)

    def write_scalars(self, step: int, scalars: Scalars) -> None:
        """Passes the record to every writer."""
        for writer in self._writers:
            writer.write_scalars(step, scalars)

    def close(self) -> None:
        """Closes every writer."""
        for writer in self._writers:
            writer.close()


def create_writer(workdir: str, *, is_main: bool, records: Sequence[Scalars] = (),
                  print_fn: Callable[[str], None] = print) -> MultiWriter:
    """The writers of a training run: console, workdir/metrics.jsonl, workdir/tensorboard.

    Args:
      workdir: the run's folder.
      is_main: whether this is process 0; other processes write nothing.
      records: the records metrics.jsonl holds already (a resumed run's).
      print_fn: the console's line printer.

    Returns:
      A MultiWriter (empty on processes other than 0).
    """
    if not is_main:
        return MultiWriter(())
    return MultiWriter((ConsoleWriter(print_fn),
                        JsonlWriter(os.path.join(workdir, "metrics.jsonl"), records),
                        TensorBoardWriter(os.path.join(workdir, "tensorboard"))))
