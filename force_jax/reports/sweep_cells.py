"""A sweep's cell folders read back: one results row per cell, its accuracy by step,
its failures, the density trajectories of its multi-step methods.

A cell leaves metrics.json, prune.json and metrics.jsonl (the train command's
files) and CELL_RECORD (the sweep's own: the cell's training time and
error), so a rerun that skips a finished cell reports it all the same.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from force_jax.config.sweep_grid import (
    CELL_RECORD,
    ablations,
    cell_name,
)
from force_jax.core import mask_analysis, sanity
from force_jax.core.density import SparsityReport
from force_jax.reports import plots
from force_jax.reports.sweep_report import (
    report_from_dict,
    series_name,
)
from force_jax.runs import checkpoint, files

__all__ = ["CELL_RECORD", "cell_row", "cell_step_rows", "density_reports", "failure_lines",
           "read_json", "trajectory_plots"]


def read_json(path: str) -> dict | None:
    """The JSON object of a file, or None where there is none."""
    if not files.exists(path):
        return None
    return json.loads(files.read_text(path))


def density_reports(workdir: str, sweep: ml_collections.ConfigDict, sparsity: float,
                     seed: int) -> dict[str, SparsityReport]:
    """series -> sparsity report of its finished cell at (sparsity, seed)."""
    reports = {}
    for method in sweep.methods:
        for ablation in ablations(sweep):
            pruned = read_json(os.path.join(
                workdir, "cells", cell_name(method, sparsity, seed, ablation), "prune.json"))
            if pruned and "report" in pruned:
                reports[series_name(method, ablation)] = report_from_dict(pruned["report"])
    return reports


def cell_row(workdir: str, method: str, sparsity: float, seed: int,
             ablation: str = "none") -> dict[str, Any]:
    """One results.csv row from the files a cell left in its folder.

    Args:
      workdir: the cell's folder.
      method, sparsity, seed, ablation: the cell's coordinates.

    Returns:
      A dict with every key of COLUMNS; missing values are None.
    """
    metrics = read_json(os.path.join(workdir, "metrics.json")) or {}
    pruned = read_json(os.path.join(workdir, "prune.json")) or {}
    record = read_json(os.path.join(workdir, CELL_RECORD)) or {}
    config = read_json(os.path.join(workdir, "config.json")) or {}
    changes = config.get("train", {}).get("mask_changes") or {}
    objective = pruned.get("history", {}).get("objective") or [None]
    if ablation in sanity.MASK_SHUFFLES:  # S(m) was measured on the method's mask, not this one
        objective = [None]
    report = pruned.get("report")
    # The mask training ended with: the pruning's, unless it changed during training (then
    # the run counted it again; unknown where it did not).
    final_kept, final_effective = ((report["kept"], report.get("effective")) if report
                                   else (None, None))
    if changes.get("method", "none") != "none":
        final_kept, final_effective = metrics.get("final_kept"), metrics.get("final_effective")
    return {
        "method": method, "ablation": ablation, "sparsity": float(sparsity), "seed": int(seed),
        "test_accuracy": metrics.get("test_accuracy"),
        "best_validation_accuracy": metrics.get("best_validation_accuracy"),
        "force_objective": objective[-1],
        "collapsed_layers": len(report["collapsed"]) if report else None,
        "kept": report["kept"] if report else None,
        "effective": report.get("effective") if report else None,
        "final_density": metrics.get("global_density"),
        "final_kept": final_kept if metrics else None,
        "final_effective": final_effective if metrics else None,
        "prune_seconds": pruned.get("seconds"),
        "train_seconds": record.get("train_seconds"),
        "error": record.get("error"),
    }


def cell_step_rows(workdir: str, method: str, sparsity: float, seed: int,
                   ablation: str = "none") -> list[dict[str, Any]]:
    """The test accuracy of every evaluation a cell recorded in its metrics.jsonl.

    Args:
      workdir: the cell's folder.
      method, sparsity, seed, ablation: the cell's coordinates.

    Returns:
      Dicts keyed by sweep_report.STEP_COLUMNS, in step order (empty for a
      cell that never evaluated).
    """
    records = checkpoint.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    return [{"method": method, "ablation": ablation, "sparsity": float(sparsity),
             "seed": int(seed), "step": int(r["step"]), "test_accuracy": r.get("test_accuracy")}
            for r in records if "step" in r]


def trajectory_plots(workdir: str, sweep: ml_collections.ConfigDict, sparsity: float,
                      seed: int) -> list[str]:
    """density_trajectory_<method>_<sparsity>.png for each multi-step method's cell.

    Args:
      workdir: the sweep folder.
      sweep: config.sweep.
      sparsity, seed: the cells drawn.

    Returns:
      The paths written.
    """
    written = []
    for method in sweep.methods:
        cell = os.path.join(workdir, "cells", cell_name(method, sparsity, seed))
        pruned = read_json(os.path.join(cell, "prune.json")) or {}
        layer_kept = pruned.get("history", {}).get("layer_kept")
        if not layer_kept or len(layer_kept) < 2 or "report" not in pruned:
            continue
        trajectory = mask_analysis.layer_density_trajectory(
            layer_kept, report_from_dict(pruned["report"]))
        path = os.path.join(workdir, f"density_trajectory_{method}_{float(sparsity)!r}.png")
        plots.plot_density_trajectory(
            trajectory, pruned["history"]["keep_fraction"], path,
            title=f"{method}: per-layer density over its schedule, sparsity {sparsity} "
                  f"(seed {seed})")
        written.append(path)
    return written


def failure_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per failed cell: its name and its error.

    Args:
      rows: results rows (`cell_row`).

    Returns:
      "failed: <cell>: <Type: message>", the message on one line and cut at
      300 characters; empty when no cell failed.
    """
    lines = []
    for row in rows:
        if row["error"]:
            name = cell_name(row["method"], row["sparsity"], row["seed"], row["ablation"])
            text = " ".join(str(row["error"]).split())
            lines.append(f"failed: {name}: {text[:300]}{'...' if len(text) > 300 else ''}")
    return lines
