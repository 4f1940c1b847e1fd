"""What to tell a user whose disk refused a run's write: one line, the path and the fix."""

from __future__ import annotations

import errno

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
    """The one-line message of a write the disk refused (`checkpoint.disk_error`).

    Args:
      error: the OSError, errno in `checkpoint.DISK_ERRNOS`.
      workdir: the run's --workdir, named when the error names no file.

    Returns:
      "cannot write PATH: REASON; FIX" ("cannot access" for a permission, which
      a read can lack too).
    """
    path = error.filename or f"into --workdir={workdir}"
    verb = "access" if error.errno == errno.EACCES else "write"
    return f"cannot {verb} {path}: {error.strerror}; {_DISK_FIXES[error.errno]}"
