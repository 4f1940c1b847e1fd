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

from force_jax import models as models_lib
from force_jax import optim
from force_jax.config import mask_changes
from force_jax.core import losses, methods, sanity, schedules
from force_jax.core import recipe as recipe_lib
from force_jax.errors import ConfigError
from force_jax.runs import files
from force_jax.training import data

# Errors of the pruning recipe name the config key and the flag that fixes it.
CONFIG_SPELLING = recipe_lib.Spelling("config.prune.", "--config.prune.")


def recipe_of(cfg: ml_collections.ConfigDict, *, layer_sizes: list[int] | None = None,
              model_name: str = "") -> recipe_lib.Recipe:
    """The pruning recipe config.prune describes (`force_jax.core.recipe.from_settings`).

    Args:
      cfg: config.prune.
      layer_sizes: the weights of each prunable layer of the model; given, the
        sparsity must keep a weight and the layer floors must fit.
      model_name: config.model.name, for those errors.

    Returns:
      The `Recipe`: the method with its options and transforms, the steps,
      the allocation.

    Raises:
      ConfigError: naming the config key and the flag that fixes it.
    """
    return _as_config_error(recipe_lib.from_settings, cfg, layer_sizes=layer_sizes,
                            model_name=model_name, spelling=CONFIG_SPELLING)


def _as_config_error(fn, *args, **kwargs):
    """fn(*args, **kwargs), its ValueError (which names the config key) a ConfigError."""
    try:
        return fn(*args, **kwargs)
    except ValueError as error:
        raise ConfigError(str(error)) from None


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
    _as_config_error(recipe_lib.check_sparsity, cfg.sparsity, CONFIG_SPELLING)
    _check(cfg.steps is None or (_is_int(cfg.steps) and cfg.steps >= 1), "prune.steps",
           cfg.steps, "an integer >= 1 (in a config file, None means the method's default: "
           f"{method.default_steps} for {cfg.method})")
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
    for key in ("batch_size", "batches_per_step"):
        _check(_is_int(cfg[key]) and cfg[key] >= 1, f"prune.{key}", cfg[key], "an integer >= 1")
    _check(_is_int(cfg.get("layer_floor", 0)) and cfg.get("layer_floor", 0) >= 0,
           "prune.layer_floor", cfg.get("layer_floor"),
           "an integer >= 0 (weights every prunable layer keeps at each step; 0: no floor)")
    _validate_pool(cfg, recipe_of(cfg).batches_per_step)


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
