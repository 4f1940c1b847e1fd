"""Object stores (gs://) behind the path layer: schemes, filesystems, bounded calls, checks.

A path is a string: a local path, or a URL whose scheme names an fsspec
filesystem (``gs://bucket/run`` through gcsfs). `force_jax.runs.files` does
every file operation; this module finds a URL's filesystem (whose listing
cache is emptied at each call, so a file another process or host wrote is
seen at once), bounds each call to the store in time, and checks the paths a
user gives once, before any work: `check_path` (the scheme's filesystem is
installed, no ``gs:/x`` typo) and, for a workdir, `check_reachable` (the
store answers within a bounded time).
"""

from __future__ import annotations

import os
import re
from typing import Any

from force_jax.errors import ConfigError, StoreError

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


def local_path(path: str) -> str:
    """A local path, with a file:// prefix removed."""
    path = str(path)
    return path[len("file://"):] if scheme(path) == "file" else path


def filesystem(path: str) -> Any:
    """The fsspec filesystem of a URL, with no listing remembered from before this call.

    fsspec keeps one instance per scheme and arguments, and each remembers
    folder listings. orbax lists checkpoints through another instance (etils
    makes its own), so every instance of the class forgets its listings here,
    and after each change we make: neither sees a listing from before a
    change made by the other, or by another host.
    """
    import fsspec

    fs = fsspec.filesystem(scheme(path))
    forget_listings(fs)
    return fs


def forget_listings(fs: Any) -> None:
    """Empties the listing cache of every live instance of `fs`'s filesystem class."""
    for instance in [fs, *list(getattr(type(fs), "_cache", {}).values())]:
        instance.invalidate_cache()


def on_store(path: str, method: str, *args: Any, **kwargs: Any) -> Any:
    """Calls `method` of the store's filesystem, bounded by STORE_TIMEOUT_S.

    Raises:
      StoreError: naming `path`, when the store does not answer in time or
        cannot be reached (its client's retries exhausted).
      FileNotFoundError, FileExistsError: as the filesystem raises them.
    """
    fs = filesystem(path)
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
    fs = filesystem(path)
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
