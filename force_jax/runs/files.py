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

Paths given by a user are checked once, before any work, by `check_path`
(the scheme's filesystem is installed, no ``gs:/x`` typo) and, for a
workdir, `check_reachable` (the store answers within a bounded time).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from force_jax.errors import ConfigError, StoreError

# Why a disk refuses a write: full, over quota, read-only, not ours. The command line
# reports these in one line naming the path (`force_jax.commands.cli`).
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES})

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# "gs:/bucket" (one slash): a URL typed short, which os would take for a local folder.
_ONE_SLASH = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/(?!/)")
# The package that gives fsspec each common scheme, for the error when it is missing.
_PACKAGES = {"gs": "gcsfs", "gcs": "gcsfs", "s3": "s3fs", "s3a": "s3fs", "az": "adlfs",
             "abfs": "adlfs", "hf": "huggingface_hub"}
# How long a workdir's store may take to answer the first request before the run is refused.
REACHABLE_TIMEOUT_S = 20.0
# How long any later request to a store may take (its client's retries included) before the
# run stops with one line naming the file: a store that stops answering never hangs a run.
STORE_TIMEOUT_S = 120.0


def scheme(path: str) -> str | None:
    """The URL scheme of a path ("gs" for gs://b/x), or None for a local path."""
    match = _SCHEME.match(str(path))
    return match.group(1).lower() if match else None


def is_remote(path: str) -> bool:
    """Whether `path` is on an object store (a URL other than file://)."""
    return scheme(path) not in (None, "file")


def _local(path: str) -> str:
    """A local path, with a file:// prefix removed."""
    path = str(path)
    return path[len("file://"):] if scheme(path) == "file" else path


def _filesystem(path: str) -> Any:
    """The fsspec filesystem of a URL, with no listing remembered from before this call.

    fsspec keeps one instance per scheme and arguments, and each remembers
    folder listings. orbax lists checkpoints through another instance (etils
    makes its own), so every instance of the class forgets its listings here,
    and after each change we make: neither sees a listing from before a
    change made by the other, or by another host.
    """
    import fsspec

    fs = fsspec.filesystem(scheme(path))
    _forget_listings(fs)
    return fs


def _forget_listings(fs: Any) -> None:
    """Empties the listing cache of every live instance of `fs`'s filesystem class."""
    for instance in [fs, *list(getattr(type(fs), "_cache", {}).values())]:
        instance.invalidate_cache()


def _on_store(path: str, method: str, *args: Any, **kwargs: Any) -> Any:
    """Calls `method` of the store's filesystem, bounded by STORE_TIMEOUT_S.

    Raises:
      StoreError: naming `path`, when the store does not answer in time or
        cannot be reached (its client's retries exhausted).
      FileNotFoundError, FileExistsError: as the filesystem raises them.
    """
    fs = _filesystem(path)
    try:
        return getattr(fs, method)(*args, timeout=STORE_TIMEOUT_S, **kwargs)
    except (FileNotFoundError, FileExistsError):
        raise
    except Exception as e:
        timed_out = "Timeout" in type(e).__name__ or isinstance(e, TimeoutError)
        unreachable = type(e).__module__.split(".")[0] == "aiohttp"
        if not (timed_out or unreachable):
            raise
        why = (f"no answer within {STORE_TIMEOUT_S:g} s" if timed_out
               else " ".join(f"{type(e).__name__}: {e}".split())[:120])
        raise StoreError(
            f"{path}: the object store failed ({why}), so the run stopped there. Rerun the "
            "same command once the store answers: it resumes from its last checkpoint.") from None


def check_path(path: str, name: str) -> str:
    """Checks that a path given by the user can be used, before any work starts.

    Args:
      path: a local path or a URL (gs://bucket/folder).
      name: what the user set, named in the error (``--workdir``,
        ``config.data.data_dir``).

    Returns:
      `path`, unchanged.

    Raises:
      ConfigError: one line naming `name`: a URL with one slash (``gs:/x``), a
        scheme fsspec does not know, or one whose filesystem is not installed.
    """
    path = str(path)
    found = scheme(path)
    if found is None:
        typo = _ONE_SLASH.match(path)
        if typo and len(typo.group(1)) > 1 and not os.path.exists(path):
            fixed = f"{typo.group(1)}://{path[len(typo.group(0)):]}"
            raise ConfigError(f"{name}={path} is neither a local folder nor a URL; did you mean "
                              f"{fixed}?")
        return path
    if found == "file":
        return path
    import fsspec

    try:
        fsspec.get_filesystem_class(found)
    except ImportError:
        package = _PACKAGES.get(found, f"the fsspec filesystem for {found}://")
        raise ConfigError(f"{name}={path}: {found}:// needs {package}, which is not installed; "
                          f"pip install {package}, or give a local folder") from None
    except ValueError:
        raise ConfigError(f"{name}={path}: {found}:// is not a known filesystem; give a local "
                          "folder or a gs:// URL") from None
    return path


def check_reachable(path: str, name: str, timeout_s: float = REACHABLE_TIMEOUT_S) -> None:
    """Checks that an object store answers for `path`, within a bounded time.

    A store that does not answer would otherwise be retried for minutes by its
    client (gcsfs backs off over about a minute; tensorstore without end).
    Local paths are not checked here (the workdir lock reports them).

    Args:
      path: the folder (a URL; a local path returns at once).
      name: what the user set, named in the error.
      timeout_s: seconds to wait for the answer.

    Raises:
      ConfigError: naming `name` and `path`, when the store does not answer
        in time, refuses the request, or has no such bucket.
    """
    if not is_remote(path):
        return
    fs = _filesystem(path)
    bucket = fs._strip_protocol(path).split("/", 1)[0]
    try:
        found = fs.exists(f"{scheme(path)}://{bucket}", timeout=timeout_s)
    except Exception as e:  # noqa: BLE001 - any failure to answer is the same refusal
        why = "no answer" if "Timeout" in type(e).__name__ else f"{type(e).__name__}: {e}"
        why = " ".join(why.split())[:160]
        raise ConfigError(f"{name}={path}: the object store did not answer within "
                          f"{timeout_s:g} s ({why}); check the address and the "
                          "credentials") from None
    if not found:
        raise ConfigError(f"{name}={path}: bucket {bucket!r} does not exist; create it or fix "
                          "the URL")


def absolute(path: str) -> str:
    """An absolute form of `path` (a URL is already absolute)."""
    return path if is_remote(path) else os.path.abspath(_local(path))


def exists(path: str) -> bool:
    """Whether a file or folder exists at `path` (on a store: an object or a prefix)."""
    return _on_store(path, "exists", path) if is_remote(path) else os.path.exists(_local(path))


def isdir(path: str) -> bool:
    """Whether `path` is a folder (on a store: a prefix with objects under it)."""
    return _on_store(path, "isdir", path) if is_remote(path) else os.path.isdir(_local(path))


def isfile(path: str) -> bool:
    """Whether `path` is a file (on a store: an object)."""
    return _on_store(path, "isfile", path) if is_remote(path) else os.path.isfile(_local(path))


def listdir(path: str) -> list[str]:
    """The names in a folder, as `os.listdir` gives them (no order promised).

    Raises:
      FileNotFoundError: when there is no such folder.
    """
    if not is_remote(path):
        return os.listdir(_local(path))
    fs = _filesystem(path)
    prefix = fs._strip_protocol(path).rstrip("/")
    entries = _on_store(path, "ls", path, detail=False)
    return [entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries
            if entry.rstrip("/") != prefix]


def makedirs(path: str) -> None:
    """Creates a folder and its parents; nothing on an object store, which has no folders."""
    if not is_remote(path):
        os.makedirs(_local(path), exist_ok=True)


def read_bytes(path: str) -> bytes:
    """The content of a file.

    Raises:
      FileNotFoundError: when it does not exist.
    """
    if is_remote(path):
        return _on_store(path, "cat_file", path)
    with open(_local(path), "rb") as f:
        return f.read()


def read_text(path: str) -> str:
    """The content of a file as UTF-8 text."""
    return read_bytes(path).decode("utf-8")


def getsize(path: str) -> int:
    """The size of a file in bytes."""
    return _on_store(path, "size", path) if is_remote(path) else os.path.getsize(_local(path))


def remove(path: str) -> None:
    """Deletes a file; a missing one is not an error."""
    try:
        if is_remote(path):
            _on_store(path, "rm_file", path)
        else:
            os.remove(_local(path))
    except FileNotFoundError:
        pass


def rmtree(path: str) -> None:
    """Deletes a folder and everything in it; a missing one is not an error."""
    if is_remote(path):
        if _on_store(path, "exists", path):
            _on_store(path, "rm", path, recursive=True)
    elif os.path.exists(_local(path)):
        shutil.rmtree(_local(path))


def move(source: str, target: str) -> None:
    """Moves a file or folder (both on one filesystem).

    On a local disk this is one rename. On an object store it is a copy of
    every object then a delete (not atomic): use it for folders set aside, not
    for results a reader may look at meanwhile.
    """
    if is_remote(source):
        fs = _filesystem(source)
        # Copy then delete, object by object (a store's own move call is not everywhere).
        prefix = fs._strip_protocol(source).rstrip("/")
        base = fs._strip_protocol(target).rstrip("/")
        objects = (_on_store(source, "find", source) if _on_store(source, "isdir", source)
                   else [prefix])
        for path in objects:
            _on_store(source, "cp_file", path, base + path[len(prefix):])
        _on_store(source, "rm", objects)
        _forget_listings(fs)
    else:
        os.replace(_local(source), _local(target))


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
    if is_remote(path):
        _on_store(path, "pipe_file", path, payload)
        return
    with _naming(path):
        _write_and_rename(_local(path), payload)


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
        if is_remote(path):
            _on_store(path, "pipe_file", path, payload, mode="create")
            return True
        fd = os.open(_local(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, _default_mode())
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
    if is_remote(path):
        raise ValueError(f"{path}: an object cannot be appended to; rewrite it whole "
                         "(files.write_atomic)")
    with _naming(path), open(_local(path), "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
