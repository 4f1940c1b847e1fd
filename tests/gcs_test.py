"""Run folders on an object store: gs:// workdirs against a real GCS server on 127.0.0.1.

The server is fake-gcs-server (`gcs_server.py`), started once for the module with its
in-memory backend. Its address reaches gcsfs and google-cloud-storage through
STORAGE_EMULATOR_HOST and orbax's tensorstore through TENSORSTORE_GCS_HTTP_URL; conftest.py
sets the flags gcsfs and etils read once. What is not tested here: TensorFlow's own GCS
client (TFDS reading a gs:// data_dir), which cannot be pointed at a local server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gcs_server
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sweep_test import tiny_sweep_config
from train_test import final_state, needs_real_data, tiny_config

from force_jax.commands import prune_command, sweep, train
from force_jax.config import pruning_run, setup
from force_jax.errors import ConfigError, StoreError, WorkdirError
from force_jax.reports import sweep_compare
from force_jax.runs import checkpoint, files, lock, metrics, store, workdir

pytestmark = [pytest.mark.xdist_group("gcs"),
              pytest.mark.skipif(gcs_server.binary() is None,
                                 reason="fake-gcs-server is not installed")]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server():
    """One server for the module, its address in this process's environment."""
    with gcs_server.running_server("runs") as running, pytest.MonkeyPatch.context() as patch:
        for key, value in running.env.items():
            patch.setenv(key, value)
        yield running


@pytest.fixture
def bucket(server, request):
    """A fresh gs:// folder for one test."""
    return f"gs://{server.bucket}/{request.node.name}"


def test_files_read_write_list_and_move_objects(bucket):
    path = f"{bucket}/a/results.csv"
    files.write_atomic(path, "x,y\n")
    files.write_atomic(path, b"x,y\n1,2\n")  # replaced whole
    assert files.read_text(path) == "x,y\n1,2\n" and files.getsize(path) == 8
    assert files.exists(path) and files.isfile(path) and files.isdir(f"{bucket}/a")
    assert not files.exists(f"{bucket}/a/other.csv")
    files.write_atomic(f"{bucket}/a/b/c.json", "{}")
    assert sorted(files.listdir(f"{bucket}/a")) == ["b", "results.csv"]
    files.move(f"{bucket}/a/b", f"{bucket}/moved")
    assert files.listdir(f"{bucket}/moved") == ["c.json"] and not files.exists(f"{bucket}/a/b")
    assert files.absolute(path) == path
    files.remove(path)
    files.remove(path)  # a missing file is no error
    files.rmtree(f"{bucket}/moved")
    assert not files.exists(f"{bucket}/moved")
    with pytest.raises(ValueError, match="cannot be appended to"):
        files.append_line(f"{bucket}/metrics.jsonl", "{}\n")


def test_an_exclusive_create_succeeds_once(bucket):
    assert files.create_exclusive(f"{bucket}/lock", "first")
    assert not files.create_exclusive(f"{bucket}/lock", "second")
    assert files.read_text(f"{bucket}/lock") == "first"


def test_paths_a_user_mistyped_or_cannot_reach_are_one_line_errors(server, monkeypatch):
    with pytest.raises(ConfigError, match=r"^--workdir=gs:/runs/x is neither a local folder "
                       r"nor a URL; did you mean gs://runs/x\?$"):
        store.check_path("gs:/runs/x", "--workdir")
    with pytest.raises(ConfigError, match=r"^--workdir=s3://b/x: s3:// needs s3fs, which is "
                       "not installed"):
        store.check_path("s3://b/x", "--workdir")
    with pytest.raises(ConfigError, match="nope:// is not a known filesystem"):
        store.check_path("nope://b/x", "--workdir")
    assert store.check_path("runs/x", "--workdir") == "runs/x"
    with pytest.raises(ConfigError, match="bucket 'missing' does not exist"):
        store.check_reachable("gs://missing/run", "--workdir")
    store.check_reachable(f"gs://{server.bucket}/new", "--workdir")
    # Nobody listens: an error naming the path within the timeout, not a minute of retries.
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{gcs_server.free_port()}")
    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"^--workdir=gs://runs/x: the object store did not "
                       r"answer within 2 s"):
        store.check_reachable("gs://runs/x", "--workdir", timeout_s=2)
    assert time.monotonic() - start < 10


def _wait_until_stopped(pid: int, timeout: float = 10.0) -> None:
    """Waits until the kernel shows the process stopped (a signal is delivered asynchronously)."""
    deadline = time.monotonic() + timeout
    while open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
        assert time.monotonic() < deadline, "the server did not stop"
        time.sleep(0.01)


def test_a_store_that_stops_answering_stops_the_call_in_one_line(bucket, server, monkeypatch):
    path = f"{bucket}/metrics.jsonl"
    files.write_atomic(path, "{}\n")
    monkeypatch.setattr(store, "STORE_TIMEOUT_S", 2.0)
    os.kill(server._process.pid, signal.SIGSTOP)  # frozen: it accepts, and never answers
    _wait_until_stopped(server._process.pid)
    try:
        start = time.monotonic()
        with pytest.raises(StoreError) as stopped:
            files.write_atomic(path, "{}\n{}\n")
        waited = time.monotonic() - start
    finally:
        os.kill(server._process.pid, signal.SIGCONT)
    assert waited < 30, waited  # bounded, not the client's endless retries
    message = str(stopped.value)
    assert "\n" not in message and message.startswith(f"{path}: the object store failed (no "
                                                      "answer within 2 s)")
    assert "it resumes from its last checkpoint" in message
    # Answering again, the store holds one whole object, old or new (the upload may land late).
    assert files.read_text(path) in ("{}\n", "{}\n{}\n")


def test_a_store_that_went_away_stops_the_call_in_one_line(server, monkeypatch):
    monkeypatch.setattr(store, "STORE_TIMEOUT_S", 2.0)
    # Nobody listens there any more: connections are refused, which gcsfs retries.
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{gcs_server.free_port()}")
    path = f"gs://{server.bucket}/gone/metrics.jsonl"
    start = time.monotonic()
    with pytest.raises(StoreError, match=f"^{path}: the object store failed"):
        files.write_atomic(path, "{}\n")
    assert time.monotonic() - start < 30


def test_a_stale_sweep_lock_is_refused_naming_its_cells_stale_locks_too(bucket):
    holder = json.dumps({"pid": 1, "host": "gone", "started": "earlier"})
    for path in ("sweep/lock", "sweep/cells/a/lock", "sweep/cells/b/lock"):
        files.write_atomic(f"{bucket}/{path}", holder)
    files.write_atomic(f"{bucket}/sweep/cells/c/metrics.json", "{}")  # a finished cell
    with pytest.raises(WorkdirError) as refused:
        with lock.workdir_lock(f"{bucket}/sweep"):
            pass
    message = str(refused.value)
    assert f"delete {bucket}/sweep/lock and rerun; delete with it the 2 lock(s)" in message
    assert f"{bucket}/sweep/cells/a/lock, {bucket}/sweep/cells/b/lock" in message


def test_the_lock_is_one_object_and_a_second_run_is_refused_naming_the_holder(bucket):
    with lock.workdir_lock(bucket):
        record = json.loads(files.read_text(f"{bucket}/lock"))
        assert record["pid"] == os.getpid()
        with pytest.raises(WorkdirError) as refused:
            with lock.workdir_lock(bucket):
                pass
        assert f"is locked by process {os.getpid()} on host" in str(refused.value)
        assert f"delete {bucket}/lock and rerun" in str(refused.value)
    assert not files.exists(f"{bucket}/lock")
    with lock.workdir_lock(bucket):  # released: free again
        pass


def test_metrics_lines_are_rewritten_whole_and_resume_from_the_checkpoint(bucket):
    path = f"{bucket}/metrics.jsonl"
    writer = metrics.JsonlWriter(path)
    for step in (3, 6, 9):
        writer.write_scalars(step, {"loss": 1.0 / step})
    assert [r["step"] for r in checkpoint.read_jsonl(path)] == [3, 6, 9]
    # Killed after step 9's record, before its checkpoint: the run resumes from step 6.
    kept = checkpoint.resume_records(path, 6)
    checkpoint.write_jsonl(path, kept)
    resumed = metrics.JsonlWriter(path, kept)
    resumed.write_scalars(9, {"loss": 0.5})
    assert [(r["step"], r["loss"]) for r in checkpoint.read_jsonl(path)] == [
        (3, 1 / 3), (6, 1 / 6), (9, 0.5)]


def test_tensorboard_events_are_uploaded_and_readable(bucket):
    import tensorflow as tf

    writer = metrics.TensorBoardWriter(f"{bucket}/tensorboard")
    writer.write_scalars(3, {"test_accuracy": 0.25, "note": "text"})
    (name,) = files.listdir(f"{bucket}/tensorboard")
    writer.write_scalars(6, {"test_accuracy": 0.5})
    writer.close()
    assert files.listdir(f"{bucket}/tensorboard") == [name]
    local = Path(os.environ.get("TMPDIR", "/tmp")) / f"events-{os.getpid()}"
    local.write_bytes(files.read_bytes(f"{bucket}/tensorboard/{name}"))
    try:
        values = [(event.step, tf.make_ndarray(value.tensor).item())
                  for event in tf.compat.v1.train.summary_iterator(str(local))
                  for value in event.summary.value]
    finally:
        local.unlink()
    assert values == [(3, 0.25), (6, 0.5)]


def test_a_damaged_checkpoint_on_gcs_is_set_aside_and_the_previous_one_restores(bucket):
    mngr = checkpoint.manager(f"{bucket}/checkpoints")
    for step in (1, 2):
        checkpoint.save_state(mngr, step, {"w": jnp.full((4,), float(step))})
    data = f"{bucket}/checkpoints/2/default"
    damaged = [f"gs://{p}" for p in store.filesystem(bucket).find(data)
               if "/d/" in p]
    assert damaged
    for path in damaged:
        files.write_atomic(path, b"not what was written")
    template = {"w": jax.ShapeDtypeStruct((4,), jnp.float32)}
    state, step = checkpoint.restore_state(checkpoint.manager(f"{bucket}/checkpoints"), template)
    assert step == 1 and np.all(np.asarray(state["w"]) == 1.0)
    assert files.listdir(f"{bucket}/checkpoints.damaged") == ["2"]
    assert sorted(checkpoint.manager(f"{bucket}/checkpoints").all_steps()) == [1]


def test_a_sweep_folder_on_gcs_resumes_and_is_compared(bucket, tmp_path):
    config = tiny_sweep_config()
    ran = []

    def finishes(cell_config, cell_dir):
        ran.append(os.path.basename(cell_dir))
        workdir.record_config(cell_dir, cell_config)
        accuracy = 0.5 if cell_config.prune.method == "force" else 0.25
        checkpoint.write_json(os.path.join(cell_dir, "metrics.json"),
                              {"test_accuracy": accuracy})

    rows = sweep.run_sweep(config, f"{bucket}/sweep", train_fn=finishes)
    assert len(ran) == 4 and [r["test_accuracy"] for r in rows] == [0.5, 0.5, 0.25, 0.25]
    assert "| force |" in files.read_text(f"{bucket}/sweep/summary.md")
    assert files.read_bytes(f"{bucket}/sweep/accuracy_vs_sparsity.png")[:4] == b"\x89PNG"
    assert not files.exists(f"{bucket}/sweep/lock")
    again = sweep.run_sweep(config, f"{bucket}/sweep", train_fn=lambda *a: pytest.fail("reran"))
    assert [r["test_accuracy"] for r in again] == [r["test_accuracy"] for r in rows]
    config.train.num_steps = 60
    with pytest.raises(WorkdirError, match="holds cells of another sweep config"):
        sweep.run_sweep(config, f"{bucket}/sweep", train_fn=finishes)
    out = f"{bucket}/compare"
    compared = sweep_compare.write_comparison(
        [("here", f"{bucket}/sweep"), ("again", f"{bucket}/sweep")], out)
    assert len(compared) == 8
    assert "here" in files.read_text(f"{out}/summary.md")
    assert files.exists(f"{out}/accuracy_vs_sparsity.png")


@pytest.mark.slow  # prune_cli_test runs the same command on a local folder
@needs_real_data
def test_the_prune_command_writes_its_mask_record_and_figure_to_gcs(bucket):
    config = tiny_config()
    report = prune_command.prune_and_save(config, f"{bucket}/prune")
    assert json.loads(files.read_text(f"{bucket}/prune/prune.json"))["report"]["kept"] == (
        report.kept)
    assert files.read_bytes(f"{bucket}/prune/layer_density.png")[:4] == b"\x89PNG"
    model = setup.build_model(config, 10)
    variables = setup.init_variables(model, (28, 28, 1), jax.random.key(0))
    mask = prune_command.load_mask(f"{bucket}/prune", variables["params"])
    assert pruning_run.mask_report(model, variables, mask, (28, 28, 1)) == report


def _launch(workdir_url: str, server, log: Path, *flags: str) -> subprocess.Popen:
    """`python -m force_jax.train` of the tiny config on `workdir_url`, against the server."""
    settings = {"prune.steps": 3, "prune.pool_size": 256, "prune.batch_size": 64,
                "train.batch_size": 32, "train.num_steps": 6, "eval_every_steps": 3,
                "eval_max_batches": 2, "eval_batch_size": 100, "mesh.num_devices": 1}
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "force_jax.train", "--config=configs/default.py",
             f"--workdir={workdir_url}", *(f"--config.{k}={v}" for k, v in settings.items()),
             f"--config.data.data_dir={tiny_config().data.data_dir}", *flags],
            cwd=ROOT, env={**os.environ, **server.env, "JAX_PLATFORMS": "cpu"},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _results(metrics: dict) -> dict:
    """A run's final metrics without its timing."""
    return {k: v for k, v in metrics.items() if k != "images_per_second"}


@pytest.mark.slow
@needs_real_data
def test_a_run_on_gcs_equals_the_local_run_and_resumes_after_a_kill(server, bucket, tmp_path):
    config = tiny_config()
    local = train.train_and_evaluate(config, str(tmp_path / "local"))
    remote = train.train_and_evaluate(config, f"{bucket}/run")
    assert _results(remote) == _results(local)
    assert sorted(files.listdir(f"{bucket}/run")) == [
        "checkpoints", "checkpoints_made_under.json", "config.json", "metrics.json",
        "metrics.jsonl", "prune.json", "tensorboard"]
    assert [r["step"] for r in checkpoint.read_jsonl(f"{bucket}/run/metrics.jsonl")] == [3, 6]

    # Killed (SIGKILL) after its first checkpoint, then run again: the same end.
    killed = f"{bucket}/killed"
    proc = _launch(killed, server, tmp_path / "killed.log")
    deadline = time.monotonic() + 300
    while not files.exists(f"{killed}/checkpoints/3/commit_success.txt"):
        assert proc.poll() is None and time.monotonic() < deadline, (
            (tmp_path / "killed.log").read_text()[-3000:])
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert files.exists(f"{killed}/lock")  # left behind by the killed run
    with pytest.raises(WorkdirError, match=f"delete {killed}/lock and rerun"):
        train.train_and_evaluate(config, killed)
    files.remove(f"{killed}/lock")  # the explicit takeover
    again = train.train_and_evaluate(config, killed)
    assert _results(again) == _results(local)
    state, _ = final_state(config, killed)
    reference, _ = final_state(config, str(tmp_path / "local"))
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(reference.params)):
        np.testing.assert_array_equal(a, b)

    # Another config on the finished workdir is refused, and so is a busy one.
    with pytest.raises(WorkdirError, match="holds a run of another config"):
        train.train_and_evaluate(tiny_config(**{"train.num_steps": 9}), f"{bucket}/run")
    with lock.workdir_lock(f"{bucket}/run"):
        with pytest.raises(WorkdirError, match="is locked by process"):
            train.train_and_evaluate(config, f"{bucket}/run")


@pytest.mark.slow  # the same errors in process: test_paths_a_user_mistyped_or_cannot_reach...
def test_the_command_refuses_a_typo_or_a_missing_filesystem_before_any_work(tmp_path):
    for url, message in (
            ("gs:/runs/x", "error: --workdir=gs:/runs/x is neither a local folder nor a URL; "
                           "did you mean gs://runs/x?"),
            ("s3://b/x", "error: --workdir=s3://b/x: s3:// needs s3fs, which is not installed; "
                         "pip install s3fs, or give a local folder")):
        result = subprocess.run(
            [sys.executable, "-m", "force_jax.train", f"--config={ROOT}/configs/default.py",
             f"--workdir={url}"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.strip().splitlines()[-1] == message
        assert os.listdir(tmp_path) == []
