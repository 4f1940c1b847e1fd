"""Smoke tests of the benchmark scripts: --quick mode on LeNet-5, JSON written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Each starts a benchmark script in a fresh process and compiles its programs: the slow tier.
pytestmark = pytest.mark.slow

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
MACHINE_KEYS = {
    "platform",
    "processor",
    "cpu_count",
    "jax_version",
    "jaxlib_version",
    "device_kind",
    "cpu_model",
    "avx512",
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


def test_options_bench_quick(tmp_path):
    payload = _run("options_bench.py", tmp_path)
    rows = payload["rows"]
    assert {(r["program"], r["variant"]) for r in rows} == {
        (program, variant) for program in ("gradient", "force_step")
        for variant in ("plain", "dot", "reduce", "dot+reduce")}
    for row in rows:
        assert row["seconds"] > 0 and row["over_plain"] > 0
        if row["variant"] == "plain":
            assert row["over_plain"] == 1.0
            assert row.get("max_rel_diff", 0.0) == 0.0
        if row["program"] == "gradient":
            assert 0.0 <= row["max_rel_diff"] < 1.0


def test_effective_bench_quick(tmp_path):
    (row,) = _run("effective_bench.py", tmp_path)["rows"]
    assert row["effective_first_s"] > 0 and row["grad_first_s"] > 0
    assert 0 <= row["effective"] <= row["kept"]


def test_nnx_bench_quick(tmp_path):
    rows = _run("nnx_bench.py", tmp_path)["rows"]
    assert [row["conv"] for row in rows] == ["plain nnx.Conv", "loop_conv", "loop_conv"]
    assert all(row["warm_s"] > 0 for row in rows) and rows[1]["warm_over_fast"] == 1.0


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


# What the accelerator image lacks: parts 1-4 of the suite must run without them.
DEVICE_MISSING = ("ml_collections", "tensorflow", "tensorflow_datasets")


def _run_suite(tmp_path: Path, *flags: str) -> dict:
    """Runs accelerator_suite.py --quick with DEVICE_MISSING unimportable; returns its JSON."""
    script = str(BENCHMARKS / "accelerator_suite.py")
    # None in sys.modules makes `import x` fail and find_spec(x) None, as on that image.
    code = (
        "import runpy, sys; "
        f"sys.modules.update(dict.fromkeys({DEVICE_MISSING!r})); "
        f"sys.path.insert(0, {str(BENCHMARKS)!r}); "
        f"sys.argv = [{script!r}, *sys.argv[1:]]; "
        f"runpy.run_path({script!r}, run_name='__main__')"
    )
    cmd = [sys.executable, "-c", code, "--quick", "--out-dir", str(tmp_path), "--name", "out",
           *flags]
    subprocess.run(cmd, check=True, cwd=BENCHMARKS.parent, timeout=900)
    payload = json.loads((tmp_path / "out.json").read_text())
    assert MACHINE_KEYS | {"backend"} <= set(payload["machine"])
    for key in ("device_kind", "jax_version", "jaxlib_version", "backend"):
        assert payload[key] == payload["machine"][key]
    assert payload["quick"] is True and payload["complete"] is True
    return payload


def test_accelerator_suite_quick(tmp_path):
    # The cheapest run that fills every part's schema but training's and end_to_end's
    # (both run by hand; see RESULTS.md): one method, LeNet-5 seeds only.
    payload = _run_suite(tmp_path, "--parts", "masks,selection,seeds,end_to_end",
                         "--mask-methods", "force")
    parts = payload["parts"]
    assert list(parts) == ["masks", "selection", "seeds", "end_to_end"]
    for name in ("masks", "selection", "seeds"):
        assert "error" not in parts[name] and parts[name]["seconds"] > 0
        assert all("error" not in row for row in parts[name]["rows"])

    (row,) = parts["masks"]["rows"]
    assert {"compile_s", "step_s", "masked_grad_s", "step_over_grad", "device_peak",
            "train_step_static_memory", "program_static_memory",
            "static_memory_ratio"} <= set(row)
    assert row["method"] == "force" and row["steps"] == 3
    assert row["kept"] == int((1 - 0.995) * 430_500)
    assert row["device_peak"] is None  # XLA:CPU keeps no allocator statistics

    rows = parts["selection"]["rows"]
    assert [r["variant"] for r in rows] == ["topk_py", "sorted_masks", "lax_top_k",
                                            "sort_threshold", "approx_max_k"] * 2
    for r in rows:
        assert r["ms"] > 0 and 0.0 <= r["recall"] <= 1.0
        if r["variant"] in ("topk_py", "sorted_masks", "lax_top_k"):  # exact, ties to the lower
            assert r["same_set_as_topk_py"] and r["kept"] == r["k"]
    tied = [r for r in rows if r["case"] == "quantised_ties"]
    assert tied[0]["ties_at_kth"] > 1
    # Sort-and-threshold keeps every score tied with the k-th.
    assert tied[3]["kept"] > tied[3]["k"] and not tied[3]["same_set_as_topk_py"]

    seeds = parts["seeds"]
    assert seeds["runners"] == ["sequential", "vmapped"]
    assert [r["seeds"] for r in seeds["rows"]] == [1, 2]
    for r in seeds["rows"]:
        assert r["sequential_masks_per_s"] > 0 and r["vmapped_masks_per_s"] > 0
        assert r["same_masks"] is True  # one vmapped program, the masks of S prune calls

    # Without TensorFlow the end-to-end part is skipped with its reason, CPU figure kept.
    e2e = parts["end_to_end"]
    assert e2e["skipped"].startswith("not importable: ml_collections, tensorflow")
    assert e2e["cpu_reference"]["test_accuracy_mean"] == 0.865


def test_newer_methods_bench_quick(tmp_path):
    rows = _run("newer_methods_bench.py", tmp_path, "--official", str(tmp_path / "none"))["rows"]
    assert [row["method"] for row in rows] == ["prospr", "ntk_sap", "phew"]
    for row in rows:
        assert row["force_jax_s"] > 0 and row["official_s"] is None


def test_mask_changes_bench_quick(tmp_path):
    payload = _run("mask_changes_bench.py", tmp_path, "--period", "10")
    (row,) = payload["rows"]
    assert row["period"] == 10
    for key in ("plain_step_s", "between_updates_s", "update_step_s"):
        assert row[key] > 0
    expected = (9 * row["between_updates_s"] + row["update_step_s"]) / 10 / row["plain_step_s"]
    assert row["average_over_plain"] == pytest.approx(expected)
