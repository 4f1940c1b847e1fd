"""Config validation: every bad value rejected, by key, before any data is read.

Each error is a `ConfigError` naming the config key, the value and what it
accepts, so the command line prints it as one line. Every number is checked
against its domain: NaN and infinity are refused wherever a finite number is
meant, and a bool (an int in Python) wherever a number is.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import ml_collections
import numpy as np

from force_jax import models as models_lib
from force_jax import optim
from force_jax.config import mask_changes
from force_jax.core import allocation as allocation_lib
from force_jax.core import data_checks, losses, methods, sanity, schedules
from force_jax.errors import ConfigError
from force_jax.runs import files
from force_jax.training import data


def _check(condition: bool, key: str, value: Any, expected: str) -> None:
    if not condition:
        raise ConfigError(f"config.{key}={value!r}: expected {expected}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    """A real number (not a bool) that is neither NaN nor infinite."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def _check_bool(config: ml_collections.ConfigDict, key: str, *, optional: bool = False) -> None:
    """Rejects a flag that is not True or False (or None, where None means a default).

    A config without the key (an older one) is left to the code's default.
    """
    value = _get(config, key, _MISSING)
    ok = value is _MISSING or isinstance(value, bool) or (optional and value is None)
    _check(ok, key, value, "True or False" + (" (or None: the default)" if optional else ""))


_MISSING = object()


def _get(config: ml_collections.ConfigDict, key: str, default: Any = None) -> Any:
    """The value of a dotted key, or `default` where a level or the key is missing."""
    node = config
    for part in key.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            return default
        node = node[part]
    return node


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Rejects bad values before any data is read or model built.

    Args:
      config: experiment config.

    Raises:
      ConfigError: naming the offending key, its value and what it accepts.
    """
    _validate_prune(config.prune)
    _validate_model(config)
    _validate_cluster(config)
    _check(_is_int(config.seed), "seed", config.seed, "an integer")
    _validate_train(config.train)
    mask_changes.check(config)
    _validate_schedule(config.train)
    _validate_data(config)
    _validate_evaluation(config)
    _validate_mesh(config)


def _validate_prune(cfg: ml_collections.ConfigDict) -> None:
    """config.prune: method, sparsity, steps, schedule, loss, temperature, batches, pool."""
    _check(cfg.method in methods.METHODS, "prune.method", cfg.method,
           f"one of {', '.join(methods.names())}")
    method = methods.get(cfg.method)
    _check(_is_finite(cfg.sparsity) and 0 <= cfg.sparsity < 1, "prune.sparsity",
           cfg.sparsity, "a fraction removed in [0, 1)")
    _check(cfg.steps is None or (_is_int(cfg.steps) and cfg.steps >= 1), "prune.steps",
           cfg.steps, "an integer >= 1 (in a config file, None means the method's default: "
           f"{method.default_steps} for {cfg.method})")
    if not method.progressive and cfg.steps not in (None, 1):
        raise ConfigError(f"config.prune.steps={cfg.steps!r}, but {cfg.method} prunes in one "
                          "shot: set --config.prune.steps=1")
    _check(cfg.schedule in schedules.SCHEDULES, "prune.schedule", cfg.schedule,
           f"one of {', '.join(schedules.SCHEDULES)}")
    _check(cfg.scoring_loss in losses.SCORING_LOSSES, "prune.scoring_loss", cfg.scoring_loss,
           f"one of {', '.join(losses.SCORING_LOSSES)}")
    # The logits are divided by it: 0 gives inf/NaN scores, a negative one inverts the softmax.
    _check(_is_finite(cfg.temperature) and cfg.temperature > 0, "prune.temperature",
           cfg.temperature, "a finite number > 0 (the logits are divided by it; 1 leaves "
           "them as they are)")
    _check(cfg.on_collapse in ("warn", "raise", "ignore"), "prune.on_collapse", cfg.on_collapse,
           "warn, raise or ignore")
    _check(cfg.get("ablation", "none") in sanity.ABLATIONS, "prune.ablation",
           cfg.get("ablation"), f"one of {', '.join(sanity.ABLATIONS)}")
    if cfg.get("ablation", "none") in data_checks.DATA_CHECKS and not method.needs_data:
        raise ConfigError(f"config.prune.ablation={cfg.ablation!r} corrupts the scoring data, "
                          f"but {cfg.method} reads none: use it with a method that scores "
                          "with data")
    for key in ("batch_size", "batches_per_step"):
        _check(_is_int(cfg[key]) and cfg[key] >= 1, f"prune.{key}", cfg[key], "an integer >= 1")
    record = methods.get(cfg.method, **method_options(cfg))
    if record.batches_per_step and cfg.batches_per_step not in (1, record.batches_per_step):
        raise ConfigError(
            f"config.prune.batches_per_step={cfg.batches_per_step}, but {cfg.method} uses "
            f"{record.batches_per_step} micro-batches per step, one by one (its options fix "
            "them): leave it at 1")
    allocation_setting(cfg)
    _check(_is_int(cfg.get("layer_floor", 0)) and cfg.get("layer_floor", 0) >= 0,
           "prune.layer_floor", cfg.get("layer_floor"),
           "an integer >= 0 (weights every prunable layer keeps at each step; 0: no floor)")
    _validate_pool(cfg, record.batches_per_step or cfg.batches_per_step)


def method_options(cfg: ml_collections.ConfigDict) -> dict[str, Any]:
    """The options of the configured method (config.prune.<method>), checked.

    Each method with options (`methods.WITH_OPTIONS`) has its own block,
    e.g. config.prune.prospr.inner_lr. A block of another method must stay
    at its defaults: a setting there would silently do nothing.

    Args:
      cfg: config.prune.

    Returns:
      The options of cfg.method as a dict (empty for a method without any).

    Raises:
      ConfigError: naming the key, for an option set on a method that does
        not take it, or one out of range.
    """
    for name, build in methods.WITH_OPTIONS.items():
        block = cfg.get(name)
        if block is None or name == cfg.method:
            continue
        defaults = build().score
        for key, value in block.items():
            if getattr(defaults, key, value) != value:
                raise ConfigError(
                    f"config.prune.{name}.{key}={value!r} is an option of {name}, but the "
                    f"method is {cfg.method}: leave it at {getattr(defaults, key)!r} or set "
                    f"--config.prune.method={name}")
    if cfg.method not in methods.WITH_OPTIONS or cfg.get(cfg.method) is None:
        return {}
    options = dict(cfg.get(cfg.method).items())
    try:
        methods.get(cfg.method, **options)
    except ValueError as error:
        option = str(error).split("=")[0].split()[0]
        key = f"config.prune.{cfg.method}.{option}" if option in options else (
            f"config.prune.{cfg.method}")
        raise ConfigError(f"{key}: {error}") from None
    return options


def allocation_setting(cfg: ml_collections.ConfigDict) -> str | dict[str, float] | None:
    """The allocation that config.prune.scope and config.prune.allocation ask for.

    config.prune.allocation is "" (none given), a name (uniform, erk, er) or a
    map written "layer:density,layer:density" with `masks.path_name` layer
    names ("conv_0/kernel:0.5,..."). Whether a map names exactly the model's
    prunable layers is checked with the model (`setup.check_allocation`).

    Args:
      cfg: config.prune.

    Returns:
      None for the global scope; for the layer-wise scope the allocation
      (a name, "uniform" where none is given, or a dict).

    Raises:
      ConfigError: naming the key, for an unknown scope or allocation, a map
        entry that is not layer:density with a density in (0, 1], or an
        allocation given with the global scope.
    """
    scope, text = cfg.get("scope", "global"), cfg.get("allocation", "")
    _check(scope in allocation_lib.SCOPES, "prune.scope", scope,
           f"one of {', '.join(allocation_lib.SCOPES)}")
    _check(isinstance(text, str), "prune.allocation", text,
           f"one of {', '.join(allocation_lib.ALLOCATIONS)} or 'layer:density,...'")
    if scope == "global":
        if text:
            raise ConfigError(f"config.prune.allocation={text!r} needs "
                              "--config.prune.scope=layerwise (the global scope, the paper's, "
                              "ranks all weights together)")
        return None
    if not text or text in allocation_lib.ALLOCATIONS:
        return text or "uniform"
    densities = {}
    for entry in text.split(","):
        name, _, value = entry.strip().rpartition(":")
        try:
            density = float(value)
        except ValueError:
            density = math.nan
        _check(bool(name) and 0.0 < density <= 1.0, "prune.allocation", text,
               f"one of {', '.join(allocation_lib.ALLOCATIONS)} or a map 'layer:density,...' "
               f"with densities in (0, 1]; {entry.strip()!r} is not")
        densities[name] = density
    return densities


def _validate_pool(cfg: ml_collections.ConfigDict, batches: int) -> None:
    """config.prune.pool_size and config.prune.augment, which only a stream honours."""
    _check(_is_int(cfg.pool_size) and (cfg.pool_size == 0 or cfg.pool_size >= cfg.batch_size
                                        * batches), "prune.pool_size",
           cfg.pool_size, "0 (fresh batches streamed from the training split) or an integer >= "
           f"prune.batch_size * micro-batches per step = {cfg.batch_size * batches} "
           "(each step draws that many distinct examples from the pool)")
    _check(isinstance(cfg.get("augment", False), bool), "prune.augment", cfg.get("augment"),
           "True or False")
    if cfg.get("augment", False) and cfg.pool_size:
        raise ConfigError("config.prune.augment=True augments streamed batches, but "
                          f"config.prune.pool_size={cfg.pool_size} asks for an in-memory pool, "
                          "which is never augmented: set --config.prune.pool_size=0")


def _validate_model(config: ml_collections.ConfigDict) -> None:
    """config.model: a known model and kernels, and a width multiplier > 0 where given."""
    _check(config.model.name in models_lib.model_names(), "model.name", config.model.name,
           f"one of {', '.join(models_lib.model_names())}")
    _check(config.model.get("kernels", "auto") in models_lib.kernels.KERNELS, "model.kernels",
           config.model.get("kernels"), f"one of {', '.join(models_lib.kernels.KERNELS)}")
    if "width_multiplier" in config.model:
        width = config.model.width_multiplier
        _check(_is_finite(width) and width > 0, "model.width_multiplier", width,
               "a finite number > 0 (1 is the published width)")


def _validate_cluster(config: ml_collections.ConfigDict) -> None:
    """config.distributed and config.cluster: integers in range, a timeout > 0."""
    _check_bool(config, "distributed")
    cluster = config.get("cluster")
    if not cluster:
        return
    if cluster.get("coordinator_address") and not config.distributed:
        raise ConfigError(f"config.cluster.coordinator_address="
                          f"{cluster.coordinator_address!r} names a cluster, but "
                          "config.distributed is False: add --config.distributed=True")
    bounds = {"num_processes": (0, "an integer >= 1 (0: unset)"),
              "process_id": (-1, "an integer >= 0 (-1: unset)")}
    for key, (lowest, expected) in bounds.items():
        value = cluster.get(key, lowest)
        _check(_is_int(value) and value >= lowest, f"cluster.{key}", value, expected)
    timeout = cluster.get("initialization_timeout", 300)
    _check(_is_int(timeout) and timeout > 0, "cluster.initialization_timeout", timeout,
           "an integer number of seconds > 0")


def _validate_train(cfg: ml_collections.ConfigDict) -> None:
    """config.train: batch size, run length and the optimizer's hyperparameters."""
    _check(_is_int(cfg.batch_size) and cfg.batch_size >= 1, "train.batch_size",
           cfg.batch_size, "an integer >= 1")
    _check(_is_finite(cfg.num_epochs) and cfg.num_epochs > 0, "train.num_epochs",
           cfg.num_epochs, "> 0 (a finite number of epochs)")
    _check(cfg.num_steps is None or (_is_int(cfg.num_steps) and cfg.num_steps >= 1),
           "train.num_steps", cfg.num_steps, "an integer >= 1 (in a config file, None "
           "trains train.num_epochs epochs)")
    optimizer = cfg.get("optimizer", "sgd")
    _check(optimizer in optim.OPTIMIZERS, "train.optimizer", cfg.get("optimizer"),
           f"one of {', '.join(optim.OPTIMIZERS)}")
    _check(isinstance(cfg.nesterov, bool), "train.nesterov", cfg.nesterov, "True or False")
    _check(_is_finite(cfg.momentum) and cfg.momentum >= 0
           and not (cfg.nesterov and cfg.momentum == 0),
           "train.momentum", cfg.momentum, ">= 0, and > 0 with train.nesterov=True (a finite "
           "number)")
    if optimizer != "sgd":
        _check(cfg.momentum < 1, "train.momentum", cfg.momentum,
               f"< 1 with train.optimizer={optimizer} (it is Adam's b1 there)")
    _check(not (cfg.nesterov and optimizer == "lamb"),
           "train.nesterov", cfg.nesterov, "False with train.optimizer=lamb, which has "
           "no Nesterov momentum")
    _check(_is_finite(cfg.weight_decay) and cfg.weight_decay >= 0, "train.weight_decay",
           cfg.weight_decay, ">= 0 (a finite number)")


def _validate_schedule(cfg: ml_collections.ConfigDict) -> None:
    """config.train.lr_schedule: name, base rate, warmup, step boundaries and factor.

    A learning rate is refused only where it cannot mean anything (NaN, inf,
    <= 0): how large a rate still trains depends on the model, and a run that
    diverges is stopped by the training loop.
    """
    schedule = cfg.lr_schedule
    _check(schedule.name in ("cosine", "step"), "train.lr_schedule.name", schedule.name,
           "cosine or step")
    _check(_is_finite(schedule.base_lr) and schedule.base_lr > 0, "train.lr_schedule.base_lr",
           schedule.base_lr, "a finite number > 0")
    warmup = schedule.get("warmup_epochs", 0)
    _check(_is_finite(warmup) and warmup >= 0 and not (schedule.name == "step" and warmup),
           "train.lr_schedule.warmup_epochs", warmup, ">= 0, and 0 with the step schedule")
    _check(warmup < cfg.num_epochs, "train.lr_schedule.warmup_epochs", warmup,
           f"fewer epochs than train.num_epochs={cfg.num_epochs!r} (the warmup is part of "
           "the run)")
    boundaries = schedule.get("boundaries", ())
    _check(isinstance(boundaries, tuple | list) and all(_is_finite(b) and b >= 0
                                                         for b in boundaries)
           and list(boundaries) == sorted(set(boundaries)),
           "train.lr_schedule.boundaries", boundaries,
           "a tuple of epochs >= 0 (finite numbers) in increasing order, e.g. (150, 250)")
    factor = schedule.get("factor", 0.1)
    _check(_is_finite(factor) and factor > 0, "train.lr_schedule.factor", factor,
           "a finite number > 0 (the rate is multiplied by it at each boundary)")


def _validate_data(config: ml_collections.ConfigDict) -> None:
    """config.data: the validation hold-out and the two flags."""
    fraction = config.data.validation_fraction
    _check(_is_finite(fraction) and 0 <= fraction < 1, "data.validation_fraction", fraction,
           "a fraction in [0, 1)")
    _check_bool(config, "data.augment", optional=True)
    _check_bool(config, "data.download")
    if config.data.get("data_dir"):  # TFDS reads it (a URL through TensorFlow's own clients)
        files.check_path(config.data.data_dir, "config.data.data_dir")


def _validate_evaluation(config: ml_collections.ConfigDict) -> None:
    """eval_batch_size, eval_every_steps and eval_max_batches: integers."""
    _check(_is_int(config.eval_batch_size) and config.eval_batch_size >= 1, "eval_batch_size",
           config.eval_batch_size, "an integer >= 1")
    _check(_is_int(config.eval_every_steps), "eval_every_steps", config.eval_every_steps,
           "an integer (<= 0: once per epoch)")
    _check(_is_int(config.eval_max_batches), "eval_max_batches", config.eval_max_batches,
           "an integer (<= 0: the whole split)")


def _validate_mesh(config: ml_collections.ConfigDict) -> None:
    """config.mesh: a device count (-1: all) and the FSDP flag."""
    devices = _get(config, "mesh.num_devices", -1)
    _check(_is_int(devices) and (devices == -1 or devices >= 1), "mesh.num_devices", devices,
           "-1 (every device) or an integer >= 1")
    _check_bool(config, "mesh.fsdp")


def validate_sweep_settings(sweep: ml_collections.ConfigDict) -> None:
    """Rejects the per-method settings of a sweep grid that cannot be used.

    Args:
      sweep: config.sweep.

    Raises:
      ConfigError: for a SynFlow step count that is not an integer >= 1, a
        GraSP temperature that is not a finite number > 0 (None: not set), or
        method_settings for a name that is no method. (A setting's key that
        the config lacks is refused when the cell's config is made.)
    """
    steps = sweep.get("synflow_steps")
    _check(steps is None or (_is_int(steps) and steps >= 1), "sweep.synflow_steps", steps,
           "an integer >= 1 (None: SynFlow's default of 100)")
    temperature = sweep.get("grasp_temperature")
    _check(temperature is None or (_is_finite(temperature) and temperature > 0),
           "sweep.grasp_temperature", temperature,
           "a finite number > 0 (None: config.prune.temperature)")
    for method in sweep.get("method_settings", {}):
        _check(method in methods.METHODS, "sweep.method_settings", method,
               f"keys that are methods: {', '.join(methods.names())}")


def check_data_sizes(config: ml_collections.ConfigDict, info: data.DatasetInfo) -> None:
    """Rejects batches and pools larger than the data they are drawn from.

    Args:
      config: experiment config.
      info: the dataset's description (sizes after the validation hold-out).

    Raises:
      ConfigError: naming the key and the split's size.
    """
    if config.prune.pool_size > info.num_train:
        raise ConfigError(
            f"config.prune.pool_size={config.prune.pool_size} is larger than the training split "
            f"({info.num_train:,} examples of {info.name} after the validation hold-out); use at "
            f"most {info.num_train}")
    if config.train.batch_size > info.num_train:
        raise ConfigError(
            f"config.train.batch_size={config.train.batch_size} is larger than the training "
            f"split ({info.num_train:,} examples of {info.name} after the validation hold-out); "
            f"use at most {info.num_train}")


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


def check_layer_floor(config: ml_collections.ConfigDict, layer_sizes: list[int]) -> None:
    """Rejects a per-layer floor the final keep count cannot honour.

    Args:
      config: a validated experiment config (uses config.prune.layer_floor and
        config.prune.sparsity).
      layer_sizes: the number of weights of each prunable layer.

    Raises:
      ConfigError: naming config.prune.layer_floor when the floors (each capped
        at its layer's size) add up to more weights than the sparsity keeps.
    """
    floor = config.prune.get("layer_floor", 0)
    floors = sum(min(floor, size) for size in layer_sizes)
    kept = final_keep_count(config.prune.sparsity, sum(layer_sizes))
    if floors > kept:
        raise ConfigError(
            f"config.prune.layer_floor={floor} asks {floors:,} weights over "
            f"{len(layer_sizes)} prunable layers, but config.prune.sparsity="
            f"{config.prune.sparsity!r} keeps {kept:,}: use at most "
            f"--config.prune.layer_floor={kept // len(layer_sizes)}")


def check_keeps_a_weight(config: ml_collections.ConfigDict, num_prunable: int) -> None:
    """Rejects a sparsity that would keep no weight of the model, before any data is read.

    Args:
      config: a validated experiment config (uses config.prune.sparsity, config.model.name).
      num_prunable: N, the model's prunable weights (`setup.num_prunable_weights`).

    Raises:
      ConfigError: naming config.prune.sparsity, N and the largest sparsity
        that keeps one weight.
    """
    sparsity = config.prune.sparsity
    if final_keep_count(sparsity, num_prunable) >= 1:
        return
    raise ConfigError(
        f"config.prune.sparsity={sparsity!r} keeps no weight: floor((1 - {sparsity!r}) * "
        f"{num_prunable}) = 0 of the {num_prunable:,} prunable weights of {config.model.name}; "
        f"use at most {largest_sparsity(num_prunable)!r}, which keeps 1")
