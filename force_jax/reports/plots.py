"""Figures saved as PNG (matplotlib, headless)."""

from __future__ import annotations

import io
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from force_jax.core.density import (
    SparsityReport,
    natural_key,  # noqa: E402
)
from force_jax.runs import files  # noqa: E402


def save_figure(fig, path: str) -> None:
    """Saves a figure as PNG, atomically (`files.write_atomic`), and closes it.

    Args:
      fig: a matplotlib figure; closed even when the write fails.
      path: output PNG (its folder is created if missing).

    Raises:
      OSError: naming `path` when the disk refuses the write; the previous
        file is kept.
    """
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    files.write_atomic(path, buffer.getvalue())


def plot_layer_density(reports: dict[str, SparsityReport], path: str, title: str = "") -> None:
    """Bar chart of the kept fraction of every prunable layer, one series per mask.

    Args:
      reports: label -> SparsityReport (all of the same model).
      path: output PNG.
      title: figure title.
    """
    first = next(iter(reports.values()))
    order = sorted(range(len(first.layers)),  # conv_2 before conv_10
                   key=lambda j: natural_key(first.layers[j].name))
    names = [first.layers[j].name.removesuffix("/kernel") for j in order]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(names) + 2), 4))
    width = 0.8 / len(reports)
    for i, (label, report) in enumerate(reports.items()):
        xs = [j + (i - (len(reports) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [100 * report.layers[j].density for j in order], width,
               label=f"{label} (global {100 * report.density:.2f} %)")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("weights kept (%)")
    ax.set_yscale("log")
    ax.set_title(title or "per-layer density")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_metric_vs_remaining(
    curves: dict[str, dict[float, list[float]]], path: str, *, ylabel: str,
    log_y: bool = False, title: str = "",
) -> None:
    """Mean and standard deviation over seeds of a metric vs remaining weights (log x axis).

    As in the FORCE paper's figures: the x axis is the percentage of prunable
    weights kept, on a log scale, so the extreme sparsities are spread out.

    Args:
      curves: label (e.g. method) -> remaining weights in % -> values over seeds.
      path: output PNG.
      ylabel: y-axis label.
      log_y: also put the y axis on a log scale (values must be positive).
      title: figure title.
    """
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, points in curves.items():
        xs = sorted(x for x, values in points.items() if values)
        if not xs:
            continue
        values = [points[x] for x in xs]
        means = [sum(v) / len(v) for v in values]
        stds = [(sum((u - m) ** 2 for u in v) / len(v)) ** 0.5 for v, m in zip(values, means)]
        ax.errorbar(xs, means, yerr=stds, marker="o", markersize=4, capsize=3, label=label)
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("remaining weights (%)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_density_trajectory(trajectory: Mapping[str, Sequence[float]],
                            keep_fraction: Sequence[float], path: str, title: str = "") -> None:
    """Per-layer density after every pruning step, with the global target.

    Args:
      trajectory: layer name -> densities after steps 1..T (see
        `mask_analysis.layer_density_trajectory`).
      keep_fraction: the schedule's global keep fraction after each step.
      path: output PNG.
      title: figure title.
    """
    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    for name, densities in trajectory.items():
        steps = range(1, len(densities) + 1)
        ax.plot(steps, [100 * d for d in densities], marker=".", label=name.removesuffix("/kernel"))
    fractions = list(keep_fraction)
    ax.plot(range(1, len(fractions) + 1), [100 * f for f in fractions], "k--", linewidth=2,
            label="global (schedule)")
    ax.set_yscale("log")
    ax.set_xlabel("pruning step")
    ax.set_ylabel("weights kept (%)")
    ax.set_title(title or "per-layer density over the pruning schedule")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    save_figure(fig, path)

PANELS = ("method", "variant")  # what one panel of `plot_comparison` holds


def _accuracies(rows, variant, method, sparsity) -> list[float]:
    return [r["test_accuracy"] for r in rows if (r["variant"], r["method"], r["sparsity"]) == (
        variant, method, sparsity) and r["test_accuracy"] is not None]


def plot_comparison(rows: Sequence[dict[str, Any]], path: str, panels: str = "method") -> None:
    """Accuracy vs remaining weights, mean with error bars of one std.

    Args:
      rows: labelled rows (`sweep_compare.read_rows`): variant, method,
        sparsity and test_accuracy (None for a failed cell).
      path: output PNG.
      panels: "method" (one panel per method, one line per variant) or
        "variant" (one panel per variant, one line per method).
    """
    if panels not in PANELS:
        raise ValueError(f"panels must be one of {PANELS}, got {panels!r}")
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    sparsities = sorted({r["sparsity"] for r in rows})
    outer, inner = (methods, variants) if panels == "method" else (variants, methods)
    colours = plt.get_cmap("tab10" if len(inner) <= 10 else "tab20")
    fig, axes = plt.subplots(1, len(outer), figsize=(5 * len(outer) + 2 * (panels == "variant"),
                                                     4 + 0.15 * len(inner) * (panels == "variant")),
                             sharey=True, squeeze=False)
    for ax, name in zip(axes[0], outer):
        for i, line in enumerate(inner):
            method, variant = (name, line) if panels == "method" else (line, name)
            points = [(100 * (1 - s), _accuracies(rows, variant, method, s)) for s in sparsities]
            points = [(x, v) for x, v in points if v]
            if not points:
                continue
            means = [statistics.fmean(v) for _, v in points]
            stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for _, v in points]
            ax.errorbar([x for x, _ in points], means, yerr=stds, marker="os^vD<>p*h"[i % 10],
                        capsize=3, color=colours(i % colours.N), label=line)
        ax.set(xscale="log", xlabel="remaining weights (%)", title=name)
        remaining = [100 * (1 - s) for s in sparsities]  # the measured points, as plain numbers
        ax.set_xticks(remaining, [f"{x:.3g}" for x in remaining])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy")
    axes[0][-1].legend(fontsize=8, loc="best" if panels == "method" else "lower right")
    fig.tight_layout()
    save_figure(fig, path)
