"""A grid of prune-then-train runs: methods x sparsities x seeds, resumable.

    python -m force_jax.sweep --config=configs/claim_fashion_mnist.py --workdir=/tmp/claim \
        --config.data.data_dir=../shared/datasets/tfds

The config holds every key of configs/default.py plus `config.sweep.methods`,
`config.sweep.sparsities` and `config.sweep.seeds` (tuples), and optionally
`config.sweep.ablations` (sanity checks of every mask, see `force_jax.core.sanity`:
some of none, shuffle, reinit, invert; default none only),
`config.sweep.arms` (named partial configs the methods axis may list beside
the methods, e.g. RigL from ERK densities or lottery rounds; see
`sweep_grid.arm_settings`), `config.sweep.synflow_steps` (SynFlow's number
of steps, None: its default of 100), `config.sweep.grasp_temperature`
(softmax temperature used for GraSP cells only) and
`config.sweep.grasp_scoring_loss` (GraSP's own scoring loss). Each cell runs
`train.train_and_evaluate` (an arm of lottery rounds: `lottery.run_as_one_run`) in
`DIR/cells/<method>_s<sparsity>_seed<seed>` (with `_<ablation>` appended
for an ablation other than none). After every cell the sweep
rewrites, atomically, `DIR/results.csv`, `DIR/summary.md` (mean and std over
seeds of the test accuracy, and masks with S(m) = 0, per method and sparsity;
when cells are evaluated more than once, the ranking of methods after each
evaluation), `DIR/accuracy_by_step.csv` (every evaluation of every cell),
`DIR/accuracy_vs_sparsity.png`, `DIR/objective_vs_sparsity.png` and
`DIR/layer_density_<sparsity>.png` (the highest sparsity, one series per
method) and `DIR/density_trajectory_<method>_<sparsity>.png` (per-layer
density over the schedule of each multi-step method, at the highest sparsity
and the first seed).

Rerunning the command on the same workdir skips every finished cell (its
metrics.json exists), resumes an interrupted one from its last checkpoint and
retries the cells that failed. Before any cell runs, the grid is validated (a
repeated method, sparsity or seed is an error, not a statistic), so is every
cell's config (a sparsity that keeps no weight of the model included), and every
existing cell must record the config the sweep now gives it (see
`force_jax.runs.workdir`): a rerun with other settings is refused, never reported
with the old results. A failing cell is recorded in results.csv with
its error ("Type: message") and the sweep goes on with the next one; the
command then names each failed cell and its error on stderr and exits with
status 1. A disk that refuses a write (full, read-only) stops the sweep at
once: the command prints one ``error:`` line naming the path and exits with
status 2, and the rerun resumes.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
from tqdm.auto import tqdm

from force_jax.commands import lottery, train
from force_jax.config import mask_changes as mask_changes_config
from force_jax.config import setup, training_setup, validate
from force_jax.config.sweep_grid import (
    ablations,
    cell_config,
    cell_name,
    check_cells,
    check_shared_options,
    failed_under,
    grid,
    validate_grid,
)
from force_jax.errors import ConfigError
from force_jax.reports import sweep_cells
from force_jax.reports.sweep_report import (
    series_name,
    write_plots,
    write_results,
    write_step_results,
    write_summary,
)
from force_jax.runs import checkpoint, disk, files
from force_jax.runs import workdir as workdir_lib
from force_jax.training import cluster, data

TrainFn = Callable[[ml_collections.ConfigDict, str], dict]


def run_cell(
    config: ml_collections.ConfigDict, workdir: str, train_fn: TrainFn
) -> None:
    """Runs (or resumes) one cell and records its training time and error.

    Args:
      config: the cell's config.
      workdir: the cell's folder.
      train_fn: `train.train_and_evaluate` or a stand-in with its signature.

    Raises:
      OSError: when the disk refuses a write (`disk.disk_error`): every
        later cell would fail the same way, so the sweep stops; the rerun
        resumes the cell.
    """
    prune_path = os.path.join(workdir, "prune.json")
    pruned_before = files.exists(prune_path)
    error = None
    start = time.perf_counter()
    try:
        train_fn(config, workdir)
    except Exception as e:  # noqa: BLE001 - any failure is recorded, the sweep goes on
        if disk.disk_error(e) is not None:
            raise  # a full or read-only disk fails every later cell too: stop the sweep
        error = f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - start
    pruned = None if pruned_before else sweep_cells.read_json(prune_path)
    # Pruning happened inside this call only if prune.json is new: take it out of the time.
    train_seconds = seconds - (pruned["seconds"] if pruned else 0.0)
    checkpoint.write_json(os.path.join(workdir, sweep_cells.CELL_RECORD),
                          {"train_seconds": train_seconds, "error": error})


def run_sweep(
    config: ml_collections.ConfigDict, workdir: str, *, train_fn: TrainFn | None = None
) -> list[dict[str, Any]]:
    """Runs every (method, sparsity, seed) cell, skipping the finished ones.

    Args:
      config: sweep config (configs/default.py keys plus config.sweep).
      workdir: sweep folder; rerunning on it resumes.
      train_fn: runs one cell; defaults to `train.train_and_evaluate`.

    Cells run seed by seed (every method and sparsity of the first seed,
    then the next seed), so an interrupted sweep already covers the whole grid
    once. The grid and every cell's config are validated, the sweep folder is
    locked for the run (by process 0), and every existing cell is checked
    against the config before any cell runs.

    Returns:
      The results rows of the finished cells, ordered by method, sparsity and
      seed (as in results.csv).

    Raises:
      ConfigError: for a bad grid, a cell config `validate_cells` refuses, or
        cells left by another config.
    """
    validate_cells(config)
    workdir_lib.check_location(workdir)
    cluster.initialize_distributed(config.distributed, config.get("cluster"))
    with workdir_lib.claim(workdir, check=lambda: check_cells(config, workdir)):
        return _run_cells(config, workdir, train_fn or train.train_and_evaluate)


def rewrite_reports(config: ml_collections.ConfigDict, workdir: str) -> list[dict[str, Any]]:
    """Rewrites a sweep folder's reports from its finished cells, running none.

    For a folder whose cells were copied in (from other machines, or a sweep
    still running elsewhere), or one whose reports a partial grid last wrote
    (`--config.sweep.seeds=(0,)`): results.csv, accuracy_by_step.csv,
    summary.md and the figures then hold every cell of the config's grid
    that finished, or failed under this config, and no other (figures an
    earlier grid drew at other sparsities stay in the folder). The folder is
    claimed as by `run_sweep` (a sweep running on it refuses this), and every
    cell present is checked against the config first.

    Args:
      config: the sweep config whose grid the reports cover.
      workdir: the sweep folder.

    Returns:
      The results rows of the finished cells (as in results.csv).

    Raises:
      ConfigError: for a bad grid, or a folder with no finished cell of the grid.
      WorkdirError: for a folder in use, or holding cells of another config.
    """
    validate_grid(config.sweep)
    workdir_lib.check_location(workdir)
    with workdir_lib.claim(workdir, check=lambda: check_cells(config, workdir)):
        return _run_cells(config, workdir, None)


def validate_cells(config: ml_collections.ConfigDict) -> None:
    """Refuses, before any cell runs or anything is written, a grid a cell of which cannot run.

    One error now, not one failed cell each: the grid, the per-method
    settings, every cell's config, the dataset (it must be prepared or
    downloadable) and its sizes, and every cell's sparsity and allocation
    against the model's prunable weights (from the model's shapes and the
    dataset's metadata; no record is read).

    Args:
      config: sweep config.

    Raises:
      ConfigError: naming the key at fault.
    """
    sweep = config.sweep
    validate_grid(sweep)
    check_shared_options(config)
    validate.validate_sweep_settings(sweep)
    cells = [cell_config(config, *cell) for cell in grid(sweep)]
    for cell in cells:
        validate.validate_config(cell)
    first = cells[0]  # one dataset and one model for every cell
    # The dataset must be there (prepared, or download allowed): a missing one stops the
    # sweep now in one line, as it stops a training run, rather than failing every cell.
    info = data.dataset_info(first.data.name, first.data.data_dir,
                             validation_fraction=first.data.validation_fraction,
                             download=first.data.download)
    params = setup.abstract_params(setup.build_model(first, info.num_classes), info.image_shape)
    for cell in cells:
        validate.check_data_sizes(cell, info)
        setup.check_allocation(cell, params)  # and the sparsity and floors (`setup.recipe`)
        _check_training(cell, info.num_train)


def _check_training(cell: ml_collections.ConfigDict, num_train: int) -> None:
    """A cell's mask-change schedule and lottery rounds against its run's length."""
    total = training_setup.run_length(cell, num_train)[0]
    if mask_changes_config.method(cell) != "none":
        mask_changes_config.end_step(cell, total)
    if _rounds(cell):
        lottery.check(cell, total)


def _rounds(cell: ml_collections.ConfigDict) -> int:
    """The lottery rounds of a cell's config (0: a plain train run)."""
    return cell.get("lottery", {}).get("rounds", 0)


def _run_cells(config: ml_collections.ConfigDict, workdir: str,
               train_fn: TrainFn | None) -> list[dict[str, Any]]:
    """The body of `run_sweep` (and, without train_fn, of `rewrite_reports`).

    On a locked sweep folder whose cells match `config`; train_fn None runs
    no cell, and reports the finished and the failed ones only.
    """
    sweep = config.sweep
    cells = grid(sweep)
    rows: list[dict[str, Any]] = []
    step_rows: list[dict[str, Any]] = []
    highest, first_seed = max(sweep.sparsities), sweep.seeds[0]  # the per-layer density plot
    bar = tqdm(cells, desc="sweep", unit="cell", disable=train_fn is None)
    for cell in bar:
        name = cell_name(*cell)
        bar.set_postfix_str(name)
        cell_dir = os.path.join(workdir, "cells", name)
        ran = not files.exists(os.path.join(cell_dir, "metrics.json"))
        if train_fn is None:  # reports only: a cell never run (or not yet ended) is left out
            if ran and not failed_under(cell_config(config, *cell), cell_dir):
                continue
            ran = False
        if ran:
            cell_cfg = cell_config(config, *cell)
            # An arm of lottery rounds trains each round as a run of its own.
            run_cell(cell_cfg, cell_dir,
                     lottery.run_as_one_run if _rounds(cell_cfg) else train_fn)
            # Every cell compiles its own programs (its loss closes over its model): free them.
            jax.clear_caches()
        rows.append(sweep_cells.cell_row(cell_dir, *cell))
        step_rows += sweep_cells.cell_step_rows(cell_dir, *cell)
        rows.sort(key=lambda r: _grid_order(sweep, r))
        step_rows.sort(key=lambda r: (*_grid_order(sweep, r), r["step"]))
        if ran:  # a resumed sweep does not redraw for every cell it skips
            _write_reports(workdir, rows, step_rows, sweep, highest, first_seed)
    bar.close()
    if not rows:
        raise ConfigError(f"{workdir} holds no finished cell of this config's grid: nothing to "
                          "report (check --workdir and the grid's config.sweep keys)")
    _write_reports(workdir, rows, step_rows, sweep, highest, first_seed)
    return rows


def _grid_order(sweep: ml_collections.ConfigDict, row: dict[str, Any]) -> tuple:
    """Sort key of a results row: method and ablation (in the grid's order), sparsity, seed."""
    return (sweep.methods.index(row["method"]), ablations(sweep).index(row["ablation"]),
            row["sparsity"], row["seed"])


def _write_reports(workdir: str, rows: list[dict[str, Any]], step_rows: list[dict[str, Any]],
                   sweep: ml_collections.ConfigDict, highest: float, first_seed: int) -> None:
    """results.csv, accuracy_by_step.csv, summary.md and the figures for the rows so far."""
    write_results(os.path.join(workdir, "results.csv"), rows)
    write_step_results(os.path.join(workdir, "accuracy_by_step.csv"), step_rows)
    series = [series_name(m, a) for m in sweep.methods for a in ablations(sweep)]
    write_summary(os.path.join(workdir, "summary.md"), rows, series, sweep.sparsities,
                  step_rows)
    write_plots(workdir, rows, sweep_cells.density_reports(workdir, sweep, highest, first_seed),
                highest, first_seed)
    sweep_cells.trajectory_plots(workdir, sweep, highest, first_seed)


def _sweep_and_summarise(config: ml_collections.ConfigDict, workdir: str, *,
                         train_fn: TrainFn | None = None) -> None:
    """The sweep command: runs the sweep and says how it went; exits 1 if a cell failed.

    Every cell is run (a failed one does not stop the others). The summary
    line goes to stdout; when some cell failed, one line per failed cell
    follows on stderr and the process exits with status 1.

    Args:
      config: sweep config.
      workdir: sweep folder.
      train_fn: as in `run_sweep`.

    Raises:
      SystemExit: with status 1 when some cell failed.
    """
    rows = run_sweep(config, workdir, train_fn=train_fn)
    failed = sweep_cells.failure_lines(rows)
    print(f"{len(rows)} cells, {len(failed)} failed; "
          f"results in {os.path.join(workdir, 'results.csv')}", flush=True)
    if failed:
        print("\n".join(failed), file=sys.stderr, flush=True)
        sys.exit(1)


def _report_and_summarise(config: ml_collections.ConfigDict, workdir: str) -> None:
    """The sweep command with --report_only: `rewrite_reports`, and one line of what it found."""
    rows = rewrite_reports(config, workdir)
    failed = len(sweep_cells.failure_lines(rows))
    print(f"{len(rows)} finished cells reported, {failed} of them failed; "
          f"results in {os.path.join(workdir, 'results.csv')}", flush=True)


def main() -> None:
    """Command line: --config=x.py --workdir=DIR [--report_only] [--config.key=value ...]."""
    from absl import flags

    from force_jax.commands import cli

    flags.DEFINE_bool("report_only", False, "Rewrite results.csv, summary.md and the figures "
                      "from the folder's finished cells; run no cell.")
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS["report_only"])
    cli.run_config_command(
        lambda config, workdir: (_report_and_summarise if flags.FLAGS.report_only
                                 else _sweep_and_summarise)(config, workdir),
        "Sweep folder; rerun on it to resume.")


if __name__ == "__main__":
    main()
