"""FORCE and Iterative SNIP against network size: one table and one figure from per-width sweeps.

    python -m force_jax.reports.scale_report --runs=runs/scale_fashion_mnist \
        --out=docs/scale_fashion_mnist --data_dir=../shared/datasets/tfds

RUNS holds one sweep folder per width (configs/scale_fashion_mnist.py:WIDTH,
run into RUNS/wWIDTH). For every finished cell the report reads its
config.json, prune.json and metrics.json, measures once whether its trained
mask still joins input to output (`mask_paths.cached_cell_paths`, kept in
the cell's paths.json), and finds in the pruning history the first step at
which S(m) was 0 and the first step at which a whole layer was emptied.

OUT receives, atomically: results.csv (one row per cell), summary.md (mean ±
std of test accuracy per method, sparsity and width, the disconnected masks,
the same read at matched kept counts, and how each disconnected mask lost
its signal), accuracy_vs_size.png, and OUT/wWIDTH/cells/CELL/ with each
cell's small record files (no checkpoints), so the report can be rebuilt,
and the sweep resumed, from OUT alone: copy OUT/wWIDTH/cells into
RUNS/wWIDTH/cells and rerun the sweep command (a cell with metrics.json is
skipped). A cell found in both RUNS and OUT is read from RUNS.

Every cell must record the same settings apart from method, sparsity, seed
and width: the report refuses to put two protocols in one table.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Sequence
from typing import Any

from force_jax.reports import mask_paths, plots
from force_jax.reports.tables import csv_text, markdown_table, mean_std
from force_jax.runs import files, workdir

# The files of a finished cell that the report and a resumed sweep need (no checkpoints).
RECORD_FILES = ("config.json", "prune.json", "metrics.json", "metrics.jsonl",
                "sweep_cell.json", mask_paths.PATHS_FILE)
COLUMNS = ("width", "prunable", "kept", "method", "sparsity", "seed", "test_accuracy",
           "best_validation_accuracy", "final_objective", "paths", "objective_zero_step",
           "thinnest_before_zero", "first_empty_step", "first_empty_layers")
# Settings that may differ between the cells of one report.
VARYING = ("prune.method", "prune.sparsity", "seed", "model.width_multiplier")


def _read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def find_cells(roots: Sequence[str]) -> dict[tuple[str, str], str]:
    """The finished cells under each root's wWIDTH/cells/ folders, first root first.

    Args:
      roots: folders holding wWIDTH/cells/CELL (a RUNS folder, then OUT).

    Returns:
      (width folder, cell name) -> the cell's folder, for every cell with a
      metrics.json; a cell found under several roots is taken from the first.
    """
    cells: dict[tuple[str, str], str] = {}
    for root in roots:
        if not os.path.isdir(root):
            continue
        for width in sorted(os.listdir(root)):
            cells_dir = os.path.join(root, width, "cells")
            if not width.startswith("w") or not os.path.isdir(cells_dir):
                continue
            for name in sorted(os.listdir(cells_dir)):
                cell = os.path.join(cells_dir, name)
                if os.path.exists(os.path.join(cell, "metrics.json")):
                    cells.setdefault((width, name), cell)
    return cells


def first_step(flags: Sequence[bool]) -> int | None:
    """The 1-based index of the first true flag (a pruning step), None if none is.

    Args:
      flags: one flag per pruning step.

    Returns:
      The step number, or None.
    """
    return next((t + 1 for t, flag in enumerate(flags) if flag), None)


def history_events(pruned: dict) -> dict[str, Any]:
    """When a pruning schedule lost its gradient signal and emptied its first layer.

    Args:
      pruned: a cell's prune.json (history.objective, history.layer_kept and
        report.layers in the same layer order).

    Returns:
      {"final_objective": S(m) after the last step, "objective_zero_step":
      first step with S(m) = 0 (None if never), "thinnest_before_zero": the
      layer with the fewest kept weights at the step before, and that count
      ("" if S(m) never was 0 after step 1), "first_empty_step": first
      step at which some layer kept no weight (None if never),
      "first_empty_layers": those layers' names joined by "+" ("" if none)}.
    """
    history = pruned["history"]
    names = [layer["name"] for layer in pruned["report"]["layers"]]
    objective = history["objective"]
    layer_kept = history["layer_kept"]
    empty_step = first_step([0 in kept for kept in layer_kept])
    empty = ([n for n, k in zip(names, layer_kept[empty_step - 1]) if k == 0]
             if empty_step else [])
    zero_step = first_step([v == 0.0 for v in objective])
    thinnest = ""
    if zero_step and zero_step > 1:  # the mask of the step before the signal was lost
        kept = layer_kept[zero_step - 2]
        index = min(range(len(names)), key=lambda i: kept[i])
        thinnest = f"{names[index]} ({kept[index]})"
    return {"final_objective": objective[-1], "objective_zero_step": zero_step,
            "thinnest_before_zero": thinnest, "first_empty_step": empty_step,
            "first_empty_layers": "+".join(empty)}


def cell_row(cell_dir: str, data_dir: str | None = None) -> dict[str, Any]:
    """One results row of a finished cell.

    Args:
      cell_dir: the cell's folder (config.json, prune.json, metrics.json, and
        either its checkpoints or a paths.json measured before).
      data_dir: TFDS folder for the dataset's description.

    Returns:
      A dict keyed by COLUMNS.
    """
    config = _read_json(os.path.join(cell_dir, "config.json"))
    pruned = _read_json(os.path.join(cell_dir, "prune.json"))
    metrics = _read_json(os.path.join(cell_dir, "metrics.json"))
    paths = mask_paths.cached_cell_paths(cell_dir, data_dir)
    return {"width": float(config["model"]["width_multiplier"]),
            "prunable": int(pruned["report"]["total"]), "kept": int(pruned["report"]["kept"]),
            "method": config["prune"]["method"], "sparsity": float(config["prune"]["sparsity"]),
            "seed": int(config["seed"]), "test_accuracy": metrics.get("test_accuracy"),
            "best_validation_accuracy": metrics.get("best_validation_accuracy"),
            "paths": float(paths["paths"]), **history_events(pruned)}


def check_one_protocol(cell_dirs: Sequence[str]) -> None:
    """Refuses cells that differ in anything but method, sparsity, seed and width.

    Args:
      cell_dirs: the cells of one report.

    Raises:
      ValueError: naming the first cell that differs and the settings.
    """
    def settings(cell_dir: str) -> dict:
        record = _read_json(os.path.join(cell_dir, "config.json"))
        for key in VARYING:
            *parents, leaf = key.split(".")
            node = record
            for parent in parents:
                node = node[parent]
            node.pop(leaf, None)
        return record

    if not cell_dirs:
        return
    first = settings(cell_dirs[0])
    for cell_dir in cell_dirs[1:]:
        diff = workdir.differences(first, settings(cell_dir))
        if diff:
            raise ValueError(f"{cell_dir} was run with other settings than {cell_dirs[0]} "
                             f"({'; '.join(diff[:5])}); one report holds one protocol")


def _groups(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, float, float], list[dict]]:
    groups: dict[tuple[str, float, float], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["sparsity"], row["width"]), []).append(row)
    return groups


def summary_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The report's tables.

    Args:
      rows: `cell_row` results.

    Returns:
      Markdown: test accuracy (mean ± sample std over seeds) per method and
      sparsity by width; disconnected masks (no input-output path) and masks
      with S(m) = 0; the same cells ordered by kept weights; and, for each
      disconnected mask, the step and layer at which it first emptied a layer.
    """
    groups = _groups(rows)
    widths = sorted({r["width"] for r in rows})
    prunable = {r["width"]: r["prunable"] for r in rows}
    series = sorted({(r["method"], r["sparsity"]) for r in rows})
    width_head = [f"x{w:g} ({prunable[w]:,} weights)" for w in widths]

    def cells(method, sparsity, text):
        return [text(groups.get((method, sparsity, w), [])) for w in widths]

    def accuracy(group):
        return mean_std([r["test_accuracy"] for r in group], count=True)

    def disconnected(group):
        if not group:
            return "n/a"
        return (f"{sum(r['paths'] == 0 for r in group)}/{len(group)} "
                f"({sum(r['final_objective'] == 0 for r in group)} with S(m) = 0)")

    parts = ["Test accuracy, mean ± sample std over seeds (0.100 is chance):\n\n",
             markdown_table(["method", "sparsity", *width_head],
                    [[m, f"{s:g}", *cells(m, s, accuracy)] for m, s in series]),
             "\nMasks with no path from input to output after training:\n\n",
             markdown_table(["method", "sparsity", *width_head],
                    [[m, f"{s:g}", *cells(m, s, disconnected)] for m, s in series])]
    by_kept = sorted({(r["kept"], r["width"], r["sparsity"]) for r in rows})
    methods = sorted({r["method"] for r in rows})
    parts += ["\nThe same cells by kept weights (a comparison at matched kept counts):\n\n",
              markdown_table(["kept", "width", "sparsity", *methods],
                     [[f"{k:,}", f"x{w:g}", f"{s:g}",
                       *[accuracy(groups.get((m, s, w), [])) for m in methods]]
                      for k, w, s in by_kept])]
    lost = sorted((r for r in rows if r["paths"] == 0),
                  key=lambda r: (r["method"], r["width"], r["sparsity"], r["seed"]))
    if lost:
        parts += ["\nDisconnected masks: the first step of the schedule at which S(m) was 0, "
                  "the thinnest layer (kept weights) at the step before, and the first step "
                  "at which a layer kept no weight:\n\n",
                  markdown_table(["method", "width", "sparsity", "seed", "S(m) = 0 from step",
                          "thinnest layer before", "first empty at step", "emptied layers"],
                         [[r["method"], f"x{r['width']:g}", f"{r['sparsity']:g}",
                           str(r["seed"]), str(r["objective_zero_step"] or "never"),
                           r["thinnest_before_zero"] or "n/a",
                           str(r["first_empty_step"] or "never"),
                           r["first_empty_layers"] or "none"] for r in lost])]
    return "".join(parts)


def plot_against_size(rows: Sequence[dict[str, Any]], path: str) -> None:
    """Test accuracy and the disconnected fraction against prunable weights (log x).

    Args:
      rows: `cell_row` results.
      path: output PNG.
    """
    import matplotlib.pyplot as plt

    groups = _groups(rows)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 7.0), sharex=True)
    for method, sparsity in sorted({(r["method"], r["sparsity"]) for r in rows}):
        points = sorted((group[0]["prunable"], group) for (m, s, _), group in groups.items()
                        if (m, s) == (method, sparsity))
        xs = [x for x, _ in points]
        accuracies = [[r["test_accuracy"] for r in g] for _, g in points]
        label = f"{method} {sparsity * 100:g} %"
        top.errorbar(xs, [statistics.fmean(a) for a in accuracies],
                     yerr=[statistics.stdev(a) if len(a) > 1 else 0.0 for a in accuracies],
                     marker="o", capsize=3, label=label)
        bottom.plot(xs, [statistics.fmean(r["paths"] == 0 for r in g) for _, g in points],
                    marker="o", label=label)
    top.set_ylabel("test accuracy (mean ± std over seeds)")
    top.axhline(0.1, color="grey", linestyle=":", linewidth=1)
    bottom.set_ylabel("fraction of masks disconnected")
    bottom.set_xlabel("prunable weights of VGG-11 (width x0.25, x0.5, x1.0)")
    bottom.set_xscale("log")
    for ax in (top, bottom):
        ax.grid(True, which="both", alpha=0.3)
    top.legend(fontsize=8)
    top.set_title("FORCE and Iterative SNIP against network size, Fashion-MNIST")
    plots.save_figure(fig, path)


def _copy_records(cell_dir: str, target: str) -> None:
    """Copies the RECORD_FILES a cell has into `target`, each atomically."""
    for name in RECORD_FILES:
        source = os.path.join(cell_dir, name)
        if os.path.exists(source):
            with open(source, "rb") as f:
                files.write_atomic(os.path.join(target, name), f.read())


def write_report(runs_dir: str, out_dir: str, data_dir: str | None = None
                 ) -> list[dict[str, Any]]:
    """Reads every finished cell under RUNS and OUT; writes the report and the cells' records.

    Args:
      runs_dir: folder of wWIDTH sweep folders.
      out_dir: report folder (also read: cells recorded there before).
      data_dir: TFDS folder for the dataset's description.

    Returns:
      The rows, ordered by method, sparsity, width and seed.

    Raises:
      ValueError: when no finished cell is found, or cells of two protocols.
    """
    found = find_cells([runs_dir, out_dir])
    if not found:
        raise ValueError(f"no finished cell under {runs_dir}/w*/cells or {out_dir}/w*/cells")
    check_one_protocol(list(found.values()))
    rows = []
    for (width, name), cell_dir in sorted(found.items()):
        rows.append(cell_row(cell_dir, data_dir))  # measures paths.json where missing
        target = os.path.join(out_dir, width, "cells", name)
        if os.path.abspath(target) != os.path.abspath(cell_dir):
            _copy_records(cell_dir, target)
    rows.sort(key=lambda r: (r["method"], r["sparsity"], r["width"], r["seed"]))
    files.write_atomic(os.path.join(out_dir, "results.csv"),
                       csv_text(COLUMNS, [[r.get(c) for c in COLUMNS] for r in rows]))
    files.write_atomic(os.path.join(out_dir, "summary.md"), summary_markdown(rows))
    plot_against_size(rows, os.path.join(out_dir, "accuracy_vs_size.png"))
    return rows


def main() -> None:
    """Command line: --runs=DIR --out=DIR [--data_dir=TFDS]."""
    from absl import app, flags

    flags.DEFINE_string("runs", None, "Folder of wWIDTH sweep folders.")
    flags.DEFINE_string("out", None, "Report folder (results.csv, summary.md, a PNG, cells/).")
    flags.DEFINE_string("data_dir", None, "TFDS folder (default: each cell's data.data_dir).")
    flags.mark_flags_as_required(["runs", "out"])

    def run(argv: list[str]) -> None:
        del argv
        rows = write_report(flags.FLAGS.runs, flags.FLAGS.out, flags.FLAGS.data_dir)
        print(summary_markdown(rows))

    app.run(run)


if __name__ == "__main__":
    main()
