"""The sweep on real Fashion-MNIST: results.csv, figures, skipping finished cells on a
rerun, a failing cell recorded while the others finish, and the command line."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import ml_collections
import pytest
from conftest import SHARED_TFDS
from train_test import tiny_config

from force_jax.commands import sweep, train
from force_jax.config import sweep_grid
from force_jax.errors import ConfigError, WorkdirError
from force_jax.reports import sweep_cells, sweep_report
from force_jax.runs import workdir

ROOT = os.path.join(os.path.dirname(__file__), "..")
needs_real_data = pytest.mark.skipif(not SHARED_TFDS.is_dir(), reason="no shared TFDS folder")


def tiny_sweep_config() -> ml_collections.ConfigDict:
    """2 methods x 2 sparsities x 1 seed of LeNet-5, cut down to seconds per cell."""
    config = tiny_config(eval_every_steps=6)  # one evaluation per cell
    config.sweep = ml_collections.ConfigDict()
    config.sweep.methods = ("force", "snip")
    config.sweep.sparsities = (0.9, 0.99)
    config.sweep.seeds = (0,)
    return config


def read_csv(path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_cell_config_sets_steps_and_grasp_temperature():
    config = tiny_sweep_config()
    config.sweep.synflow_steps = 7
    config.sweep.grasp_temperature = 200.0
    config.sweep.grasp_scoring_loss = "cross_entropy"
    force = sweep_grid.cell_config(config, "force", 0.95, 2)
    assert (force.prune.method, force.prune.sparsity, force.seed) == ("force", 0.95, 2)
    assert force.prune.steps == 3 and force.prune.temperature == 1.0
    assert sweep_grid.cell_config(config, "snip", 0.95, 0).prune.steps is None
    assert sweep_grid.cell_config(config, "synflow", 0.95, 0).prune.steps == 7
    grasp = sweep_grid.cell_config(config, "grasp", 0.95, 0)
    assert grasp.prune.steps is None and grasp.prune.temperature == 200.0
    assert grasp.prune.scoring_loss == "cross_entropy" and force.prune.scoring_loss == (
        config.prune.scoring_loss)
    assert config.prune.method == "force" and config.seed == 0  # the sweep config is untouched
    assert sweep_grid.cell_name("force", 0.995, 1) == "force_s0.995_seed1"


def test_an_allocation_on_the_ablations_axis_makes_a_layerwise_cell():
    config = tiny_sweep_config()
    config.sweep.ablations = ("none", "erk", "random_labels")
    sweep_grid.validate_grid(config.sweep)
    erk = sweep_grid.cell_config(config, "random", 0.99, 0, "erk")
    assert (erk.prune.scope, erk.prune.allocation, erk.prune.ablation) == (
        "layerwise", "erk", "none")
    labels = sweep_grid.cell_config(config, "force", 0.99, 0, "random_labels")
    assert (labels.prune.scope, labels.prune.ablation) == ("global", "random_labels")
    assert sweep_grid.cell_name("random", 0.99, 0, "erk") == "random_s0.99_seed0_erk"
    config.sweep.ablations = ("none", "erk3")
    with pytest.raises(ConfigError, match="unknown \\['erk3'\\]"):
        sweep_grid.validate_grid(config.sweep)


def test_cells_run_seed_by_seed_and_rows_sort_by_method(tmp_path):
    config = tiny_sweep_config()
    config.sweep.seeds = (0, 1)
    calls = []

    def records_calls(cell_config, cell_dir):
        calls.append(os.path.basename(cell_dir))
        raise RuntimeError("not run")

    rows = sweep.run_sweep(config, str(tmp_path), train_fn=records_calls)
    assert calls == [
        "force_s0.9_seed0", "snip_s0.9_seed0", "force_s0.99_seed0", "snip_s0.99_seed0",
        "force_s0.9_seed1", "snip_s0.9_seed1", "force_s0.99_seed1", "snip_s0.99_seed1"]
    assert [(r["method"], r["sparsity"], r["seed"]) for r in rows] == [
        (m, s, seed) for m in ("force", "snip") for s in (0.9, 0.99) for seed in (0, 1)]


@pytest.mark.parametrize(
    "axis, values, message",
    [("seeds", (0, 0), r"config.sweep.seeds=\(0, 0\) repeats 0; each value must appear once"),
     ("sparsities", (0.9, 0.9, 1.0), r"config.sweep.sparsities=.* repeats 0.9"),
     ("methods", ("snip", "force", "snip"), "config.sweep.methods=.* repeats 'snip'"),
     ("methods", ("snap",), "config.sweep.methods has unknown \\['snap'\\]"),
     ("sparsities", (0.9, 1.0), "config.sweep.sparsities holds 1.0"),
     ("seeds", (), "config.sweep.seeds is empty")],
)
def test_a_grid_that_would_fake_statistics_is_refused(tmp_path, axis, values, message):
    config = tiny_sweep_config()
    config.sweep[axis] = values
    ran = []
    with pytest.raises(ConfigError, match=message):
        sweep.run_sweep(config, str(tmp_path / "sweep"), train_fn=lambda *a: ran.append(a))
    assert ran == [] and not (tmp_path / "sweep").exists()


def test_summary_is_mean_and_std_over_finished_seeds():
    def row(method, sparsity, seed, accuracy, objective=1.0, error=None):
        return {"method": method, "sparsity": sparsity, "seed": seed,
                "test_accuracy": accuracy, "force_objective": objective, "error": error,
                "final_kept": 100, "final_effective": None if error else 90 + 10 * seed}

    rows = [row("force", 0.9, 0, 0.8), row("force", 0.9, 1, 0.9, objective=0.0),
            row("force", 0.99, 0, 0.5), row("force", 0.99, 1, None, None, "ValueError: x"),
            row("snip", 0.9, 0, None, None, "RuntimeError: y")]
    text = sweep_report.summary_markdown(rows, ["force", "snip"], [0.9, 0.99])
    lines = text.splitlines()
    # 0.8 and 0.9: mean 0.85, sample std 0.0707; one seed: n=1; none: n/a.
    assert "| method | 90 % | 99 % |" in lines
    assert "| force | 0.8500 ± 0.0707 | 0.5000 (n=1) |" in lines
    assert "| snip | n/a | n/a |" in lines
    assert "| force | 1/2 | 0/1 |" in lines  # one of the two 90 % masks is disconnected
    assert "| force | 95.0 % | 90.0 % |" in lines  # kept weights on a path, mean over seeds
    assert lines[-1] == "5 cells, 2 failed."


def test_a_resumed_sweep_writes_its_reports_once(tmp_path, monkeypatch):
    config = tiny_sweep_config()
    writes = []
    monkeypatch.setattr(sweep, "_write_reports", lambda *args: writes.append(args[0]))

    def finishes(cell_config, cell_dir):
        workdir.record_config(cell_dir, cell_config)
        (tmp_path / cell_dir / "metrics.json").write_text('{"test_accuracy": 0.5}')

    sweep.run_sweep(config, str(tmp_path), train_fn=finishes)
    assert len(writes) == 4 + 1  # after each cell that ran, and at the end
    writes.clear()
    rows = sweep.run_sweep(config, str(tmp_path), train_fn=finishes)
    assert len(writes) == 1 and [r["test_accuracy"] for r in rows] == [0.5] * 4


def test_report_only_reports_every_ended_cell_of_the_grid_and_runs_none(tmp_path):
    config = tiny_sweep_config()
    config.sweep.seeds = (0, 1)

    def finishes(cell_config, cell_dir):
        workdir.record_config(cell_dir, cell_config)
        if cell_config.prune.method == "snip" and cell_config.prune.sparsity == 0.99:
            raise RuntimeError("no path")
        (tmp_path / cell_dir / "metrics.json").write_text(
            f'{{"test_accuracy": {0.5 + cell_config.seed / 10}}}')

    partial = ml_collections.ConfigDict(config.to_dict())
    partial.sweep.seeds = (1,)
    sweep.run_sweep(partial, str(tmp_path), train_fn=finishes)  # seed 1 only, as reported
    assert {r["seed"] for r in read_csv(tmp_path / "results.csv")} == {"1"}
    force_seed0 = sweep_grid.cell_config(config, "force", 0.9, 0)  # a cell copied in
    finishes(force_seed0, str(tmp_path / "cells" / "force_s0.9_seed0"))
    (tmp_path / "cells" / "snip_s0.9_seed0").mkdir()  # a cell that never ended: left out
    # A failure of another config (it failed before writing any result, so a sweep would rerun
    # it): left out too.
    other = sweep_grid.cell_config(config, "snip", 0.99, 0)
    other.train.num_steps = 12
    workdir.record_config(str(tmp_path / "cells" / "snip_s0.99_seed0"), other)
    (tmp_path / "cells" / "snip_s0.99_seed0" / sweep_cells.CELL_RECORD).write_text(
        '{"train_seconds": 1.0, "error": "RuntimeError: elsewhere"}')
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "cells").rglob("*")}
    rows = sweep.rewrite_reports(config, str(tmp_path))
    # Nothing ran and no cell folder was written: every file as it was, none added.
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cells").rglob("*")} == before
    table = read_csv(tmp_path / "results.csv")
    assert [(r["method"], r["sparsity"], r["seed"]) for r in table] == [
        ("force", "0.9", "0"), ("force", "0.9", "1"), ("force", "0.99", "1"), ("snip", "0.9", "1"),
        ("snip", "0.99", "1")]
    assert table[0]["test_accuracy"] == "0.5" and table[-1]["error"] == "RuntimeError: no path"
    assert len(rows) == 5 and "5 cells, 1 failed." in (tmp_path / "summary.md").read_text()
    config.sweep.seeds = (7,)
    with pytest.raises(ConfigError, match="holds no finished cell of this config's grid"):
        sweep.rewrite_reports(config, str(tmp_path))


@needs_real_data
def test_sweep_writes_results_skips_finished_cells_and_records_failures(tmp_path):
    config = tiny_sweep_config()
    config.sweep.sparsities = (0.99,)  # one real cell (force) and one that fails (snip)
    workdir = tmp_path / "sweep"

    def fails_for_snip_099(cell_config, cell_dir):
        if (cell_config.prune.method, cell_config.prune.sparsity) == ("snip", 0.99):
            raise RuntimeError("boom")
        return train.train_and_evaluate(cell_config, cell_dir)

    rows = sweep.run_sweep(config, str(workdir), train_fn=fails_for_snip_099)
    table = read_csv(workdir / "results.csv")
    assert tuple(table[0]) == sweep_report.COLUMNS
    assert [(r["method"], float(r["sparsity"]), r["seed"]) for r in table] == [
        ("force", 0.99, "0"), ("snip", 0.99, "0")]
    assert len(rows) == 2
    failed = table[1]
    assert failed["error"] == "RuntimeError: boom" and failed["test_accuracy"] == ""
    for row in table[:1]:
        assert row["error"] == ""
        assert 0.0 <= float(row["test_accuracy"]) <= 1.0
        assert 0.0 <= float(row["best_validation_accuracy"]) <= 1.0
        assert float(row["force_objective"]) > 0
        assert int(row["collapsed_layers"]) >= 0
        assert float(row["prune_seconds"]) > 0 and float(row["train_seconds"]) > 0
    for name in ("accuracy_vs_sparsity.png", "objective_vs_sparsity.png",
                 "layer_density_0.99.png", "density_trajectory_force_0.99.png"):
        assert (workdir / name).stat().st_size > 1000, name
    assert (workdir / "cells" / "force_s0.99_seed0" / "prune.json").exists()
    summary = (workdir / "summary.md").read_text()
    assert "| snip | " in summary and "2 cells, 1 failed." in summary
    by_step = read_csv(workdir / "accuracy_by_step.csv")  # one evaluation per finished cell
    assert [(r["method"], r["sparsity"], r["step"]) for r in by_step] == [("force", "0.99", "6")]
    assert [float(r["test_accuracy"]) for r in by_step] == [
        float(r["test_accuracy"]) for r in table[:1]]

    # Rerun: finished cells are skipped; only the failed one is tried again.
    calls = []

    def records_calls(cell_config, cell_dir):
        calls.append(os.path.basename(cell_dir))
        raise ValueError("still broken")

    sweep.run_sweep(config, str(workdir), train_fn=records_calls)
    assert calls == ["snip_s0.99_seed0"]
    again = read_csv(workdir / "results.csv")
    assert again[:1] == table[:1]
    assert again[1]["error"] == "ValueError: still broken"

    # Rerun with other training settings: refused before any cell runs, old results untouched.
    calls.clear()
    config.train.num_steps = 60
    config.prune.steps = 5
    with pytest.raises(WorkdirError) as refused:
        sweep.run_sweep(config, str(workdir), train_fn=records_calls)
    assert calls == [] and read_csv(workdir / "results.csv") == again
    message = str(refused.value)
    assert "holds cells of another sweep config; nothing was run" in message
    assert "prune.steps: 3 -> 5" in message and "train.num_steps: 6 -> 60" in message
    # A larger grid with the same settings is fine: only the new seed's cells run.
    config.train.num_steps, config.prune.steps = 6, 3
    config.sweep.seeds = (0, 1)
    sweep.run_sweep(config, str(workdir), train_fn=records_calls)
    assert calls == ["snip_s0.99_seed0", "force_s0.99_seed1", "snip_s0.99_seed1"]


def test_a_sweep_without_its_data_stops_before_any_cell_and_writes_nothing(tmp_path):
    config = tiny_sweep_config()
    config.data.data_dir = str(tmp_path / "no_datasets_here")
    calls = []
    with pytest.raises(ConfigError, match="is not prepared in data_dir"):
        sweep.run_sweep(config, str(tmp_path / "sweep"),
                        train_fn=lambda cell, workdir: calls.append(workdir))
    assert calls == [] and not (tmp_path / "sweep").exists()


@pytest.mark.slow  # errors_test refuses the same cell in process; this adds the exit code
def test_command_line_refuses_a_cell_that_keeps_no_weight_before_any_runs(tmp_path):
    """Found from the model's shapes and the dataset's metadata: no data read, nothing written."""
    result = subprocess.run(
        [sys.executable, "-m", "force_jax.sweep", "--config=configs/claim_fashion_mnist.py",
         f"--workdir={tmp_path}", f"--config.data.data_dir={SHARED_TFDS}",
         "--config.sweep.methods=('random',)", "--config.sweep.sparsities=(0.9, 0.9999999)",
         "--config.sweep.seeds=(0,)", "--config.prune.pool_size=128"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if k != "XLA_FLAGS"},  # one CPU device
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: config.prune.sparsity=0.9999999 keeps no weight: floor((1 - 0.9999999) * "
        "577424) = 0 of the 577,424 prunable weights of vgg11; use at most 0.9999982, which "
        "keeps 1")
    assert not os.listdir(tmp_path)


def test_ranking_after_each_evaluation_shows_whether_the_budget_changes_it():
    def rows(step, accuracies):
        return [{"method": m, "sparsity": s, "seed": seed, "step": step, "test_accuracy": a}
                for (m, s), values in accuracies.items() for seed, a in enumerate(values)]

    # 90 %: force and snip swap, but by less than force's spread (0.1414 at step 10).
    # 99 %: force overtakes snip at step 20 by more than both spreads: a real reversal.
    step_rows = (rows(10, {("force", 0.9): [0.5, 0.7], ("snip", 0.9): [0.7, 0.7],
                           ("force", 0.99): [0.3, 0.3], ("snip", 0.99): [0.4, None]})
                 + rows(20, {("force", 0.9): [0.8, 0.8], ("snip", 0.9): [0.75, 0.75],
                             ("force", 0.99): [0.6, 0.6], ("snip", 0.99): [0.5, 0.55]}))
    methods = ["force", "snip"]
    assert sweep_report.ranking(step_rows, 10, 0.99, methods) == ["snip", "force"]
    assert sweep_report.ranking(step_rows, 20, 0.99, methods) == ["force", "snip"]
    assert sweep_report.ranking(step_rows, 30, 0.99, methods) == []
    assert sweep_report.reversed_pairs(step_rows, 0.9, methods) == []
    assert sweep_report.reversed_pairs(step_rows, 0.99, methods) == [("force", "snip")]
    text = sweep_report.ranking_markdown(step_rows, methods, [0.9, 0.99])
    assert "| 10 | snip > force | snip > force |" in text.splitlines()
    assert "| 20 | force > snip | force > snip |" in text.splitlines()
    assert "than both standard deviations over seeds: 90 %: none; 99 %: force / snip." in text
    assert sweep_report.ranking_markdown(rows(10, {("force", 0.9): [0.5]}), methods, [0.9]) == ""


def test_cell_step_rows_read_every_evaluation(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 5, "test_accuracy": 0.4}\n{"step": 10, "test_accuracy": 0.6}\n')
    common = {"method": "force", "ablation": "invert", "sparsity": 0.9, "seed": 1}
    assert sweep_cells.cell_step_rows(str(tmp_path), "force", 0.9, 1, "invert") == [
        {**common, "step": 5, "test_accuracy": 0.4}, {**common, "step": 10, "test_accuracy": 0.6}]
    assert sweep_cells.cell_step_rows(str(tmp_path / "none"), "force", 0.9, 1) == []
