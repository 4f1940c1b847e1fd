"""Atomic result files: complete or absent, never half written, with the usual mode."""

from __future__ import annotations

import json
import os
import stat

import matplotlib.pyplot as plt
import pytest

from force_jax import checkpoint, plots


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


def test_jsonl_append_and_truncate_for_resume(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    for step in (10, 20, 30):
        checkpoint.append_jsonl(path, {"step": step})
    checkpoint.truncate_jsonl(path, 20)
    assert [r["step"] for r in checkpoint.read_jsonl(path)] == [10, 20]
    assert checkpoint.read_jsonl(str(tmp_path / "missing.jsonl")) == []


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
