"""Several finished sweeps side by side: one table and one figure per ablation.

    python -m force_jax.reports.sweep_compare --out=docs/ablation_fashion_mnist \
        --runs=base=runs/ablation/base,cross_entropy=runs/ablation/ce

Each run is a sweep folder (its results.csv) and a label; a label given to
several folders joins their cells into one variant (e.g. seeds 3 and 4 run
later, in a folder of their own): their cells must then record the same
settings apart from sparsity and seed (checked in each cell's config.json), and
a cell found twice is an error. `--series=force,iter_snip,...` keeps those
methods (a series: "method" or "method+ablation") in that order. Writes,
atomically, OUT/results.csv (every cell, with a `variant` column, its test
and best validation accuracy, kept and effective weights of the pruning mask
and of the mask training ended with, mask seconds),
OUT/summary.md (test accuracy mean ± sample std and seed count, one row per
variant and method, one column per sparsity; in the same layout, the kept
weights on an input-output path and the seconds to compute the mask; then,
where a variant has
several methods, their ranking at each sparsity: the best, those within the
seeds' spread of it, and each method's rank seed by seed, from
`seed_ranking`) and OUT/accuracy_vs_sparsity.png (error bars of one std; one
panel per method and one line per variant, or with `--panels=variant` one
panel per variant and one line per method). Failed cells are counted, never
averaged.
"""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
from collections.abc import Sequence
from typing import Any

from force_jax.reports import seed_ranking
from force_jax.reports.plots import PANELS, plot_comparison
from force_jax.reports.sweep_report import series_name
from force_jax.reports.tables import csv_text, markdown_table, mean_std, sparsity_head
from force_jax.runs import files, workdir

VARIANT_COLUMNS = ("variant", "method", "sparsity", "seed", "test_accuracy",
                   "best_validation_accuracy", "kept", "effective", "final_kept",
                   "final_effective", "prune_seconds", "error")


def read_rows(label: str, sweep_dir: str) -> list[dict[str, Any]]:
    """The rows of one sweep's results.csv, labelled with its variant.

    Args:
      label: the variant's name.
      sweep_dir: the sweep folder.

    Returns:
      Dicts with VARIANT_COLUMNS (the method of an ablated cell is
      "method+ablation"); a number the sweep did not record (an older
      results.csv without the column, a failed cell) is None.

    Raises:
      FileNotFoundError: naming the missing results.csv.
    """
    path = os.path.join(sweep_dir, "results.csv")
    if not files.exists(path):
        raise FileNotFoundError(f"{path} does not exist: is {sweep_dir} a sweep folder?")
    with io.StringIO(files.read_text(path)) as f:
        return [{"variant": label, "method": series_name(r["method"], r.get("ablation")),
                 "sparsity": float(r["sparsity"]),
                 "seed": int(r["seed"]),
                 **{key: _number(r.get(key), kind) for key, kind in NUMBERS.items()},
                 "error": r.get("error") or None} for r in csv.DictReader(f)]


# The per-cell numbers a comparison carries over from each sweep's results.csv.
NUMBERS = {"test_accuracy": float, "best_validation_accuracy": float, "kept": int,
           "effective": int, "final_kept": int, "final_effective": int, "prune_seconds": float}


def _number(text: str | None, kind: type) -> float | int | None:
    """A results.csv field as a number; None for an empty or missing one."""
    return kind(float(text)) if text else None


def _accuracies(rows, variant, method, sparsity) -> list[float]:
    return [r["test_accuracy"] for r in rows if (r["variant"], r["method"], r["sparsity"]) == (
        variant, method, sparsity) and r["test_accuracy"] is not None]


def _cells(rows, variant, method, sparsity) -> list[dict[str, Any]]:
    return [r for r in rows if (r["variant"], r["method"], r["sparsity"]) == (
        variant, method, sparsity)]


def _paths(cells: Sequence[dict[str, Any]]) -> str:
    """Mean effective / kept share of the masks training ended with, and how many keep no path.

    "92.1 % (0/3 no path)"; "n/a" where no cell recorded it.
    """
    known = [c for c in cells if c.get("final_effective") is not None and c.get("final_kept")]
    if not known:
        return "n/a"
    share = statistics.fmean(c["final_effective"] / c["final_kept"] for c in known)
    none = sum(c["final_effective"] == 0 for c in known)
    return f"{100 * share:.1f} % ({none}/{len(known)} no path)"


def _seconds(cells: Sequence[dict[str, Any]]) -> str:
    """Mean seconds to compute the mask over the cells that recorded it."""
    known = [c["prune_seconds"] for c in cells if c.get("prune_seconds") is not None]
    return f"{statistics.fmean(known):.0f} s" if known else "n/a"


def summary_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Test accuracy, variant x method by sparsity, as mean ± std (n seeds), and more.

    Each cell of the first table is `tables.mean_std` with its seed count:
    "0.8500 ± 0.0707 (n=2)". Then, in the same layout, the share of the kept
    weights on an input-output path with the masks that keep none, and the
    seconds to compute the mask; then, for each variant of several methods,
    the ranking at each sparsity (`seed_ranking`).

    Args:
      rows: labelled rows from `read_rows`.

    Returns:
      The markdown text.
    """
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    sparsities = sorted({r["sparsity"] for r in rows})
    table = [[variant, method, *(mean_std(_accuracies(rows, variant, method, s), count=True)
                                 for s in sparsities)]
             for variant in variants for method in methods]
    failed = sum(1 for r in rows if r["error"])
    head = ["variant", "method", *(sparsity_head(s) for s in sparsities)]
    text = markdown_table(head, table) + f"\n{len(rows)} cells, {failed} failed.\n"
    for title, cell in (("Kept weights on an input-output path (effective / kept of the mask "
                         "training ended with, mean over seeds; masks that keep no path)", _paths),
                        ("Seconds to compute the mask (mean over seeds)", _seconds)):
        table = [[variant, method, *(cell(_cells(rows, variant, method, s)) for s in sparsities)]
                 for variant in variants for method in methods]
        text += f"\n{title}:\n\n" + markdown_table(head, table)
    for variant in variants:
        if len({r["method"] for r in rows if r["variant"] == variant}) < 2:
            continue
        by_sparsity = {s: seed_ranking.accuracy_by_method(rows, variant, s, methods)
                       for s in sparsities}
        text += (f"\n## Ranking of {variant}\n\n"
                 "Tied with the best: mean ± std overlaps the best method's.\n\n"
                 + "".join(f"- {sparsity_head(s)}: {seed_ranking.tied_sentence(a)}\n"
                           for s, a in by_sparsity.items())
                 + "".join("\n" + seed_ranking.ranking_markdown(a, sparsity_head(s))
                           for s, a in by_sparsity.items() if any(a.values())))
    return text


def check_no_repeated_cells(rows: Sequence[dict[str, Any]]) -> None:
    """Refuses rows in which one (variant, method, sparsity, seed) appears twice.

    Args:
      rows: labelled rows from `read_rows`.

    Raises:
      ValueError: naming the first repeated cell.
    """
    seen = set()
    for row in rows:
        cell = (row["variant"], row["method"], row["sparsity"], row["seed"])
        if cell in seen:
            raise ValueError(f"variant {cell[0]!r} has the cell {cell[1]} at sparsity {cell[2]} "
                             f"seed {cell[3]} twice: its folders overlap")
        seen.add(cell)


def cell_settings(sweep_dir: str) -> dict[str, dict]:
    """One recorded config per series of a sweep folder, sparsity and seed removed.

    Args:
      sweep_dir: the sweep folder (its cells/*/config.json are read).

    Returns:
      {series name ("method" or "method+ablation"): config record without
      `seed` and `prune.sparsity`}; the first cell of each series in name
      order stands for it.

    Raises:
      ValueError: when the folder holds no cell with a config.json.
    """
    settings = {}
    cells = os.path.join(sweep_dir, "cells")
    names = sorted(files.listdir(cells)) if files.isdir(cells) else []
    for path in (os.path.join(cells, name, workdir.CONFIG_FILE) for name in names):
        if not files.isfile(path):
            continue
        record = json.loads(files.read_text(path))
        record.pop("seed", None)
        record.get("prune", {}).pop("sparsity", None)
        prune = record.get("prune", {})
        settings.setdefault(series_name(prune.get("method"), prune.get("ablation")), record)
    if not settings:
        raise ValueError(f"{sweep_dir} holds no cells/*/{workdir.CONFIG_FILE}: its settings "
                         "cannot be checked against the folders it is joined with")
    return settings


def check_joined_settings(runs: Sequence[tuple[str, str]],
                          series: Sequence[str] | None = None) -> None:
    """Refuses a label whose folders ran the same method with other settings.

    Folders joined under one label must differ only in sparsity and seed, so
    that a mean ± std never averages two configs.

    Args:
      runs: (label, sweep folder) pairs; labels given once are not checked.
      series: the series compared (None: every series of the folders).

    Raises:
      ValueError: naming the label, the folders, the method and the first
        differing keys.
    """
    folders: dict[str, list[str]] = {}
    for label, folder in runs:
        folders.setdefault(label, []).append(folder)
    for label, joined in folders.items():
        if len(joined) < 2:
            continue
        reference: dict[str, tuple[str, dict]] = {}  # series -> (first folder with it, record)
        for other in joined:
            for name, record in cell_settings(other).items():
                if series is not None and name not in series:
                    continue
                first_folder, first = reference.setdefault(name, (other, record))
                diff = workdir.differences(first, record)
                if diff:
                    raise ValueError(
                        f"variant {label!r} joins {first_folder} and {other}, whose {name} cells "
                        f"differ in more than sparsity and seed:\n  " + "\n  ".join(diff[:5])
                        + "\nGive them different labels or rerun one with the other's settings.")


def select_series(rows: Sequence[dict[str, Any]], series: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of the named series, ordered as `series` names them.

    Args:
      rows: labelled rows from `read_rows`.
      series: series names ("method" or "method+ablation").

    Returns:
      The rows kept, by series in the given order, each series' rows in
      their read order.

    Raises:
      ValueError: for no series or a series named twice, or naming a series
        that no row has, and those there are.
    """
    repeated = sorted({name for name in series if list(series).count(name) > 1})
    if not series or repeated:
        raise ValueError("--series must name each series once, at least one: "
                         + (f"{', '.join(repeated)} named twice" if repeated else "none named"))
    present = list(dict.fromkeys(r["method"] for r in rows))
    missing = [name for name in series if name not in present]
    if missing:
        raise ValueError(f"--series names {', '.join(missing)}, which no folder has; "
                         f"the folders have {', '.join(present)}")
    return [r for name in series for r in rows if r["method"] == name]


def write_comparison(runs: Sequence[tuple[str, str]], out_dir: str, *,
                     series: Sequence[str] | None = None,
                     panels: str = "method") -> list[dict[str, Any]]:
    """Reads every run and writes results.csv, summary.md and the figure into out_dir.

    Args:
      runs: (label, sweep folder) pairs, in the order of the table.
      out_dir: output folder (created if missing).
      series: the series to compare, in the table's order (None: all, in the
        order read).
      panels: the figure's panels, "method" or "variant" (`plot_comparison`).

    Returns:
      The labelled rows.

    Raises:
      ValueError: for a cell found twice, folders joined under one label
        whose settings differ (`check_joined_settings`), a series no folder
        has, or unknown panels.
    """
    if panels not in PANELS:
        raise ValueError(f"--panels must be one of {', '.join(PANELS)}, got {panels!r}")
    rows = [row for label, folder in runs for row in read_rows(label, folder)]
    if series is not None:
        rows = select_series(rows, series)
    check_no_repeated_cells(rows)
    check_joined_settings(runs, series)
    files.write_atomic(os.path.join(out_dir, "results.csv"),
                       csv_text(VARIANT_COLUMNS, [[r[c] for c in VARIANT_COLUMNS] for r in rows]))
    files.write_atomic(os.path.join(out_dir, "summary.md"), summary_markdown(rows))
    plot_comparison(rows, os.path.join(out_dir, "accuracy_vs_sparsity.png"), panels)
    return rows


def parse_runs(text: str) -> list[tuple[str, str]]:
    """Parses "label=folder,label=folder" into pairs (a label may repeat).

    Args:
      text: the --runs flag.

    Returns:
      (label, folder) pairs.

    Raises:
      ValueError: for an entry without "=", an empty label, or no entry.
    """
    pairs = []
    for entry in filter(None, text.split(",")):
        if "=" not in entry:
            raise ValueError(f"--runs entry {entry!r} must be label=folder")
        label, folder = entry.split("=", 1)
        pairs.append((label.strip(), folder.strip()))
    if not pairs or not all(label for label, _ in pairs):
        raise ValueError(f"--runs needs at least one label=folder and no empty label, got {text!r}")
    return pairs


def main() -> None:
    """Command line: --runs=label=folder,... --out=DIR [--series=a,b] [--panels=variant]."""
    from absl import app, flags

    flags.DEFINE_string("runs", None, "label=sweep_folder pairs, comma-separated.")
    flags.DEFINE_string("out", None, "Output folder.")
    flags.DEFINE_list("series", None, "Series to compare, in order (default: all).")
    flags.DEFINE_enum("panels", "method", PANELS, "One figure panel per method or per variant.")
    flags.mark_flags_as_required(["runs", "out"])

    def run(argv: list[str]) -> None:
        del argv
        rows = write_comparison(parse_runs(flags.FLAGS.runs), flags.FLAGS.out,
                                series=flags.FLAGS.series, panels=flags.FLAGS.panels)
        print(summary_markdown(rows))

    app.run(run)


if __name__ == "__main__":
    main()
