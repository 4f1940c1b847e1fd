"""A command's console starts with its own lines, not TensorFlow's or absl's start-up noise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import SHARED_TFDS

from force_jax.commands import startup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEVEL = startup.LIBRARY_LOG_LEVEL[0]


def test_the_level_is_set_unless_the_user_set_one():
    environ = {}
    startup.quiet_library_logs(environ, startup={}, load=None)
    assert environ == {LEVEL: "3"}
    environ = {LEVEL: "1"}  # jax's default, set on import: not the user's choice
    startup.quiet_library_logs(environ, startup={}, load=None)
    assert environ == {LEVEL: "3"}
    for users in ("0", "1", "3"):
        environ = {LEVEL: users}
        startup.quiet_library_logs(environ, startup={LEVEL: users}, load=None)
        assert environ == {LEVEL: users}
    environ = {LEVEL: "1"}  # the start-up environment unknown: any value counts as the user's
    startup.quiet_library_logs(environ, startup=None, load=None)
    assert environ == {LEVEL: "1"}


def test_only_the_startup_noise_of_a_load_is_held_back(capfd):
    def load():  # what TensorFlow 2.21 writes from C++ as it loads, and one real line
        os.write(2, (startup.STARTUP_NOISE[0] + "\n").encode())
        os.write(2, b"I0000 00:00:1.5 123 port.cc:153] oneDNN custom operations are on. You "
                    b"may see slightly different numerical results\n")
        os.write(2, b"E0000 a real error line\n")
        return 42

    assert startup.load_quietly(load) == 42
    assert capfd.readouterr().err == "E0000 a real error line\n"
    calls = []
    startup.quiet_library_logs({}, startup={}, load=lambda: calls.append("loaded"))
    startup.quiet_library_logs({}, startup={LEVEL: "0"}, load=lambda: calls.append("loaded"))
    assert calls == ["loaded"]  # a level the user set: nothing held back
    with pytest.raises(ZeroDivisionError):  # a failing load still gives the console back
        startup.load_quietly(lambda: (os.write(2, b"before the failure\n"), 1 / 0))
    print("after", file=sys.stderr)
    assert capfd.readouterr().err == "before the failure\nafter\n"


def test_the_startup_environment_is_the_user_s_not_what_a_library_set_since(tmp_path,
                                                                             monkeypatch):
    environment = startup.startup_environment()
    if environment is None:
        pytest.skip("no /proc/self/environ")
    monkeypatch.setenv("FORCE_JAX_SET_AFTER_START", "1")
    assert "FORCE_JAX_SET_AFTER_START" not in startup.startup_environment()
    assert environment.get("PATH") == os.environ.get("PATH")
    (tmp_path / "environ").write_bytes(b"A=1\0B=x=y\0\0")
    assert startup.startup_environment(str(tmp_path / "environ")) == {"A": "1", "B": "x=y"}
    assert startup.startup_environment(str(tmp_path / "missing")) is None


def _is_own(line: str) -> bool:
    """A line of the prune command itself: its density table, or a warning of our code."""
    return line.startswith("layer ") or (f"{os.sep}force_jax{os.sep}" in line
                                         and "Warning:" in line)


def noise_before_first_own_line(output: str) -> list[str]:
    """The console lines before the command's first own line (all of them if it has none)."""
    lines = output.splitlines()
    first = next((i for i, line in enumerate(lines) if _is_own(line)), len(lines))
    return lines[:first]


def test_noise_counting_by_hand():
    output = ("WARNING: All log messages before absl::InitializeLog() is called are written to "
              "STDERR\nW0000 cache_dataset_ops.cc:912] The calling iterator\n"
              f"{ROOT}/force_jax/core/pruning.py:247: UserWarning: layer collapse\n"
              "layer   kept\n")
    assert len(noise_before_first_own_line(output)) == 2
    assert noise_before_first_own_line("layer   kept\nI0000 late\n") == []


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_TFDS.is_dir(), reason="no shared TFDS folder")
def test_commands_start_with_their_own_lines_and_still_show_our_warnings(tmp_path):
    """Two tiny prune runs and a tiny default training run at once.

    The prune command as a user starts it, and with TF_CPP_MIN_LOG_LEVEL=0;
    the training run as a user starts it.

    The second shows what the command printed before it quieted the libraries
    (TensorFlow's and XLA's C++ log lines, absl's "All log messages before
    absl::InitializeLog()"), and that a level the user sets is kept.
    Random pruning at 99.99 % empties conv_0 of LeNet-5: the collapse
    warning, from our code, must still show.
    """
    command = [sys.executable, "-m", "force_jax.prune", "--config=configs/default.py",
               f"--config.data.data_dir={SHARED_TFDS}", "--config.prune.method=random",
               "--config.prune.sparsity=0.9999", "--config.prune.steps=1",
               "--config.prune.pool_size=64", "--config.prune.batch_size=64",
               "--config.mesh.num_devices=1"]
    # As a user starts it: no level set, and one CPU device (not conftest's eight).
    quiet_env = {k: v for k, v in os.environ.items() if k not in (LEVEL, "XLA_FLAGS")}
    quiet_env["PYTHONUNBUFFERED"] = "1"  # stdout and stderr interleaved as printed
    # The default training run, two steps of it, as a user starts it.
    train = [sys.executable, "-m", "force_jax.train", "--config=configs/default.py",
             f"--config.data.data_dir={SHARED_TFDS}", "--config.train.num_steps=2",
             "--config.prune.steps=2", "--config.prune.pool_size=64",
             "--config.prune.batch_size=64", "--config.mesh.num_devices=1"]
    runs = {name: subprocess.Popen(
        [*argv, f"--workdir={tmp_path / name}"], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for name, argv, env in (("quiet", command, quiet_env),
                                ("loud", command, {**quiet_env, LEVEL: "0"}),
                                ("train", train, quiet_env))}
    outputs = {name: run.communicate(timeout=900)[0] for name, run in runs.items()}
    for name, run in runs.items():
        assert run.returncode == 0, outputs[name][-3000:]
    loud = noise_before_first_own_line(outputs["loud"])
    assert len(loud) > 0, outputs["loud"][-3000:]  # the count the command had before
    assert noise_before_first_own_line(outputs["quiet"]) == [], outputs["quiet"][-3000:]
    assert noise_before_first_own_line(outputs["train"]) == [], outputs["train"][-3000:]
    assert "test accuracy" in outputs["train"]
    assert "UserWarning: layer collapse" in outputs["quiet"]
    assert "layer collapse" in outputs["loud"]
