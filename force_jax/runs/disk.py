"""A disk that refuses a run's write: recognising it, holding back the noise, one line.

`disk_error` finds the refusal (full, over quota, read-only, not permitted)
under what a write raised, orbax's and tensorstore's errors included;
`reports_dropped_on_disk_error` holds back the hundreds of report lines
orbax's writer threads print for that one cause; `disk_message` is the line
the command prints: the path and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

from force_jax.runs.files import DISK_ERRNOS

# The fix of a write the disk refused, by errno.
_DISK_FIXES = {
    errno.ENOSPC: "free some space (or use a --workdir on another disk) and rerun the same "
                  "command: a run resumes from its last complete checkpoint",
    errno.EDQUOT: "free some of your quota (or use a --workdir on another disk) and rerun the "
                  "same command: a run resumes from its last complete checkpoint",
    errno.EROFS: "use a --workdir on a writable disk",
    errno.EACCES: "use a --workdir (and config.data.data_dir) you may use, or change the "
                  "permissions",
}


def disk_message(error: OSError, workdir: str) -> str:
    """The one-line message of a write the disk refused (`disk_error`).

    Args:
      error: the OSError, errno in `files.DISK_ERRNOS`.
      workdir: the run's --workdir, named when the error names no file.

    Returns:
      "cannot write PATH: REASON; FIX" ("cannot access" for a permission, which
      a read can lack too).
    """
    path = error.filename or f"into --workdir={workdir}"
    verb = "access" if error.errno == errno.EACCES else "write"
    return f"cannot {verb} {path}: {error.strerror}; {_DISK_FIXES[error.errno]}"


# How tensorstore, which writes orbax's checkpoints, reports the OS error under its own.
_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")


_TENSORSTORE_FILE = re.compile(r'local file "([^"]+)"')


def disk_error(error: BaseException, path: str | None = None) -> OSError | None:
    """The OSError that a failed write stands for, when the disk refused it.

    Args:
      error: what the write raised: an OSError, or orbax's error carrying
        tensorstore's ``[os_error_code='28']`` (also in its causes).
      path: what was being written, named in place of the file the error
        names (a temporary one); None keeps the error's own file.

    Returns:
      A new OSError whose errno is in DISK_ERRNOS and whose filename is
      `path` (or the file the error names, if any), or None for any other
      failure.
    """
    for _ in range(8):  # the error and its causes
        if error is None:
            return None
        if isinstance(error, OSError) and error.errno in DISK_ERRNOS:
            return OSError(error.errno, error.strerror, path or error.filename)
        match = _OS_ERROR_CODE.search(str(error))
        if match and int(match.group(1)) in DISK_ERRNOS:
            code = int(match.group(1))
            named = _TENSORSTORE_FILE.search(str(error))
            return OSError(code, os.strerror(code), path or (named and named.group(1)))
        error = error.__cause__ or error.__context__
    return None


class _HeldReports(logging.Filter):
    """Holds back absl log records and unraisable-exception reports while installed."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.unraisables: list[Any] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False


@contextlib.contextmanager
def reports_dropped_on_disk_error() -> Iterator[None]:
    """Holds orbax's error reports back, and drops them if the block fails for the disk.

    When a disk fills during a save, each of orbax's writer threads logs its
    traceback, and tensorstore's callbacks report "Event loop is closed" as
    unraisable exceptions: hundreds of lines for one cause, which the raised
    OSError states in one. Any other outcome shows every report, unchanged.
    """
    held = _HeldReports()
    absl_logger = logging.getLogger("absl")
    hook = sys.unraisablehook
    absl_logger.addFilter(held)
    sys.unraisablehook = held.unraisables.append
    dropped = False
    try:
        yield
    except OSError as e:
        dropped = e.errno in DISK_ERRNOS
        raise
    finally:
        absl_logger.removeFilter(held)
        sys.unraisablehook = hook
        if not dropped:
            for record in held.records:
                absl_logger.handle(record)
            for report in held.unraisables:
                hook(report)


def raise_disk_error(error: BaseException, path: str) -> None:
    """Raises the OSError of `disk_error` naming `path`, chained to `error`, if there is one."""
    refused = disk_error(error, path)
    if refused is not None:
        raise refused from error
