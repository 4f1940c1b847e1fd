"""Smoke tests of the benchmark scripts: --quick mode on LeNet-5, JSON written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
MACHINE_KEYS = {
    "platform",
    "processor",
    "cpu_count",
    "jax_version",
    "jaxlib_version",
    "device_kind",
}


def _run(script: str, tmp_path: Path, *flags: str) -> dict:
    """Runs one benchmark in --quick mode on LeNet-5 at batch 8; returns its JSON."""
    cmd = [
        sys.executable,
        str(BENCHMARKS / script),
        "--quick",
        "--models",
        "lenet5",
        "--batch-sizes",
        "8",
        "--out-dir",
        str(tmp_path),
        "--name",
        "out",
        *flags,
    ]
    subprocess.run(cmd, check=True, cwd=BENCHMARKS.parent, timeout=900)
    payload = json.loads((tmp_path / "out.json").read_text())
    assert MACHINE_KEYS <= set(payload["machine"])
    assert payload["quick"] is True
    return payload


def test_prune_bench_quick(tmp_path):
    payload = _run("prune_bench.py", tmp_path, "--methods", "force")
    (row,) = payload["rows"]
    for key in (
        "compile_first_call_s",
        "step_s",
        "score_grad_s",
        "select_s",
        "rest_s",
        "overhead_ratio",
        "compilations_after_2_sparsities",
        "process_peak_memory",
    ):
        assert key in row
    assert row["compilations_after_2_sparsities"] == 1


def test_train_bench_quick(tmp_path):
    (row,) = _run("train_bench.py", tmp_path)["rows"]
    assert row["images_per_s"] > 0


def test_torch_compare_quick(tmp_path):
    pytest.importorskip("torch")
    (row,) = _run("torch_compare.py", tmp_path)["rows"]
    assert {"torch_fwd_bwd_s", "jax_masked_grad_s", "jax_over_torch"} <= set(row)


def test_layer_bench_quick(tmp_path):
    rows = _run("layer_bench.py", tmp_path)["rows"]
    assert [row["layer"] for row in rows] == [
        "conv 28x28x1->20", "conv 12x12x20->50", "max-pool 24x24x20", "max-pool 8x8x50"
    ]
    for row in rows:
        assert row["before_s"] > 0 and row["after_s"] > 0


def test_chaos_bench_quick(tmp_path):
    payload = _run("chaos_bench.py", tmp_path, "--methods", "force,snip")
    rows = {row["method"]: row for row in payload["rows"]}
    assert set(rows) == {"force", "snip"}
    for row in rows.values():
        assert 0.0 <= row["iou"] <= 1.0 and row["kept"] == int(0.01 * 430_500)
        assert row["differing_kept"] == round(row["kept"] * (1 - row["iou"]) / (1 + row["iou"]))


def test_kernels_bench_quick(tmp_path):
    payload = _run("kernels_bench.py", tmp_path)
    assert [row["kernels"] for row in payload["rows"]] == ["cpu", "plain"]
    for row in payload["rows"]:
        assert row["grad_s"] > 0 and row["prune_step_s"] >= 0
        assert row["grad_plain_over_cpu"] > 0


def test_stream_bench_quick(tmp_path):
    payload = _run("stream_bench.py", tmp_path, "--memory-steps", "2,6")
    (row,) = payload["rows"]
    assert row["pool_step_s"] >= 0 and row["stream_step_s"] >= 0
    assert [m["steps"] for m in payload["memory"]] == [2, 6]
    assert all(m["peak_rss_bytes"] > 0 for m in payload["memory"])
    # Fresh batches at every step, nothing kept: peak memory does not grow with T.
    assert payload["memory_growth_last_over_first"] < 1.2
