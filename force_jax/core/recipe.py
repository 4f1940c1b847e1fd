"""A pruning run decided once: its settings in, a `Recipe` out.

`from_settings` reads the settings of a pruning run (any mapping with the keys
of a config's `prune` block: method, sparsity, steps, schedule, ...). It
resolves the method with its options, composes the "invert" sanity check and
the per-layer floor onto it, parses the allocation and fills in what depends
on the method (its default steps, the micro-batches it fixes). The train,
prune, sweep and lottery commands all go through it, so a method is resolved,
and a sparsity checked, in one place:

    recipe = fj.recipe.from_settings({"method": "force", "sparsity": 0.99,
                                      "scope": "layerwise", "allocation": "erk"})
    mask, history = fj.prune(loss_fn, params, pool, key=key, **recipe.prune_arguments())

Errors name the setting (`prune.steps=5, but snip prunes in one shot`); a
command passes its own `Spelling` so that they name its config keys and flags.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from force_jax.core import allocation as allocation_lib
from force_jax.core import data_checks, guards, methods, sanity, schedules

Allocation = str | dict[str, float] | None


class Spelling(NamedTuple):
    """How errors spell a setting: its key, and the key as a fix sets it.

    Attributes:
      key: prefix of a setting's name in an error ("prune." gives "prune.steps").
      fix: prefix of the setting in the fix an error suggests ("--config.prune."
        for a command line).
    """

    key: str = "prune."
    fix: str = "prune."


LIBRARY = Spelling()


class Recipe(NamedTuple):
    """A pruning run, decided: the arguments of `prune` and the run's sanity check.

    Attributes:
      method: the `Method` record, with its options, inverted (ablation
        "invert") and floored (layer_floor > 0) as the settings ask.
      sparsity: fraction of prunable weights removed, checked.
      steps: pruning steps (the method's default where none was given).
      schedule: "exp" or "linear".
      batch_size: examples per micro-batch.
      batches_per_step: micro-batches per step (the method's own where it uses
        them one by one).
      scope: "global" or "layerwise".
      allocation: None for the global scope; a name or a layer -> density map.
      on_collapse: "warn", "raise" or "ignore".
      ablation: "none" or the run's sanity check (`sanity.ABLATIONS`).
      layer_floor: weights each layer keeps at every step (0: none).
    """

    method: methods.Method
    sparsity: float
    steps: int
    schedule: str = "exp"
    batch_size: int = 128
    batches_per_step: int = 1
    scope: str = "global"
    allocation: Allocation = None
    on_collapse: str = "warn"
    ablation: str = "none"
    layer_floor: int = 0

    def prune_arguments(self) -> dict[str, Any]:
        """The keyword arguments of `force_jax.prune` this recipe decides.

        Returns:
          method, sparsity, steps, schedule, batch_size, batches_per_step,
          scope, allocation and on_collapse.
        """
        fields = ("method", "sparsity", "steps", "schedule", "batch_size", "batches_per_step",
                  "scope", "allocation", "on_collapse")
        return {name: getattr(self, name) for name in fields}

    @property
    def data_check(self) -> str | None:
        """The corruption of the scoring data (`data_checks.DATA_CHECKS`), or None."""
        return self.ablation if self.ablation in data_checks.DATA_CHECKS else None

    @property
    def mask_shuffle(self) -> dict[str, bool] | None:
        """The options of `sanity.shuffle_within_layers` the ablation asks for, or None."""
        return sanity.MASK_SHUFFLES.get(self.ablation)


def from_settings(settings: Mapping[str, Any], *, layer_sizes: Sequence[int] | None = None,
                  model_name: str = "", spelling: Spelling = LIBRARY) -> Recipe:
    """The recipe a pruning run's settings describe.

    Args:
      settings: a mapping with the keys of a config's `prune` block: method,
        sparsity, and optionally steps (None: the method's default),
        schedule, batch_size, batches_per_step, scope, allocation ("" or None:
        none; a name; a map; or "layer:density,..."), on_collapse, ablation,
        layer_floor, and one block of options per method that takes them
        (settings["prospr"]["inner_lr"]).
      layer_sizes: the weights of each prunable layer of the model; given, the
        sparsity must keep a weight and the floors must fit in what it keeps.
      model_name: the model's name, for those errors.
      spelling: how errors name the settings.

    Returns:
      The `Recipe`.

    Raises:
      ValueError: naming the setting, for a sparsity out of [0, 1) or one
        that keeps no weight, an unknown method or option, an option block
        of another method set, steps for a one-shot method, a data check for
        a data-free method, micro-batches the method fixes, an allocation
        that is unknown or given with the global scope, or floors that do
        not fit.
    """
    get = settings.get
    sparsity = check_sparsity(get("sparsity"), spelling)
    record = methods.get(get("method"), **method_options(settings, spelling))
    name, steps, ablation = record.name, get("steps"), get("ablation", "none")
    if not record.progressive and steps not in (None, 1):
        raise ValueError(f"{spelling.key}steps={steps!r}, but {name} prunes in one shot: set "
                         f"{spelling.fix}steps=1")
    if ablation in data_checks.DATA_CHECKS and not record.needs_data:
        raise ValueError(f"{spelling.key}ablation={ablation!r} corrupts the scoring data, but "
                         f"{name} reads none: use it with a method that scores with data")
    batches = get("batches_per_step", 1)
    if record.batches_per_step and batches not in (1, record.batches_per_step):
        raise ValueError(
            f"{spelling.key}batches_per_step={batches}, but {name} uses "
            f"{record.batches_per_step} micro-batches per step, one by one (its options fix "
            "them): leave it at 1")
    floor = get("layer_floor", 0) or 0
    method = sanity.inverted(record) if ablation == "invert" else record
    recipe = Recipe(
        method=guards.layer_floor(method, floor), sparsity=sparsity,
        steps=record.default_steps if steps is None else steps,
        schedule=get("schedule", "exp"), batch_size=get("batch_size", 128),
        batches_per_step=record.batches_per_step or batches,
        scope=get("scope", "global"), allocation=allocation_of(settings, spelling),
        on_collapse=get("on_collapse", "warn"), ablation=ablation, layer_floor=floor)
    if layer_sizes is not None:
        check_fits(recipe, layer_sizes, model_name, spelling)
    return recipe


def check_sparsity(sparsity: Any, spelling: Spelling = LIBRARY) -> float:
    """A sparsity setting, checked by `schedules.check_sparsity` (the one check of its range).

    Args:
      sparsity: the setting's value.
      spelling: how the error names the setting.

    Returns:
      The sparsity as a float.

    Raises:
      ValueError: naming the setting, for anything but a number in [0, 1).
    """
    try:
        return schedules.check_sparsity(sparsity)
    except (TypeError, ValueError):
        raise ValueError(f"{spelling.key}sparsity={sparsity!r}: expected a fraction removed "
                         "in [0, 1)") from None


def final_keep_count(sparsity: float, num_prunable: int) -> int:
    """Weights a sparsity keeps of `num_prunable`, by the pruning schedule's own count.

    Args:
      sparsity: fraction removed, in [0, 1).
      num_prunable: N, the prunable weights of the model.

    Returns:
      The final keep count of `schedules.keep_counts` (0 where it keeps none).
    """
    try:
        return int(schedules.keep_counts(np.array([1.0 - sparsity]), num_prunable)[-1])
    except ValueError:  # keep_counts refuses a count below 1
        return 0


def largest_sparsity(num_prunable: int) -> float:
    """The largest sparsity that keeps one of N weights, as a short decimal.

    Args:
      num_prunable: N, at least 1.

    Returns:
      1 - 1/N cut down to the fewest decimals that are within a tenth of a
      weight of it (0.9999976 for N = 430,500) and still keep one weight by
      the schedule's own count (`final_keep_count`).
    """
    bound = 1.0 - 1.0 / num_prunable
    for digits in range(1, 18):
        candidate = math.floor(bound * 10**digits) / 10**digits
        close = (bound - candidate) * num_prunable < 0.1
        if close and final_keep_count(candidate, num_prunable) == 1:
            return candidate
    return bound


def check_fits(recipe: Recipe, layer_sizes: Sequence[int], model_name: str = "",
               spelling: Spelling = LIBRARY) -> None:
    """Rejects a sparsity that keeps no weight, and floors that do not fit in what it keeps.

    Args:
      recipe: the run's recipe.
      layer_sizes: the number of weights of each prunable layer of the model.
      model_name: the model's name, for the error.
      spelling: how the error names the settings.

    Raises:
      ValueError: naming the sparsity with the largest one that keeps a
        weight, or the floor with the largest that fits.
    """
    num_prunable = int(sum(layer_sizes))
    kept = final_keep_count(recipe.sparsity, num_prunable)
    if kept < 1:
        raise ValueError(
            f"{spelling.key}sparsity={recipe.sparsity!r} keeps no weight: floor((1 - "
            f"{recipe.sparsity!r}) * {num_prunable}) = 0 of the {num_prunable:,} prunable "
            f"weights{' of ' + model_name if model_name else ''}; use at most "
            f"{largest_sparsity(num_prunable)!r}, which keeps 1")
    floors = sum(min(recipe.layer_floor, int(size)) for size in layer_sizes)
    if floors > kept:
        raise ValueError(
            f"{spelling.key}layer_floor={recipe.layer_floor} asks {floors:,} weights over "
            f"{len(layer_sizes)} prunable layers, but {spelling.key}sparsity="
            f"{recipe.sparsity!r} keeps {kept:,}: use at most "
            f"{spelling.fix}layer_floor={kept // len(layer_sizes)}")


def method_options(settings: Mapping[str, Any], spelling: Spelling = LIBRARY) -> dict[str, Any]:
    """The options of the method the settings name (settings[method]), checked.

    Each method with options (`methods.WITH_OPTIONS`) has its own block, e.g.
    settings["prospr"]["inner_lr"]. A block of another method must stay at its
    defaults: a setting there would silently do nothing.

    Args:
      settings: the pruning settings.
      spelling: how errors name the settings.

    Returns:
      The options of the method as a dict (empty for a method without any).

    Raises:
      ValueError: naming the setting, for an option set on a method that does
        not take it, or one out of range.
    """
    method = settings.get("method")
    for name, build in methods.WITH_OPTIONS.items():
        block = settings.get(name)
        if block is None or name == method:
            continue
        defaults = build().score
        for key, value in block.items():
            if getattr(defaults, key, value) != value:
                raise ValueError(
                    f"{spelling.key}{name}.{key}={value!r} is an option of {name}, but the "
                    f"method is {method}: leave it at {getattr(defaults, key)!r} or set "
                    f"{spelling.fix}method={name}")
    if method not in methods.WITH_OPTIONS or settings.get(method) is None:
        return {}
    options = dict(settings.get(method).items())
    try:
        methods.get(method, **options)
    except ValueError as error:
        option = str(error).split("=")[0].split()[0]
        key = f"{spelling.key}{method}.{option}" if option in options else (
            f"{spelling.key}{method}")
        raise ValueError(f"{key}: {error}") from None
    return options


def allocation_of(settings: Mapping[str, Any], spelling: Spelling = LIBRARY) -> Allocation:
    """The allocation that the scope and allocation settings ask for.

    The allocation is "" or None (none given), a name (uniform, erk, er), a
    map from `masks.path_name` layer names to densities, or such a map written
    "layer:density,layer:density" ("conv_0/kernel:0.5,..."). Whether a map
    names exactly the model's prunable layers is checked with the model
    (`force_jax.core.program.schedule_counts`).

    Args:
      settings: the pruning settings (scope, allocation).
      spelling: how errors name the settings.

    Returns:
      None for the global scope; for the layer-wise scope the allocation (a
      name, "uniform" where none is given, or a dict).

    Raises:
      ValueError: naming the setting, for an unknown scope or allocation, a
        map entry that is not layer:density with a density in (0, 1], or an
        allocation given with the global scope.
    """
    scope, given = settings.get("scope", "global"), settings.get("allocation") or ""
    if scope not in allocation_lib.SCOPES:
        raise ValueError(f"{spelling.key}scope={scope!r}: expected one of "
                         f"{', '.join(allocation_lib.SCOPES)}")
    if scope == "global":
        if given:
            raise ValueError(f"{spelling.key}allocation={given!r} needs {spelling.fix}scope="
                             "layerwise (the global scope, the paper's, ranks all weights "
                             "together)")
        return None
    if isinstance(given, Mapping):
        return dict(given)
    if not isinstance(given, str):
        raise ValueError(f"{spelling.key}allocation={given!r}: expected one of "
                         f"{', '.join(allocation_lib.ALLOCATIONS)} or 'layer:density,...'")
    if not given or given in allocation_lib.ALLOCATIONS:
        return given or "uniform"
    return _parse_densities(given, spelling)


def _parse_densities(text: str, spelling: Spelling) -> dict[str, float]:
    """The layer -> density map written "layer:density,layer:density"."""
    densities = {}
    for entry in text.split(","):
        name, _, value = entry.strip().rpartition(":")
        try:
            density = float(value)
        except ValueError:
            density = math.nan
        if not (name and 0.0 < density <= 1.0):
            raise ValueError(
                f"{spelling.key}allocation={text!r}: expected one of "
                f"{', '.join(allocation_lib.ALLOCATIONS)} or a map 'layer:density,...' with "
                f"densities in (0, 1]; {entry.strip()!r} is not")
        densities[name] = density
    return densities
