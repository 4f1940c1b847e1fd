"""Metric writers: appended JSON lines, torn tails, a deleted file, TensorBoard events."""

from __future__ import annotations

import json
import os

from force_jax.runs import checkpoint, metrics


def test_jsonl_appends_one_line_per_record_without_rewriting(tmp_path):
    path = str(tmp_path / "m.jsonl")
    writer = metrics.JsonlWriter(path)
    writer.write_scalars(1, {"loss": 2.0})
    inode = os.stat(path).st_ino
    writer.write_scalars(2, {"loss": 1.5})
    assert os.stat(path).st_ino == inode  # appended in place, not replaced
    assert checkpoint.read_jsonl(path) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]


def test_a_torn_last_line_is_dropped_and_a_bad_middle_line_is_not(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, "lo')
    assert checkpoint.read_jsonl(str(path)) == [{"step": 1}]
    path.write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')
    try:
        checkpoint.read_jsonl(str(path))
    except checkpoint.ResultFileError as e:
        assert "line 2" in str(e)
    else:
        raise AssertionError("a damaged middle line must be an error")


def test_a_file_deleted_mid_run_is_rewritten_whole(tmp_path):
    path = str(tmp_path / "m.jsonl")
    writer = metrics.JsonlWriter(path, records=[{"step": 0, "loss": 3.0}])
    writer.write_scalars(1, {"loss": 2.0})
    os.remove(path)
    writer.write_scalars(2, {"loss": 1.0})
    assert [r["step"] for r in checkpoint.read_jsonl(path)] == [0, 1, 2]


def test_multi_writer_fans_out_to_console_jsonl_and_tensorboard(tmp_path):
    lines = []
    writer = metrics.create_writer(str(tmp_path), is_main=True, print_fn=lines.append)
    writer.write_scalars(5, {"step": 5, "test_accuracy": 0.5})
    writer.close()
    assert lines == ["step=5 test_accuracy=0.5"]
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 5,
                                                                   "test_accuracy": 0.5}
    events = os.listdir(tmp_path / "tensorboard")
    assert events and events[0].startswith("events.out.tfevents")
    assert not metrics.create_writer(str(tmp_path / "other"), is_main=False)._writers
