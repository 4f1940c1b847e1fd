"""A command's first lines: TensorFlow's and XLA's start-up log lines kept off the console.

`quiet_library_logs`, called by an entry point before TensorFlow is imported,
sets the C++ log level those libraries start with (unless the user's own
environment set it); `load_quietly` holds back the few lines TensorFlow
writes before that level applies. Python warnings and absl's Python logging,
our own warnings and errors, are never held back.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

# The C++ log level TensorFlow and XLA start with: "3" drops their INFO, WARNING and ERROR
# lines (cpu_feature_guard, TF-TRT, a partly read dataset cache, the cuDNN/cuBLAS factories
# registered twice, XLA's "Very slow compile?" alarm); a failure still raises, with its
# message, in Python. jax's default, 1, keeps WARNING and ERROR. Python warnings and absl's
# Python logging (our own warnings and errors) are not affected; TF_CPP_MIN_LOG_LEVEL=0
# shows every line.
LIBRARY_LOG_LEVEL = ("TF_CPP_MIN_LOG_LEVEL", "3")

# Lines TensorFlow writes while it loads, before absl's C++ logging is set up, which that
# level does not reach (TensorFlow 2.21 on a CPU where oneDNN's custom operations run, each
# line twice). `load_quietly` holds back these lines only; any other line is printed.
STARTUP_NOISE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "] oneDNN custom operations are on.",
)


def startup_environment(path: str = "/proc/self/environ") -> dict[str, str] | None:
    """The environment the process started with: the user's settings, before any library's.

    `os.environ` cannot tell them apart: importing jax (the package imports
    it, before an entry point runs) sets TF_CPP_MIN_LOG_LEVEL=1 where the
    user set nothing. Linux keeps the environment the process was started
    with in /proc/self/environ.

    Args:
      path: the file holding it (NUL-separated NAME=VALUE entries).

    Returns:
      NAME -> VALUE, or None where the file cannot be read (not Linux).
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    entries = (entry.split(b"=", 1) for entry in raw.split(b"\0") if b"=" in entry)
    return {name.decode(errors="replace"): value.decode(errors="replace")
            for name, value in entries}


def _import_tensorflow() -> None:
    import tensorflow  # noqa: F401


def load_quietly(load: Callable[[], Any]) -> Any:
    """Runs `load` holding back the `STARTUP_NOISE` lines it writes to the standard error.

    The lines come from C++ (file descriptor 2, not `sys.stderr`), so the
    descriptor points to a temporary file while `load` runs; afterwards every
    held line that is not start-up noise is written to `sys.stderr`, in order.

    Args:
      load: what to run, e.g. an import of TensorFlow.

    Returns:
      What `load` returns.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError):  # no standard error to hold lines back from
        return load()
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            return load()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read().decode(errors="replace")
            kept = [line for line in text.splitlines(keepends=True)
                    if not any(noise in line for noise in STARTUP_NOISE)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def quiet_library_logs(environ: MutableMapping[str, str], startup: Mapping[str, str] | None,
                       load: Callable[[], Any] | None = _import_tensorflow) -> None:
    """Keeps TensorFlow's and XLA's start-up log lines off the console.

    Call from an entry point (under ``if __name__ == "__main__"``) before
    TensorFlow is imported: TensorFlow reads the level when it loads. A level
    the user set (``TF_CPP_MIN_LOG_LEVEL=0`` shows every line) is kept, and
    then nothing else is done; one set by a library since the process started
    (jax sets 1) is not the user's. Where the level is set, TensorFlow is also
    loaded here with its `STARTUP_NOISE` lines held back (`load_quietly`).

    Args:
      environ: the process environment (os.environ), changed in place.
      startup: the environment the process started with (`startup_environment`);
        None when unknown: then any value in `environ` counts as the user's.
      load: what loads the library whose start-up lines are held back; None
        sets the level only.
    """
    name, level = LIBRARY_LOG_LEVEL
    if name not in (environ if startup is None else startup):
        environ[name] = level
        if load is not None:
            load_quietly(load)
