"""Do a sweep's trained masks still join input to output? Read from their checkpoints.

    python -m force_jax.reports.mask_paths --sweep=runs/sanity_fashion_mnist \
        --data_dir=../shared/datasets/tfds --center_layers=conv_6/kernel,conv_7/kernel

For every finished cell of a sweep folder, the mask is read back from the
last checkpoint (a kept weight is never exactly 0 after training; the count
is checked against the cell's prune.json) and two things are measured with
`force_jax.core.mask_analysis`:

- `paths`: SynFlow's objective on the mask's 0/1 network; 0 means no path of
  kept weights joins the input to the output, so the trained network ignores
  its input and can only guess;
- the share of each conv layer's kept weights on the kernel's centre tap, the
  only tap of a 3x3 conv that sees anything but padding on a 1x1 map.

Writes, atomically, SWEEP/paths.csv (one row per cell) and SWEEP/paths.md
(per method, ablation and sparsity: connected seeds, and the mean centre-tap
share of the --center_layers), and prints the table.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import statistics
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from force_jax.config import setup
from force_jax.core import losses, mask_analysis
from force_jax.core import masks as masks_lib
from force_jax.reports.sweep_report import series_name
from force_jax.reports.tables import csv_text, markdown_table
from force_jax.runs import checkpoint, files
from force_jax.training import data

PyTree = Any


def trained_mask(cell_dir: str, params_template: PyTree) -> PyTree:
    """The mask of a finished cell: its last checkpoint's nonzero prunable weights.

    Args:
      cell_dir: the cell's folder (with checkpoints/ and prune.json).
      params_template: the model's params at initialisation (gives the tree
        and which leaves are prunable).

    Returns:
      A mask pytree of `params_template`'s structure.

    Raises:
      ValueError: when there is no checkpoint, or the count of nonzero weights
        differs from the count pruning recorded.
    """
    folder = os.path.join(cell_dir, "checkpoints")
    steps = sorted((int(s) for s in files.listdir(folder) if s.isdigit()),
                   reverse=True) if files.isdir(folder) else []
    if not steps:
        raise ValueError(f"{cell_dir} has no checkpoint")
    restored = ocp.StandardCheckpointer().restore(  # orbax takes absolute paths only
        files.absolute(os.path.join(folder, str(steps[0]), "default")))
    template_mask = masks_lib.init_mask(params_template)
    leaves, treedef = jax.tree.flatten(template_mask)
    trained = jax.tree.leaves(restored["params"])
    mask = treedef.unflatten([np.asarray(p) != 0 if masks_lib.is_prunable_leaf(m) else m
                              for m, p in zip(leaves, trained, strict=True)])
    expected = json.loads(files.read_text(os.path.join(cell_dir, "prune.json")))[
        "history"]["kept"][-1]
    if int(masks_lib.num_kept(mask)) != expected:
        raise ValueError(f"{cell_dir}: {int(masks_lib.num_kept(mask))} nonzero prunable weights "
                         f"in the checkpoint, but pruning kept {expected}")
    return mask


@functools.lru_cache(maxsize=8)
def _model(config_json: str, data_dir: str) -> tuple[Any, PyTree]:
    config = ml_collections.ConfigDict(json.loads(config_json))
    info = data.dataset_info(config.data.name, data_dir)
    model = setup.build_model(config, info.num_classes)
    variables = setup.init_variables(model, info.image_shape, jax.random.key(0))
    objective = jax.jit(losses.synflow_objective(model, variables, info.image_shape))
    return objective, variables["params"]


def cell_paths(cell_dir: str, data_dir: str | None = None) -> dict[str, Any]:
    """The path measurements of one finished cell.

    Args:
      cell_dir: the cell's folder.
      data_dir: TFDS folder for the dataset's description (default: the
        cell's config.data.data_dir).

    Returns:
      {"method", "ablation", "sparsity", "seed", "paths", "center_tap": {layer: share}}.
    """
    config = json.loads(files.read_text(os.path.join(cell_dir, "config.json")))
    model_part = {"model": config["model"], "data": config["data"]}
    objective, params = _model(json.dumps(model_part, sort_keys=True),
                               data_dir or config["data"]["data_dir"])
    mask = trained_mask(cell_dir, params)
    return {"method": config["prune"]["method"],
            "ablation": config["prune"].get("ablation", "none"),
            "sparsity": float(config["prune"]["sparsity"]), "seed": int(config["seed"]),
            "paths": mask_analysis.input_output_paths(objective, params, mask),
            "center_tap": mask_analysis.center_tap_fraction(mask)}


PATHS_FILE = "paths.json"


def cached_cell_paths(cell_dir: str, data_dir: str | None = None) -> dict[str, Any]:
    """`cell_paths`, measured once per cell and kept in CELL/paths.json.

    A cell's trained mask never changes once its metrics.json exists, so the
    measurement is written beside it (atomically) with a hash of that
    metrics.json, and read back while the hash matches, also where the
    cell's checkpoints are no longer kept.

    Args:
      cell_dir: a finished cell's folder.
      data_dir: TFDS folder for the dataset's description.

    Returns:
      The `cell_paths` dict.
    """
    path = os.path.join(cell_dir, PATHS_FILE)
    # Ties the measurement to the run it was made of: a cell rerun (its metrics.json
    # rewritten) is measured again, never reported with the old run's paths.
    run = hashlib.sha256(files.read_bytes(os.path.join(cell_dir, "metrics.json"))).hexdigest()
    if files.exists(path):
        cached = json.loads(files.read_text(path))
        if cached.get("metrics_sha256") == run:
            return cached
    measured = cell_paths(cell_dir, data_dir)
    measured["metrics_sha256"] = run
    measured["paths"] = float(measured["paths"])
    measured["center_tap"] = {k: float(v) for k, v in measured["center_tap"].items()}
    checkpoint.write_json(path, measured)
    return measured


def summary_markdown(rows: Sequence[dict[str, Any]], center_layers: Sequence[str]) -> str:
    """Per (method+ablation, sparsity): connected seeds and the centre-tap share.

    Args:
      rows: `cell_paths` results.
      center_layers: layers whose mean centre-tap share (over seeds) is shown.

    Returns:
      A markdown table.
    """
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((series_name(r["method"], r["ablation"]), r["sparsity"]), []).append(r)
    head = ["method", "sparsity", "connected seeds"] + [f"centre tap {layer}"
                                                        for layer in center_layers]
    table = []
    for (series, sparsity), group in sorted(groups.items()):
        cells = [series, f"{sparsity:g}",
                 f"{sum(r['paths'] > 0 for r in group)}/{len(group)}"]
        for layer in center_layers:
            shares = [r["center_tap"][layer] for r in group if layer in r["center_tap"]]
            cells.append(f"{statistics.fmean(shares):.2f}" if shares else "none kept")
        table.append(cells)
    return markdown_table(head, table)


def write_paths(sweep_dir: str, data_dir: str | None = None,
                center_layers: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Measures every finished cell of a sweep; writes paths.csv and paths.md.

    Args:
      sweep_dir: the sweep folder (with cells/).
      data_dir: TFDS folder (default: each cell's config.data.data_dir).
      center_layers: layers shown in paths.md.

    Returns:
      The rows, one per finished cell (a cell with metrics.json).

    Raises:
      FileNotFoundError: when SWEEP/cells does not exist.
    """
    cells = os.path.join(sweep_dir, "cells")
    if not files.isdir(cells):
        raise FileNotFoundError(f"{cells} does not exist: is {sweep_dir} a sweep folder?")
    rows = [cached_cell_paths(os.path.join(cells, name), data_dir)
            for name in sorted(files.listdir(cells))
            if files.exists(os.path.join(cells, name, "metrics.json"))]
    layers = sorted({layer for r in rows for layer in r["center_tap"]})
    head = (["method", "ablation", "sparsity", "seed", "paths"]
            + [f"center_tap:{layer}" for layer in layers])
    lines = [[r["method"], r["ablation"], r["sparsity"], r["seed"], r["paths"]]
             + [r["center_tap"].get(layer) for layer in layers] for r in rows]
    files.write_atomic(os.path.join(sweep_dir, "paths.csv"), csv_text(head, lines))
    files.write_atomic(os.path.join(sweep_dir, "paths.md"),
                            summary_markdown(rows, center_layers))
    return rows


def main() -> None:
    """Command line: --sweep=DIR [--data_dir=TFDS] [--center_layers=a,b]."""
    from absl import app, flags

    flags.DEFINE_string("sweep", None, "A sweep folder.")
    flags.DEFINE_string("data_dir", None, "TFDS folder (default: each cell's data.data_dir).")
    flags.DEFINE_list("center_layers", [], "Layers whose centre-tap share paths.md shows.")
    flags.mark_flags_as_required(["sweep"])

    def run(argv: list[str]) -> None:
        del argv
        rows = write_paths(flags.FLAGS.sweep, flags.FLAGS.data_dir, flags.FLAGS.center_layers)
        print(summary_markdown(rows, flags.FLAGS.center_layers))

    app.run(run)


if __name__ == "__main__":
    main()
