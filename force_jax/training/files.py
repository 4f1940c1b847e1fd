"""Writing result and record files: the one place that writes a file of ours.

Every table, record and figure the package writes goes through `write_atomic`
(a temporary file in the same folder, flushed to disk, then renamed onto the
path), so a reader never sees half a file and an interrupted run keeps the
previous version; `append_line` adds one record to a JSON-lines file in place.
A write the disk refuses (full, over quota, read-only, not permitted) raises
an OSError naming the file written, never the temporary one. Checkpoints
(orbax) and TensorBoard events are written by their libraries.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator

# Why a disk refuses a write: full, over quota, read-only, not ours. The command line
# reports these in one line naming the path (`force_jax.experiments.cli`).
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES})


def _as_bytes(data: bytes | str) -> bytes:
    """The bytes to write: a str is encoded as UTF-8.

    Raises:
      TypeError: for anything but bytes, bytearray or str.
    """
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    raise TypeError(f"a file's content is bytes or str, not {type(data).__name__}")


@contextlib.contextmanager
def _naming(path: str) -> Iterator[None]:
    """Raises a write the disk refused as an OSError naming `path`, chained to the original."""
    try:
        yield
    except OSError as e:
        if e.errno not in DISK_ERRNOS:
            raise
        raise OSError(e.errno, e.strerror, path) from e


def _default_mode() -> int:
    """The mode `open(path, "w")` gives a new file: 0o666 minus the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: str, data: bytes | str) -> None:
    """Writes `data` to `path` atomically: a temporary file, flushed, then renamed.

    The folder is created if missing; the file gets the usual mode (0o666
    minus the umask, not the owner-only mode of a temporary file).

    Args:
      path: destination file.
      data: its full content (a str is written as UTF-8).

    Raises:
      TypeError: when `data` is neither bytes nor str; nothing is written.
      OSError: naming `path` (not the temporary file) when the disk refuses
        the write (errno in DISK_ERRNOS); the previous file is kept.
    """
    payload = _as_bytes(data)
    with _naming(path):
        _write_and_rename(path, payload)


def _write_and_rename(path: str, payload: bytes) -> None:
    """The body of `write_atomic`: a temporary file in the folder of `path`, renamed."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def append_line(path: str, line: str) -> None:
    """Appends one line to a file in place and flushes it to disk.

    A kill mid-append leaves at most a torn last line, which the reader
    drops (`checkpoint.read_jsonl`).

    Args:
      path: the file (created if missing).
      line: the text to append, its newline included.

    Raises:
      OSError: naming `path` when the disk refuses the write.
    """
    with _naming(path), open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
