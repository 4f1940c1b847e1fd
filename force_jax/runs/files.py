"""Every file a run reads or writes: local folders and object stores (gs://).

One path layer for the package. A path is a string: a local path, or a URL
whose scheme names an fsspec filesystem (``gs://bucket/run`` through gcsfs).
Local paths go through `os` exactly as they always did; URLs go through
fsspec, whose listing cache is emptied at each call, so a file another
process (another host) wrote is seen at once.

Writing:

- `write_atomic` is the one writer of tables, records and figures. On a
  local disk it writes a temporary file in the same folder, flushed, then
  renamed onto the path; on an object store it uploads the object in one
  request, which appears whole or not at all. A reader never sees half a
  file and an interrupted run keeps the previous version.
- `append_line` adds one line in place on a local disk. An object cannot be
  appended to: writers that grow a file (metrics.jsonl) keep its lines and
  rewrite it whole there (`force_jax.runs.metrics.JsonlWriter`), and
  `append_line` refuses a URL rather than rewrite behind the caller's back.
- `create_exclusive` creates a file only if none exists (O_EXCL; on GCS a
  generation-0 precondition), which the object-store lock is built on.

A write the disk refuses (full, over quota, read-only, not permitted) raises
an OSError naming the file written, never the temporary one. Checkpoints
(orbax) and TensorBoard events are written by their libraries.

Finding a URL's filesystem, bounding each call to a store in time, and
checking the paths a user gives are `force_jax.runs.store`'s.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator

from force_jax.runs import store

# Why a disk refuses a write: full, over quota, read-only, not ours. The command line
# reports these in one line naming the path (`force_jax.commands.cli`).
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES})


def absolute(path: str) -> str:
    """An absolute form of `path` (a URL is already absolute)."""
    return path if store.is_remote(path) else os.path.abspath(store.local_path(path))


def exists(path: str) -> bool:
    """Whether a file or folder exists at `path` (on a store: an object or a prefix)."""
    if store.is_remote(path):
        return store.on_store(path, "exists", path)
    return os.path.exists(store.local_path(path))


def isdir(path: str) -> bool:
    """Whether `path` is a folder (on a store: a prefix with objects under it)."""
    if store.is_remote(path):
        return store.on_store(path, "isdir", path)
    return os.path.isdir(store.local_path(path))


def isfile(path: str) -> bool:
    """Whether `path` is a file (on a store: an object)."""
    if store.is_remote(path):
        return store.on_store(path, "isfile", path)
    return os.path.isfile(store.local_path(path))


def listdir(path: str) -> list[str]:
    """The names in a folder, as `os.listdir` gives them (no order promised).

    Raises:
      FileNotFoundError: when there is no such folder.
    """
    if not store.is_remote(path):
        return os.listdir(store.local_path(path))
    fs = store.filesystem(path)
    prefix = fs._strip_protocol(path).rstrip("/")
    entries = store.on_store(path, "ls", path, detail=False)
    return [entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries
            if entry.rstrip("/") != prefix]


def makedirs(path: str) -> None:
    """Creates a folder and its parents; nothing on an object store, which has no folders."""
    if not store.is_remote(path):
        os.makedirs(store.local_path(path), exist_ok=True)


def read_bytes(path: str) -> bytes:
    """The content of a file.

    Raises:
      FileNotFoundError: when it does not exist.
    """
    if store.is_remote(path):
        return store.on_store(path, "cat_file", path)
    with open(store.local_path(path), "rb") as f:
        return f.read()


def read_text(path: str) -> str:
    """The content of a file as UTF-8 text."""
    return read_bytes(path).decode("utf-8")


def getsize(path: str) -> int:
    """The size of a file in bytes."""
    if store.is_remote(path):
        return store.on_store(path, "size", path)
    return os.path.getsize(store.local_path(path))


def remove(path: str) -> None:
    """Deletes a file; a missing one is not an error."""
    try:
        if store.is_remote(path):
            store.on_store(path, "rm_file", path)
        else:
            os.remove(store.local_path(path))
    except FileNotFoundError:
        pass


def rmtree(path: str) -> None:
    """Deletes a folder and everything in it; a missing one is not an error."""
    if store.is_remote(path):
        if store.on_store(path, "exists", path):
            store.on_store(path, "rm", path, recursive=True)
    elif os.path.exists(store.local_path(path)):
        shutil.rmtree(store.local_path(path))


def move(source: str, target: str) -> None:
    """Moves a file or folder (both on one filesystem).

    On a local disk this is one rename. On an object store it is a copy of
    every object then a delete (not atomic): use it for folders set aside, not
    for results a reader may look at meanwhile.
    """
    if store.is_remote(source):
        fs = store.filesystem(source)
        # Copy then delete, object by object (a store's own move call is not everywhere).
        prefix = fs._strip_protocol(source).rstrip("/")
        base = fs._strip_protocol(target).rstrip("/")
        objects = (store.on_store(source, "find", source) if store.on_store(source, "isdir", source)
                   else [prefix])
        for path in objects:
            store.on_store(source, "cp_file", path, base + path[len(prefix):])
        store.on_store(source, "rm", objects)
        store.forget_listings(fs)
    else:
        os.replace(store.local_path(source), store.local_path(target))


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
    """Writes `data` to `path` atomically.

    Locally: a temporary file in the same folder, flushed, then renamed; the
    folder is created if missing, and the file gets the usual mode (0o666
    minus the umask, not the owner-only mode of a temporary file). On an
    object store: one upload, after which the object holds all of `data`
    (before it, the previous object or none).

    Args:
      path: destination file.
      data: its full content (a str is written as UTF-8).

    Raises:
      TypeError: when `data` is neither bytes nor str; nothing is written.
      OSError: naming `path` (not the temporary file) when the disk refuses
        the write (errno in DISK_ERRNOS); the previous file is kept.
    """
    payload = _as_bytes(data)
    if store.is_remote(path):
        store.on_store(path, "pipe_file", path, payload)
        return
    with _naming(path):
        _write_and_rename(store.local_path(path), payload)


def _write_and_rename(path: str, payload: bytes) -> None:
    """The local body of `write_atomic`: a temporary file in the folder of `path`, renamed."""
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


def create_exclusive(path: str, data: bytes | str) -> bool:
    """Creates `path` holding `data` only if nothing exists there, as one atomic step.

    Of several processes (on any hosts) creating the same path, exactly one
    succeeds: locally through O_CREAT | O_EXCL, on GCS through the upload's
    precondition that no generation of the object exists.

    Args:
      path: the file to create.
      data: its content.

    Returns:
      True when this call created the file, False when one existed.
    """
    payload = _as_bytes(data)
    try:
        if store.is_remote(path):
            store.on_store(path, "pipe_file", path, payload, mode="create")
            return True
        fd = os.open(store.local_path(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, _default_mode())
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    return True


def append_line(path: str, line: str) -> None:
    """Appends one line to a local file in place and flushes it to disk.

    A kill mid-append leaves at most a torn last line, which the reader
    drops (`checkpoint.read_jsonl`).

    Args:
      path: the file (created if missing).
      line: the text to append, its newline included.

    Raises:
      ValueError: for a URL: an object cannot be appended to; rewrite it whole
        with `write_atomic`.
      OSError: naming `path` when the disk refuses the write.
    """
    if store.is_remote(path):
        raise ValueError(f"{path}: an object cannot be appended to; rewrite it whole "
                         "(files.write_atomic)")
    with _naming(path), open(store.local_path(path), "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
