"""One run per workdir: an exclusive lock held for the whole run.

The lock is the file ``DIR/lock``. A run holds an advisory ``flock`` on it
(released by the kernel when the process dies, however it dies) and writes
its PID, host and start time into it, so that a refused run can say who holds
the workdir. On release the file is emptied and left in place: deleting it
would let a run that opened the old file and one that creates a new file both
believe they hold the lock.

A lock file that still names a holder but whose ``flock`` is free was left by
a run that died without releasing it (``kill -9``, a crash, a lost node). On
the same host the stale lock is taken over with a one-line report naming the
dead run's PID and host. A holder on another host cannot be checked from
here: the run refuses and says which file to delete once that run is known
to be gone. ``flock`` is reliable on local filesystems; on a filesystem that
cannot lock at all, the record decides: a live process with the recorded PID
and start time on this host keeps the workdir.

On an object store (a gs:// workdir) there is no flock, and a PID or host
says nothing about a run on another machine. The lock is then an object
created only if absent (`files.create_exclusive`: on GCS an upload with the
precondition that no generation exists), so of two runs exactly one creates
it; the holder deletes it when it ends. A run that finds the object refuses,
naming the holder recorded in it. A holder that died leaves the object
behind, and nothing here can tell it from a live one on another host: the
rule is an explicit takeover, as for a lock left on another host locally.
The refusal names the object to delete once that run is known to be gone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator

from force_jax.errors import WorkdirError
from force_jax.runs import files, store

LOCK_FILE = "lock"


# flock errors that mean "this filesystem cannot lock", not "someone holds the lock".
_NO_LOCKING = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def _process_start(pid: int) -> str | None:
    """The kernel's start time of a process (Linux /proc), to tell a reused PID apart."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _holder_alive(holder: dict) -> bool:
    """Whether the process a lock record names still runs (on this host)."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    recorded, now = holder.get("process_start"), _process_start(pid)
    return recorded is None or now is None or recorded == now  # else the PID was reused


def _read_holder(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode(errors="replace").strip()
    if not text:
        return {}
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return {"unreadable": text[:80]}
    return holder if isinstance(holder, dict) else {"unreadable": text[:80]}


def _describe(holder: dict) -> str:
    if not holder:
        return "another run (starting or ending)"
    if "unreadable" in holder:
        return f"an unknown run (lock file holds {holder['unreadable']!r})"
    return (f"process {holder.get('pid')} on host {holder.get('host')!r}, "
            f"started {holder.get('started')}")


def _open_locked(path: str) -> tuple[int, dict, bool]:
    """Opens and flocks the lock file.

    Returns:
      (fd, the previous holder's record, whether flock works on this filesystem).
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in _NO_LOCKING:
                return fd, _read_holder(fd), False
            holder = _read_holder(fd)
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise WorkdirError(
                f"{os.path.dirname(path)} is in use by {_describe(holder)}: one run per "
                "workdir. Wait for it to finish, or use another --workdir.") from None
        # The file may have been replaced between open and flock: lock the one at `path`.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd, _read_holder(fd), True
        os.close(fd)


def unusable_workdir(workdir: str, error: OSError) -> str:
    """The one-line reason a workdir cannot be created or written.

    Args:
      workdir: the folder asked for.
      error: what the filesystem said.

    Returns:
      A message naming --workdir, the path at fault and the fix.
    """
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        return f"--workdir={workdir} is an existing file, not a folder; give a folder"
    where = f" ({error.filename})" if error.filename and error.filename != workdir else ""
    return (f"--workdir={workdir} cannot be written{where}: {error.strerror or error}; give a "
            "folder on a writable filesystem")


@contextlib.contextmanager
def workdir_lock(workdir: str, *, enabled: bool = True) -> Iterator[None]:
    """Holds the workdir's lock for the duration of a ``with`` block.

    Args:
      workdir: the run's folder (created if missing).
      enabled: False makes this a no-op (processes other than process 0 of a
        multi-process run, which process 0's lock already covers).

    Yields:
      Nothing; the lock is held inside the block and released after it.

    Raises:
      WorkdirError: when another live run holds the lock, when a lock left
        on another host cannot be checked, or when the workdir is a file or
        cannot be written.
    """
    if not enabled:
        yield
        return
    if store.is_remote(workdir):
        with _object_lock(workdir):
            yield
        return
    path = os.path.join(workdir, LOCK_FILE)
    try:
        os.makedirs(workdir, exist_ok=True)
        fd, previous, flock_works = _open_locked(path)
    except OSError as e:
        raise WorkdirError(unusable_workdir(workdir, e)) from None
    host = socket.gethostname()
    try:
        if previous:
            same_host = previous.get("host") == host
            # With a working flock, holding it proves the recorded run is gone (a PID
            # check could be fooled by a reused PID); without one, the PID check decides.
            if not same_host or (not flock_works and _holder_alive(previous)):
                where = "is alive" if same_host else "may still run on another host"
                raise WorkdirError(
                    f"{workdir} is locked by {_describe(previous)}, which {where}. If that run "
                    f"is gone, delete {path} and rerun.")
            print(f"taking over the stale lock of {_describe(previous)}, which ended "
                  "without releasing it", file=sys.stderr)
        record = {"pid": os.getpid(), "host": host, "process_start": _process_start(os.getpid()),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    try:
        yield
    finally:
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # releases the flock


def _holder_record() -> dict:
    """What a lock says about its holder: PID, host, process start and wall-clock start."""
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "process_start": _process_start(os.getpid()),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def _read_object_holder(path: str) -> dict:
    """The holder an object lock names ({} if it vanished or is empty)."""
    try:
        text = files.read_text(path).strip()
    except FileNotFoundError:
        return {}
    try:
        holder = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {"unreadable": text[:80]}
    return holder if isinstance(holder, dict) else {"unreadable": text[:80]}


def _locks_below(workdir: str, depth: int = 2) -> list[str]:
    """Lock objects in the folders below a workdir, up to `depth` levels (a sweep's cells)."""
    found, folders = [], [workdir]
    for _ in range(depth):
        below = []
        for folder in folders:
            for name in files.listdir(folder) if files.isdir(folder) else []:
                child = os.path.join(folder, name)
                if files.isdir(child):
                    below.append(child)
                    if files.exists(os.path.join(child, LOCK_FILE)):
                        found.append(os.path.join(child, LOCK_FILE))
        folders = below
    return sorted(found)


@contextlib.contextmanager
def _object_lock(workdir: str) -> Iterator[None]:
    """The lock of a workdir on an object store: an object created only if absent.

    Raises:
      WorkdirError: when the lock object exists, naming its holder and the
        object to delete if that run is gone.
    """
    path = os.path.join(workdir, LOCK_FILE)
    if not files.create_exclusive(path, json.dumps(_holder_record()) + "\n"):
        holder = _read_object_holder(path)
        nested = _locks_below(workdir)
        also = ""
        if nested:
            shown = ", ".join(nested[:5]) + (f" and {len(nested) - 5} more" if len(nested) > 5
                                              else "")
            also = (f"; delete with it the {len(nested)} lock(s) its own runs left below "
                    f"(a sweep's cells): {shown}")
        raise WorkdirError(
            f"{workdir} is locked by {_describe(holder)}: one run per workdir. An object store "
            f"cannot tell a live run from one that died; if that run is gone, delete {path} "
            f"and rerun{also}.")
    try:
        yield
    finally:
        files.remove(path)
