"""One run per workdir: a second process is refused at once, a dead holder's lock is taken
over with its PID and host reported, and the lock is released on exit."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
from train_test import needs_real_data, tiny_config

from force_jax.commands import train
from force_jax.errors import WorkdirError
from force_jax.runs.lock import LOCK_FILE, workdir_lock

HOLD = textwrap.dedent("""
    import sys, time
    from force_jax.runs.lock import workdir_lock
    with workdir_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
""")


def _holder(workdir) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_run_on_a_locked_workdir_fails_at_once_naming_the_holder(tmp_path):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(WorkdirError, match=rf"in use by process {holder.pid} on host "
                                               rf"'{socket.gethostname()}'"):
            with workdir_lock(str(tmp_path)):
                pass
    finally:
        holder.kill()
        holder.wait(timeout=30)


@needs_real_data
def test_train_refuses_a_locked_workdir_before_writing_anything(tmp_path):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(WorkdirError, match="one run per workdir"):
            train.train_and_evaluate(tiny_config(), str(tmp_path))
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE]
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_without_flock_support_the_pid_record_decides(tmp_path, monkeypatch, capsys):
    holder = _holder(tmp_path)

    def cannot_lock(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", cannot_lock)
    try:
        with pytest.raises(WorkdirError, match=rf"locked by process {holder.pid} .* is alive"):
            with workdir_lock(str(tmp_path)):
                pass
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with workdir_lock(str(tmp_path)):  # the recorded process is dead: taken over
        pass
    assert f"stale lock of process {holder.pid}" in capsys.readouterr().err


def test_the_lock_of_a_killed_run_is_taken_over_and_reported(tmp_path, capsys):
    holder = _holder(tmp_path)
    holder.kill()  # like kill -9: no chance to release
    holder.wait(timeout=30)
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == holder.pid
    with workdir_lock(str(tmp_path)):
        held = json.loads((tmp_path / LOCK_FILE).read_text())
    err = capsys.readouterr().err
    assert f"stale lock of process {holder.pid} on host '{socket.gethostname()}'" in err
    assert held["host"] == socket.gethostname() and held["pid"] != holder.pid
    assert (tmp_path / LOCK_FILE).read_text() == ""  # released on exit


def test_a_lock_left_on_another_host_is_not_taken_over(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps(
        {"pid": 4242, "host": "node-17", "started": "2026-11-30 10:00:00 UTC"}))
    with pytest.raises(WorkdirError, match=r"process 4242 on host 'node-17'.*another host.*"
                                           rf"delete .*{LOCK_FILE}"):
        with workdir_lock(str(tmp_path)):
            pass


def test_the_lock_is_released_when_the_run_fails(tmp_path):
    with pytest.raises(RuntimeError), workdir_lock(str(tmp_path)):
        raise RuntimeError("crash")
    with workdir_lock(str(tmp_path)):  # free again, nothing stale reported
        pass
    with workdir_lock(str(tmp_path), enabled=False):  # processes other than 0 take none
        with workdir_lock(str(tmp_path)):
            pass


def _train_command(workdir) -> subprocess.CompletedProcess:
    root = os.path.join(os.path.dirname(__file__), "..")
    return subprocess.run(
        [sys.executable, "-m", "force_jax.train", "--config=configs/default.py",
         f"--workdir={workdir}", f"--config.data.data_dir={tiny_config().data.data_dir}",
         "--config.mesh.num_devices=1"],
        cwd=root, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # the read-only case below keeps the command's one-line path by default
@needs_real_data
def test_a_workdir_that_is_a_file_is_one_line_and_left_alone(tmp_path):
    path = tmp_path / "results.txt"
    path.write_text("keep me\n")
    result = _train_command(path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: --workdir={path} is an existing file, not a folder; give a folder")
    assert path.read_text() == "keep me\n" and sorted(os.listdir(tmp_path)) == ["results.txt"]


@pytest.fixture
def read_only_dir(tmp_path):
    """A real read-only filesystem (a tmpfs mounted ro), where this process may mount one."""
    target = tmp_path / "ro"
    target.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs",
                              str(target)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    yield target
    subprocess.run(["umount", str(target)], check=True)


@needs_real_data
def test_a_workdir_on_a_read_only_filesystem_is_one_line(read_only_dir):
    result = _train_command(read_only_dir / "run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: --workdir={read_only_dir / 'run'} cannot be written: Read-only file system; "
        "give a folder on a writable filesystem")
    assert os.listdir(read_only_dir) == []
