"""What a sweep reports: results.csv, summary.md and the figures.

Pure functions of the results rows (one dict per finished or failed cell, keyed
by COLUMNS); every file is written atomically, so an interrupted sweep never
leaves a half-written table or figure behind.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from force_jax.core.density import LayerDensity, SparsityReport
from force_jax.reports import plots
from force_jax.reports.tables import csv_text, markdown_table, mean_std, sparsity_head
from force_jax.runs import files

COLUMNS = (
    "method", "ablation", "sparsity", "seed", "test_accuracy", "best_validation_accuracy",
    "force_objective", "collapsed_layers", "kept", "effective", "final_density", "final_kept",
    "final_effective", "prune_seconds", "train_seconds", "error",
)


def series_name(method: str, ablation: str | None = "none") -> str:
    """The label of a (method, ablation) series in tables and plots: "force", "force+shuffle".

    Args:
      method: pruning method.
      ablation: sanity check (none, or absent, gives the method alone).

    Returns:
      The label.
    """
    return method if ablation in ("none", None, "") else f"{method}+{ablation}"


def _series(row: dict[str, Any]) -> str:
    return series_name(row["method"], row.get("ablation"))


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _write_csv(path: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    """Rows as CSV with the given columns (None as an empty field), written atomically."""
    files.write_atomic(path, csv_text(columns, [[_format(row.get(c)) for c in columns]
                                                for row in rows]))


def write_results(path: str, rows: Sequence[dict[str, Any]]) -> None:
    """Writes rows as CSV with the columns COLUMNS, atomically.

    Args:
      path: output CSV.
      rows: dicts keyed by COLUMNS (None is written as an empty field).
    """
    _write_csv(path, COLUMNS, rows)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _curves(rows: Sequence[dict[str, Any]], key: str) -> dict[str, dict[float, list[float]]]:
    """method -> remaining weights (%) -> values of `key` over seeds (finite ones only)."""
    curves: dict[str, dict[float, list[float]]] = {}
    for row in rows:
        if _finite(row[key]):
            remaining = round(100.0 * (1.0 - row["sparsity"]), 10)
            curves.setdefault(_series(row), {}).setdefault(remaining, []).append(row[key])
    return curves


def report_from_dict(report: dict) -> SparsityReport:
    """Rebuilds a SparsityReport from its `as_dict()` form (as in prune.json).

    Args:
      report: the dict written by SparsityReport.as_dict().

    Returns:
      The SparsityReport.
    """
    return SparsityReport(tuple(
        LayerDensity(layer["name"], int(layer["kept"]), int(layer["total"]),
                     layer.get("effective"))
        for layer in report["layers"]))


def write_plots(sweep_dir: str, rows: Sequence[dict[str, Any]],
                densities: Mapping[str, SparsityReport], sparsity: float,
                seed: int) -> list[str]:
    """Accuracy and objective vs remaining weights, and per-layer densities.

    Args:
      sweep_dir: the sweep's workdir; the PNGs are written there.
      rows: the results rows so far.
      densities: method -> sparsity report of its mask at `sparsity`, `seed`.
      sparsity, seed: the cell the per-layer plot shows (the highest sparsity).

    Returns:
      Paths of the PNGs written (a figure with no data yet is not written).
    """
    written = []
    accuracy = _curves(rows, "test_accuracy")
    if accuracy:
        path = os.path.join(sweep_dir, "accuracy_vs_sparsity.png")
        plots.plot_metric_vs_remaining(
            accuracy, path, ylabel="test accuracy", title="test accuracy vs remaining weights")
        written.append(path)
    objective = _curves(rows, "force_objective")
    objective = {m: {x: [v for v in vs if v > 0] for x, vs in c.items()}
                 for m, c in objective.items()}
    if any(vs for c in objective.values() for vs in c.values()):
        path = os.path.join(sweep_dir, "objective_vs_sparsity.png")
        plots.plot_metric_vs_remaining(
            objective, path, ylabel="FORCE objective S(m)", log_y=True,
            title="FORCE objective of the final mask vs remaining weights")
        written.append(path)
    if densities:
        path = os.path.join(sweep_dir, f"layer_density_{float(sparsity)!r}.png")
        plots.plot_layer_density(
            dict(densities), path, title=f"per-layer density at sparsity {sparsity} (seed {seed})")
        written.append(path)
    return written


def _values(rows: Sequence[dict[str, Any]], key: str, series: str,
            sparsity: float) -> list[float]:
    """The finite values of `key` over the seeds of one (series, sparsity) cell."""
    return [float(r[key]) for r in rows
            if _series(r) == series and r["sparsity"] == sparsity and _finite(r.get(key))]


def _disconnected(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    return f"{sum(v == 0.0 for v in values)}/{len(values)}"


def _effective_share(rows: Sequence[dict[str, Any]], method: str, sparsity: float) -> str:
    """Mean over seeds of effective / kept weights of the mask training ended with, in %.

    "n/a" where unknown (a mask that changed during training in a run that
    did not count it again).
    """
    shares = [float(r["final_effective"]) / float(r["final_kept"]) for r in rows
              if _series(r) == method and float(r["sparsity"]) == float(sparsity)
              and r.get("final_effective") is not None and r.get("final_kept")]
    return f"{100 * statistics.fmean(shares):.1f} %" if shares else "n/a"


def summary_markdown(rows: Sequence[dict[str, Any]], methods: Sequence[str],
                     sparsities: Sequence[float]) -> str:
    """Markdown tables, method by sparsity: test accuracy and disconnected masks.

    The first table gives the mean ± sample standard deviation of the test
    accuracy over the seeds that finished (n=1 when only one did, n/a when
    none did). The second counts, among the seeds that recorded it, the masks
    whose FORCE objective S(m) is exactly 0: no gradient reaches any kept
    weight, so the pruned network's output does not depend on them (a layer
    collapse, even when every layer keeps some weights). The third gives the
    share of the kept weights that lie on an input-output path (effective
    sparsity, `force_jax.core.effective`) in the mask training ended with,
    mean over seeds. Failed cells are
    counted below the tables.

    Args:
      rows: the results rows.
      methods: row order of the tables: series names (`series_name`: the
        method, or method+ablation).
      sparsities: column order of the tables.

    Returns:
      The markdown text.
    """
    head = ["method", *(sparsity_head(s) for s in sparsities)]
    sections = []
    for key, title, cell in (
        ("test_accuracy", "Test accuracy (mean ± std over seeds):", mean_std),
        ("force_objective", "Seeds whose final mask has S(m) = 0 (disconnected):",
         _disconnected),
    ):
        table = [[method, *(cell(_values(rows, key, method, s)) for s in sparsities)]
                 for method in methods]
        sections.append(f"{title}\n\n{markdown_table(head, table)}")
    table = [[method, *(_effective_share(rows, method, s) for s in sparsities)]
             for method in methods]
    sections.append("Kept weights on an input-output path (effective / kept, of the mask "
                    f"training ended with; mean over seeds):\n\n{markdown_table(head, table)}")
    failed = [r for r in rows if r.get("error")]
    sections.append(f"{len(rows)} cells, {len(failed)} failed.\n")
    return "\n".join(sections)


def write_summary(path: str, rows: Sequence[dict[str, Any]], methods: Sequence[str],
                  sparsities: Sequence[float],
                  step_rows: Sequence[dict[str, Any]] = ()) -> None:
    """Writes `summary_markdown` (and `ranking_markdown`, if any) to `path`, atomically.

    Args:
      path: output markdown file.
      rows, methods, sparsities: as for `summary_markdown`.
      step_rows: the accuracy of every evaluation, as for `ranking_markdown`.
    """
    ranked = ranking_markdown(step_rows, methods, sparsities)
    text = summary_markdown(rows, methods, sparsities)
    files.write_atomic(path, text + ("\n" + ranked if ranked else ""))


STEP_COLUMNS = ("method", "ablation", "sparsity", "seed", "step", "test_accuracy")


def write_step_results(path: str, step_rows: Sequence[dict[str, Any]]) -> None:
    """Writes the test accuracy of every evaluation of every cell as CSV, atomically.

    Args:
      path: output CSV.
      step_rows: dicts keyed by STEP_COLUMNS, one per (cell, evaluated step).
    """
    _write_csv(path, STEP_COLUMNS, step_rows)


def _step_stats(step_rows: Sequence[dict[str, Any]]
                ) -> dict[tuple[int, float, str], tuple[float, float]]:
    """(step, sparsity, series) -> (mean, sample std; 0 for one seed) of the test accuracy."""
    values: dict[tuple[int, float, str], list[float]] = {}
    for row in step_rows:
        if _finite(row.get("test_accuracy")):
            key = (int(row["step"]), float(row["sparsity"]), _series(row))
            values.setdefault(key, []).append(float(row["test_accuracy"]))
    return {key: (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
            for key, v in values.items()}


def ranking(step_rows: Sequence[dict[str, Any]], step: int, sparsity: float,
            methods: Sequence[str]) -> list[str]:
    """The methods ordered by mean test accuracy at one evaluated step, best first.

    Methods with no finite accuracy there are left out; equal means keep the
    order of `methods`.

    Args:
      step_rows: dicts keyed by STEP_COLUMNS.
      step: the evaluated training step.
      sparsity: the sparsity compared.
      methods: the series to rank (`series_name`).

    Returns:
      Method names.
    """
    stats = _step_stats(step_rows)
    present = [m for m in methods if (step, float(sparsity), m) in stats]
    return sorted(present, key=lambda m: -stats[(step, float(sparsity), m)][0])


def reversed_pairs(step_rows: Sequence[dict[str, Any]], sparsity: float,
                   methods: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs of methods whose order reverses between evaluations by more than the noise.

    A pair counts when, at one evaluated step, a is ahead of b by more than
    both their standard deviations over seeds, and at another step b is
    ahead of a by more than both: a change of ranking that the seeds' spread
    cannot explain. Near-ties that swap are not counted.

    Args:
      step_rows: dicts keyed by STEP_COLUMNS.
      sparsity: the sparsity compared.
      methods: the series (`series_name`).

    Returns:
      (a, b) pairs in the order of `methods`.
    """
    stats = _step_stats(step_rows)
    steps = sorted({int(r["step"]) for r in step_rows})
    sparsity = float(sparsity)
    pairs = []
    for i, a in enumerate(methods):
        for b in methods[i + 1:]:
            signs = set()
            for step in steps:
                sa, sb = stats.get((step, sparsity, a)), stats.get((step, sparsity, b))
                if sa and sb and abs(sa[0] - sb[0]) > max(sa[1], sb[1]):
                    signs.add(sa[0] > sb[0])
            if len(signs) == 2:
                pairs.append((a, b))
    return pairs


def ranking_markdown(step_rows: Sequence[dict[str, Any]], methods: Sequence[str],
                     sparsities: Sequence[float]) -> str:
    """Markdown: the ranking of methods after each evaluation, per sparsity.

    Shows whether the conclusion depends on the training budget: one row
    per evaluated step, one column per sparsity, each cell the methods by mean
    test accuracy over seeds (best first); below, per sparsity, the pairs of
    methods whose order reverses by more than their spread over seeds
    (`reversed_pairs`). Empty when no cell was evaluated more than once.

    Args:
      step_rows: dicts keyed by STEP_COLUMNS.
      methods: the series (`series_name`), in the sweep's order (ties keep it).
      sparsities: column order.

    Returns:
      The markdown text, or "" when there is a single evaluated step.
    """
    steps = sorted({int(r["step"]) for r in step_rows})
    if len(steps) < 2:
        return ""
    table = [[str(step), *(" > ".join(ranking(step_rows, step, s, methods)) or "n/a"
                           for s in sparsities)] for step in steps]
    reversals = []
    for s in sparsities:
        pairs = reversed_pairs(step_rows, s, methods)
        reversals.append(f"{sparsity_head(s)}: " + (", ".join(f"{a} / {b}" for a, b in pairs)
                                                    if pairs else "none"))
    return ("Ranking of methods by mean test accuracy after each evaluation "
            "(best first; accuracy_by_step.csv):\n\n"
            + markdown_table(["step", *(sparsity_head(s) for s in sparsities)], table)
            + "\nPairs whose order reverses between evaluations by more than both standard "
            "deviations over seeds: " + "; ".join(reversals) + ".\n")
