"""One run per workdir: an exclusive lock held for the whole run.

The lock is the file ``DIR/lock``. A run holds an advisory ``flock`` on it
(released by the kernel when the process dies, however it dies) and writes
its PID, host and start time into it, so that a refused run can say who holds
the workdir. On release the file is emptied and left in place: deleting it
would let a run that opened the old file and one that creates a new file both
believe they hold the lock.

A lock file that still names a holder but whose ``flock`` is free was left by
a run that died without releasing it (``kill -9``, a crash, a lost node). On
the same host that is checked (the PID must no longer be alive) and the stale
lock is taken over with a one-line report. A holder on another host cannot be
checked from here: the run refuses and says which file to delete once that
run is known to be gone. ``flock`` is reliable on local filesystems; shared
filesystems without lock support fall back to the PID check on one host.
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

LOCK_FILE = "lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


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
    if "unreadable" in holder:
        return f"an unknown run (lock file holds {holder['unreadable']!r})"
    return (f"process {holder.get('pid')} on host {holder.get('host')!r}, "
            f"started {holder.get('started')}")


def _open_locked(path: str) -> tuple[int, dict]:
    """Opens and flocks the lock file; returns (fd, the previous holder's record)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
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
            return fd, _read_holder(fd)
        os.close(fd)


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
      WorkdirError: when another live run holds the lock, or when a lock
        left on another host cannot be checked.
    """
    if not enabled:
        yield
        return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_FILE)
    fd, previous = _open_locked(path)
    host = socket.gethostname()
    try:
        if previous:
            pid = previous.get("pid")
            same_host = previous.get("host") == host
            if not same_host or not isinstance(pid, int) or (pid != os.getpid()
                                                             and _pid_alive(pid)):
                where = "is alive" if same_host else "may still run on another host"
                raise WorkdirError(
                    f"{workdir} is locked by {_describe(previous)}, which {where}. If that run "
                    f"is gone, delete {path} and rerun.")
            print(f"taking over the stale lock of {_describe(previous)}, which ended "
                  "without releasing it", file=sys.stderr)
        record = {"pid": os.getpid(), "host": host,
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
        os.ftruncate(fd, 0)
        os.close(fd)  # releases the flock
