"""The grid of a sweep: its cells, their names and configs, and the checks before a run.

A cell is (method, sparsity, seed, ablation). `cell_config` is the one
place a cell's settings come from, so a rerun can check that every existing
cell folder answers to the config the sweep would now give it.
"""

from __future__ import annotations

import json
import os

import ml_collections

from force_jax.core import allocation, methods, sanity, schedules
from force_jax.errors import ConfigError, WorkdirError
from force_jax.runs import files
from force_jax.runs import workdir as workdir_lib

# Written by the sweep beside a cell's own files: its timing and error, so a
# rerun that skips the cell can still report them.
CELL_RECORD = "sweep_cell.json"

# The values of the sweep's ablations axis: a sanity check of the mask or of the data
# (force_jax.core.sanity, data_checks), or a layer-wise allocation (force_jax.core.allocation:
# the cell prunes with prune.scope=layerwise and that allocation).
VARIANTS = (*sanity.ABLATIONS, *allocation.ALLOCATIONS)


def arm_settings(sweep: ml_collections.ConfigDict, name: str) -> dict | None:
    """The flat settings of the arm `name` (config.sweep.arms), or None for a plain method.

    An arm is a named partial config that the sweep's methods axis may list
    beside the methods: its `prune.method` is the method that finds the mask,
    and its other keys (a mask that changes during training, lottery rounds, a
    layer-wise allocation) say how the cell trains. "rigl_erk", say, is
    {"prune": {"method": "random", "scope": "layerwise", "allocation": "erk"},
    "train": {"mask_changes": {"method": "rigl"}}}.

    Args:
      sweep: config.sweep.
      name: a value of config.sweep.methods.

    Returns:
      {"prune.method": ..., ...} for an arm, None for a method's name.
    """
    arm = sweep.get("arms", {}).get(name)
    return None if arm is None else method_settings_flat(arm)


def base_method(sweep: ml_collections.ConfigDict, name: str) -> str:
    """The pruning method of a value of config.sweep.methods: itself, or its arm's prune.method."""
    arm = arm_settings(sweep, name)
    return name if arm is None else arm.get("prune.method")


def cell_name(method: str, sparsity: float, seed: int, ablation: str = "none") -> str:
    """Folder name of one cell, e.g. ``force_s0.995_seed0`` or ``force_s0.995_seed0_shuffle``.

    Args:
      method: pruning method.
      sparsity: fraction of prunable weights removed (written in full, via repr).
      seed: the cell's seed.
      ablation: the cell's sanity check (none adds nothing to the name).

    Returns:
      The folder name under DIR/cells.
    """
    suffix = "" if ablation == "none" else f"_{ablation}"
    return f"{method}_s{float(sparsity)!r}_seed{int(seed)}{suffix}"


def cell_config(
    config: ml_collections.ConfigDict, method: str, sparsity: float, seed: int,
    ablation: str = "none",
) -> ml_collections.ConfigDict:
    """The experiment config of one cell.

    One-shot methods get `prune.steps = None` (their default of 1 step); SynFlow
    gets `sweep.synflow_steps` if set (else None: its default of 100); GraSP gets
    `sweep.grasp_temperature` and `sweep.grasp_scoring_loss` if set. Other
    methods keep `prune.steps`. Last, `sweep.method_settings.<method>` (a
    partial config, e.g. {"prune": {"scoring_loss": "cross_entropy"}}) is
    applied to that method's cells, and, for an arm (`arm_settings`), the
    arm's settings after them. A gradual-pruning arm
    (train.mask_changes.method=gmp) prunes during training to the cell's
    sparsity (train.mask_changes.sparsity) from the mask of its own
    prune.sparsity (0: dense).

    Args:
      config: the sweep config.
      method: pruning method, or the name of an arm of config.sweep.arms.
      sparsity: fraction of prunable weights removed.
      seed: seed of initialisation, pruning batches and training.
      ablation: the sanity check applied (prune.ablation), or an allocation
        name (uniform, erk, er): the layer-wise scope with that allocation.

    Returns:
      An unlocked copy of `config` with prune.method/sparsity/steps/ablation
      (or scope/allocation) and seed set.
    """
    cell = ml_collections.ConfigDict(config.copy_and_resolve_references().to_dict())
    if ablation in allocation.ALLOCATIONS:  # a layer-wise allocation, not a sanity check
        cell.prune.ablation = "none"
        cell.prune.scope = "layerwise"
        cell.prune.allocation = ablation
    else:
        cell.prune.ablation = ablation
    sweep = config.get("sweep", ml_collections.ConfigDict())
    arm = arm_settings(sweep, method)
    name, method = method, base_method(sweep, method)
    cell.prune.method = method
    cell.prune.sparsity = float(sparsity)
    cell.seed = int(seed)
    record = methods.get(method)
    if not record.progressive:
        cell.prune.steps = None
    elif record.needs_synflow:
        cell.prune.steps = sweep.get("synflow_steps")
    if method == "grasp" and sweep.get("grasp_temperature") is not None:
        cell.prune.temperature = float(sweep.grasp_temperature)
    if method == "grasp" and sweep.get("grasp_scoring_loss") is not None:
        cell.prune.scoring_loss = sweep.grasp_scoring_loss
    settings = method_settings_flat(sweep.get("method_settings", {}).get(method) or {})
    _apply(cell, settings, f"config.sweep.method_settings.{method}")
    _apply(cell, arm or {}, f"config.sweep.arms.{name}")
    changes = cell.train.get("mask_changes")
    if arm is not None and changes is not None and changes.method == "gmp":
        changes.sparsity = float(sparsity)
    return cell


def _apply(cell: ml_collections.ConfigDict, settings: dict, origin: str) -> None:
    """Sets each dotted key of `settings` in `cell`; a key the config lacks names `origin`."""
    for key, value in settings.items():
        *parents, leaf = key.split(".")
        block = cell
        for parent in parents:
            block = block.get(parent) if isinstance(block, ml_collections.ConfigDict) else None
        if not isinstance(block, ml_collections.ConfigDict) or leaf not in block:
            raise ConfigError(f"{origin}.{key}={value!r}: the config has no key {key}")
        block[leaf] = value


def method_settings_flat(settings) -> dict:
    """A partial config of one method's settings as {"prune.scoring_loss": value, ...}.

    Args:
      settings: a (nested) mapping of config keys, e.g. {"prune": {"steps": None}}.

    Returns:
      The dotted keys and their values.
    """
    flat = {}
    for key, value in dict(settings).items():
        if isinstance(value, dict | ml_collections.ConfigDict):
            flat.update({f"{key}.{k}": v for k, v in method_settings_flat(value).items()})
        else:
            flat[key] = value
    return flat


def validate_grid(sweep: ml_collections.ConfigDict) -> None:
    """Rejects a grid that would count one run twice or cannot run.

    Args:
      sweep: config.sweep (methods, sparsities, seeds, optionally ablations).

    Raises:
      ConfigError: naming the key, for an empty axis, a repeated value (a
        repeated seed would make one run look like several), an unknown
        method or ablation, a sparsity outside [0, 1) or a seed that is not
        an integer.
    """
    axes = {"methods": tuple(sweep.methods), "sparsities": tuple(sweep.sparsities),
            "seeds": tuple(sweep.seeds), "ablations": ablations(sweep)}
    for name, values in axes.items():
        if not values:
            raise ConfigError(f"config.sweep.{name} is empty; give at least one value")
        repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
        if repeated:
            raise ConfigError(
                f"config.sweep.{name}={values} repeats {', '.join(map(repr, repeated))}; each "
                "value must appear once (a repeated seed would count one run as several)")
    arms = tuple(sweep.get("arms", {}))
    unknown = [m for m in axes["methods"] if m not in methods.METHODS and m not in arms]
    if unknown:
        raise ConfigError(f"config.sweep.methods has unknown {unknown}; expected some of "
                          f"{', '.join((*methods.names(), *arms))}")
    for arm in arms:
        if arm in methods.METHODS:
            raise ConfigError(f"config.sweep.arms.{arm}: an arm may not take a method's name; "
                              f"rename it (say {arm}_arm)")
        method = base_method(sweep, arm)
        if method not in methods.METHODS:
            raise ConfigError(f"config.sweep.arms.{arm}.prune.method={method!r}: expected the "
                              f"method that finds the arm's mask, one of "
                              f"{', '.join(methods.names())}")
    unknown = [a for a in axes["ablations"] if a not in VARIANTS]
    if unknown:
        raise ConfigError(f"config.sweep.ablations has unknown {unknown}; expected some of "
                          f"{', '.join(VARIANTS)}")
    for sparsity in axes["sparsities"]:
        try:
            schedules.check_sparsity(sparsity)
        except (TypeError, ValueError):
            raise ConfigError(f"config.sweep.sparsities holds {sparsity!r}; each must be a "
                              "fraction removed in [0, 1)") from None
    bad_seeds = [s for s in axes["seeds"] if not isinstance(s, int) or isinstance(s, bool)]
    if bad_seeds:
        raise ConfigError(f"config.sweep.seeds holds {bad_seeds}; seeds must be integers")


def check_shared_options(config: ml_collections.ConfigDict) -> None:
    """Refuses a method's option set for the whole grid when other methods run in it too.

    Such a setting (config.prune.prospr.inner_lr for a sweep of prospr and
    force, say) would be refused by every cell of the other methods; it
    belongs to the method's own cells, in sweep.method_settings.

    Args:
      config: the sweep config.

    Raises:
      ConfigError: naming the key and the method_settings that would do it.
    """
    swept = tuple(config.sweep.methods)
    for name, build in methods.WITH_OPTIONS.items():
        block = config.prune.get(name)
        if block is None or set(swept) <= {name}:
            continue
        defaults = build().score
        for key, value in block.items():
            if getattr(defaults, key, value) != value:
                others = ", ".join(m for m in swept if m != name)
                setting = json.dumps({name: {"prune": {name: {key: value}}}})
                raise ConfigError(
                    f"config.prune.{name}.{key}={value!r} would apply to every cell, but this "
                    f"sweep also runs {others}: give it to {name}'s cells alone, "
                    f"--config.sweep.method_settings='{setting}'")


def check_cells(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Refuses a sweep whose existing cells were made by other settings.

    Every cell folder that already exists must record the config the sweep
    would now give it, so that a rerun never reports old results as new ones
    or mixes two configs in one table. Nothing is run or written.

    Args:
      config: the sweep config.
      workdir: the sweep folder.

    Raises:
      WorkdirError: listing the first differing cells and keys.
    """
    problems = []
    for cell in grid(config.sweep):
        cell_dir = os.path.join(workdir, "cells", cell_name(*cell))
        if not files.isdir(cell_dir):
            continue
        try:
            workdir_lib.check_config(cell_dir, cell_config(config, *cell))
        except WorkdirError as e:
            problems.append(str(e))
    if problems:
        more = f"\n({len(problems) - 1} more cells differ)" if len(problems) > 1 else ""
        raise WorkdirError(
            f"{workdir} holds cells of another sweep config; nothing was run.\n{problems[0]}"
            f"{more}")


def ablations(sweep: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The sweep's sanity checks: config.sweep.ablations, or ("none",) without it.

    Args:
      sweep: config.sweep.

    Returns:
      The ablation names, in the grid's order.
    """
    return tuple(sweep.get("ablations") or ("none",))


def grid(sweep: ml_collections.ConfigDict) -> list[tuple[str, float, int, str]]:
    """The (method, sparsity, seed, ablation) cells, seed by seed.

    Args:
      sweep: config.sweep.

    Returns:
      Every cell, ordered so that an interrupted sweep covers the grid once
      before it repeats a seed.
    """
    return [(m, float(s), int(seed), a) for seed in sweep.seeds for s in sweep.sparsities
            for m in sweep.methods for a in ablations(sweep)]


def failed_under(cell: ml_collections.ConfigDict, cell_dir: str) -> bool:
    """Whether an unfinished cell's folder records a failure of this very cell config.

    A cell that failed before writing any result holds only its config.json
    and the sweep's record; `check_cells` does not compare such a folder
    (a rerun replaces it), so its config.json is compared here.

    Args:
      cell: the cell's config.
      cell_dir: its folder.

    Returns:
      True when the folder holds the sweep's record of a failure and a
      config.json equal to the cell's.
    """
    record = os.path.join(cell_dir, workdir_lib.CONFIG_FILE)
    if not (files.exists(os.path.join(cell_dir, CELL_RECORD))
            and files.exists(record)):
        return False
    recorded = json.loads(files.read_text(record))
    return not workdir_lib.differences(recorded, workdir_lib.config_record(cell))
