"""Atomic result files with the usual mode; metrics.jsonl validated on resume; checkpoint
restore that falls back from a damaged latest checkpoint to the newest intact one."""

from __future__ import annotations

import json
import os
import stat

import jax
import matplotlib.pyplot as plt
import numpy as np
import pytest

from force_jax.reports import plots
from force_jax.runs import checkpoint


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_write_atomic_replaces_whole_file_with_the_umask_mode(tmp_path):
    path = tmp_path / "out" / "metrics.json"
    checkpoint.write_json(str(path), {"a": 1})
    checkpoint.write_json(str(path), {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    umask = os.umask(0)
    os.umask(umask)
    assert _mode(path) == 0o666 & ~umask  # not mkstemp's owner-only 0o600
    assert os.listdir(path.parent) == ["metrics.json"]  # no temporary file left


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "results.csv"
    checkpoint.write_atomic(str(path), "old\n")

    class Unwritable:
        def __str__(self):
            raise RuntimeError("disk full")

    with pytest.raises(TypeError):
        checkpoint.write_atomic(str(path), Unwritable())
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["results.csv"]


def test_jsonl_append_and_cut_back_for_resume(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    checkpoint.write_jsonl(path, [{"step": step} for step in (10, 20, 30)])
    assert [r["step"] for r in checkpoint.resume_records(path, 20)] == [10, 20]
    assert checkpoint.read_jsonl(str(tmp_path / "missing.jsonl")) == []


def test_a_garbage_line_is_reported_with_file_and_line_number(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 10}\n{"step": 2\n')
    with pytest.raises(checkpoint.ResultFileError, match=r"metrics.jsonl line 2 is not valid JSON"):
        checkpoint.read_jsonl(str(path))


def test_resume_refuses_metrics_that_lack_the_checkpointed_step(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    # Deleted mid-run: only the records written after the deletion remain.
    checkpoint.write_jsonl(path, [{"step": 30}])
    with pytest.raises(checkpoint.ResultFileError, match="no record of step 20"):
        checkpoint.resume_records(path, 20)
    os.remove(path)
    with pytest.raises(checkpoint.ResultFileError, match="no record of step 20"):
        checkpoint.resume_records(path, 20)
    assert checkpoint.resume_records(path, 0) == []  # a fresh run's step-0 checkpoint
    checkpoint.write_jsonl(path, [{"step": 20}, {"step": 10}])  # edited, or two runs wrote it
    with pytest.raises(checkpoint.ResultFileError, match="increasing integer steps"):
        checkpoint.resume_records(path, 10)


def test_an_identical_copy_of_a_record_is_dropped_and_a_different_one_named(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    checkpoint.write_jsonl(path, [{"step": 10, "a": 1.0}, {"step": 10, "a": 1.0},
                                  {"step": 20, "a": 2.0}])
    assert checkpoint.resume_records(path, 20) == [{"step": 10, "a": 1.0},
                                                   {"step": 20, "a": 2.0}]
    checkpoint.write_jsonl(path, [{"step": 10, "a": 1.0}, {"step": 10, "a": 3.0}])
    with pytest.raises(checkpoint.ResultFileError,
                       match="two different records of step 10 .* delete the wrong line"):
        checkpoint.resume_records(path, 10)


def _manager_with_two_checkpoints(directory):
    mngr = checkpoint.manager(str(directory))
    early = {"w": np.arange(12.0).reshape(3, 4), "b": {"c": np.full((5,), 7, np.int32)}}
    checkpoint.save_state(mngr, 3, early)
    checkpoint.save_state(mngr, 6, {"w": early["w"] + 1, "b": {"c": early["b"]["c"] + 1}})
    mngr.close()
    return early


def _truncate_data_files(step_dir):
    data_files = [p for p in step_dir.rglob("*") if p.is_file() and p.parent.name == "d"]
    assert data_files
    for p in data_files:
        with open(p, "r+b") as f:
            f.truncate(p.stat().st_size // 2)


def test_a_damaged_latest_checkpoint_is_set_aside_and_the_intact_one_restored(tmp_path, capsys):
    early = _manager_with_two_checkpoints(tmp_path / "checkpoints")
    _truncate_data_files(tmp_path / "checkpoints" / "6")
    mngr = checkpoint.manager(str(tmp_path / "checkpoints"))
    state, step = checkpoint.restore_state(mngr, jax.tree.map(np.zeros_like, early))
    assert step == 3
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(early)):
        np.testing.assert_array_equal(np.asarray(a), b)  # bit for bit
        assert np.asarray(a).dtype == b.dtype
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "cannot be read" in x)
    assert line.startswith("checkpoint of step 6 cannot be read: ") and len(line) < 320
    # Set aside, not deleted; the manager no longer sees it, and a later save works.
    assert (tmp_path / "checkpoints.damaged" / "6").is_dir()
    assert mngr.all_steps() == [3]
    checkpoint.save_state(mngr, 9, early)
    assert mngr.all_steps() == [3, 9]
    mngr.close()


def test_no_readable_checkpoint_is_a_clear_error_and_moves_nothing(tmp_path):
    early = _manager_with_two_checkpoints(tmp_path / "checkpoints")
    for step in ("3", "6"):
        _truncate_data_files(tmp_path / "checkpoints" / step)
    mngr = checkpoint.manager(str(tmp_path / "checkpoints"))
    with pytest.raises(checkpoint.ResultFileError, match=r"no checkpoint .* can be read.*step 6"):
        checkpoint.restore_state(mngr, jax.tree.map(np.zeros_like, early))
    mngr.close()
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3", "6"]
    assert not (tmp_path / "checkpoints.damaged").exists()


def test_saved_figure_is_readable_by_others_like_any_file(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = tmp_path / "figure.png"
    plots.save_figure(fig, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    umask = os.umask(0)
    os.umask(umask)
    assert _mode(path) == 0o666 & ~umask
    assert os.listdir(tmp_path) == ["figure.png"]
