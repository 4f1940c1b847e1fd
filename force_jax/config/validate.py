"""Config validation: every bad value rejected, by key, before any data is read.

Each error is a `ConfigError` naming the config key, the value and what it
accepts, so the command line prints it as one line. Every number is checked
against its domain: NaN and infinity are refused wherever a finite number is
meant, and a bool (an int in Python) wherever a number is.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from force_jax.config import mask_changes
from force_jax.core import methods
from force_jax.core import recipe as recipe_lib
from force_jax.errors import ConfigError
from force_jax.runs import keys, store
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

    Every key is first checked on its own against the key table
    (`force_jax.runs.keys`); then the rules that relate keys: the pruning
    recipe (`recipe_of`), the pool against the batches, momentum against the
    optimizer, the warmup against the run, a cluster against `distributed`,
    the mask changes, the data folder.

    Args:
      config: experiment config.

    Raises:
      ConfigError: naming the offending key, its value and what it accepts.
    """
    for key in keys.KEYS:
        value = _get(config, key.name, _MISSING)
        if key.accepts is not None and value is not _MISSING and not key.accepts(value):
            raise ConfigError(f"config.{key.name}={value!r}: expected {key.expected_for(config)}")
    _validate_pool(config.prune, recipe_of(config.prune).batches_per_step)
    _validate_cluster(config)
    _validate_train(config.train)
    mask_changes.check(config)
    _validate_schedule(config.train)
    if config.data.get("data_dir"):  # TFDS reads it (a URL through TensorFlow's own clients)
        store.check_path(config.data.data_dir, "config.data.data_dir")


def _validate_pool(cfg: ml_collections.ConfigDict, batches: int) -> None:
    """config.prune.pool_size and config.prune.augment, which only a stream honours."""
    _check(keys.integer(cfg.pool_size) and (cfg.pool_size == 0 or cfg.pool_size >= cfg.batch_size
                                        * batches), "prune.pool_size",
           cfg.pool_size, "0 (fresh batches streamed from the training split) or an integer >= "
           f"prune.batch_size * micro-batches per step = {cfg.batch_size * batches} "
           "(each step draws that many distinct examples from the pool)")
    if cfg.get("augment", False) and cfg.pool_size:
        raise ConfigError("config.prune.augment=True augments streamed batches, but "
                          f"config.prune.pool_size={cfg.pool_size} asks for an in-memory pool, "
                          "which is never augmented: set --config.prune.pool_size=0")


def _validate_cluster(config: ml_collections.ConfigDict) -> None:
    """A coordinator address names a cluster, which needs config.distributed."""
    cluster = config.get("cluster")
    if cluster and cluster.get("coordinator_address") and not config.distributed:
        raise ConfigError(f"config.cluster.coordinator_address="
                          f"{cluster.coordinator_address!r} names a cluster, but "
                          "config.distributed is False: add --config.distributed=True")


def _validate_train(cfg: ml_collections.ConfigDict) -> None:
    """config.train: momentum and Nesterov against the optimizer."""
    optimizer = cfg.get("optimizer", "sgd")
    _check(keys.finite(cfg.momentum) and cfg.momentum >= 0
           and not (cfg.nesterov and cfg.momentum == 0),
           "train.momentum", cfg.momentum, ">= 0, and > 0 with train.nesterov=True (a finite "
           "number)")
    if optimizer != "sgd":
        _check(cfg.momentum < 1, "train.momentum", cfg.momentum,
               f"< 1 with train.optimizer={optimizer} (it is Adam's b1 there)")
    _check(not (cfg.nesterov and optimizer == "lamb"),
           "train.nesterov", cfg.nesterov, "False with train.optimizer=lamb, which has "
           "no Nesterov momentum")


def _validate_schedule(cfg: ml_collections.ConfigDict) -> None:
    """config.train.lr_schedule: the warmup, against the schedule and the run's length.

    A learning rate is refused only where it cannot mean anything (NaN, inf,
    <= 0: the key table): how large a rate still trains depends on the model,
    and a run that diverges is stopped by the training loop.
    """
    schedule = cfg.lr_schedule
    warmup = schedule.get("warmup_epochs", 0)
    _check(keys.finite(warmup) and warmup >= 0 and not (schedule.name == "step" and warmup),
           "train.lr_schedule.warmup_epochs", warmup, ">= 0, and 0 with the step schedule")
    _check(warmup < cfg.num_epochs, "train.lr_schedule.warmup_epochs", warmup,
           f"fewer epochs than train.num_epochs={cfg.num_epochs!r} (the warmup is part of "
           "the run)")


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
    _check(steps is None or (keys.integer(steps) and steps >= 1), "sweep.synflow_steps", steps,
           "an integer >= 1 (None: SynFlow's default of 100)")
    temperature = sweep.get("grasp_temperature")
    _check(temperature is None or (keys.finite(temperature) and temperature > 0),
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
