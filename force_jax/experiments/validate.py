"""Config validation: every bad value rejected, by key, before any data is read.

Each error is a `ConfigError` naming the config key, the value and what it
accepts, so the command line prints it as one line.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from force_jax import models as models_lib
from force_jax.core import losses, methods, sanity, schedules
from force_jax.errors import ConfigError
from force_jax.training import data, optim


def _check(condition: bool, key: str, value: Any, expected: str) -> None:
    if not condition:
        raise ConfigError(f"config.{key}={value!r}: expected {expected}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Rejects bad values before any data is read or model built.

    Args:
      config: experiment config.

    Raises:
      ConfigError: naming the offending key and what it accepts.
    """
    cfg = config.prune
    _check(cfg.method in methods.METHODS, "prune.method", cfg.method,
           f"one of {', '.join(methods.names())}")
    method = methods.get(cfg.method)
    _check(isinstance(cfg.sparsity, int | float) and 0 <= cfg.sparsity < 1, "prune.sparsity",
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
    _check(cfg.on_collapse in ("warn", "raise", "ignore"), "prune.on_collapse", cfg.on_collapse,
           "warn, raise or ignore")
    _check(cfg.get("ablation", "none") in sanity.ABLATIONS, "prune.ablation",
           cfg.get("ablation"), f"one of {', '.join(sanity.ABLATIONS)}")
    for key in ("batch_size", "batches_per_step"):
        _check(_is_int(cfg[key]) and cfg[key] >= 1, f"prune.{key}", cfg[key], "an integer >= 1")
    _check(_is_int(cfg.pool_size) and (cfg.pool_size == 0 or cfg.pool_size >= cfg.batch_size
                                        * cfg.batches_per_step), "prune.pool_size",
           cfg.pool_size, "0 (fresh batches streamed from the training split) or an integer >= "
           f"prune.batch_size * prune.batches_per_step = {cfg.batch_size * cfg.batches_per_step} "
           "(each step draws that many distinct examples from the pool)")
    _check(isinstance(cfg.get("augment", False), bool), "prune.augment", cfg.get("augment"),
           "True or False")
    if cfg.get("augment", False) and cfg.pool_size:
        raise ConfigError("config.prune.augment=True augments streamed batches, but "
                          f"config.prune.pool_size={cfg.pool_size} asks for an in-memory pool, "
                          "which is never augmented: set --config.prune.pool_size=0")
    _check(config.model.name in models_lib.model_names(), "model.name", config.model.name,
           f"one of {', '.join(models_lib.model_names())}")
    _check(config.model.get("kernels", "auto") in models_lib.kernels.KERNELS, "model.kernels",
           config.model.get("kernels"), f"one of {', '.join(models_lib.kernels.KERNELS)}")
    if config.get("cluster") and config.cluster.get("coordinator_address") and not (
            config.distributed):
        raise ConfigError(f"config.cluster.coordinator_address="
                          f"{config.cluster.coordinator_address!r} names a cluster, but "
                          "config.distributed is False: add --config.distributed=True")
    _check(_is_int(config.seed), "seed", config.seed, "an integer")
    train_cfg = config.train
    _check(_is_int(train_cfg.batch_size) and train_cfg.batch_size >= 1, "train.batch_size",
           train_cfg.batch_size, "an integer >= 1")
    _check(_is_int(config.eval_batch_size) and config.eval_batch_size >= 1, "eval_batch_size",
           config.eval_batch_size, "an integer >= 1")
    _check(train_cfg.num_epochs > 0, "train.num_epochs", train_cfg.num_epochs, "> 0")
    _check(train_cfg.num_steps is None or (_is_int(train_cfg.num_steps)
                                           and train_cfg.num_steps >= 1),
           "train.num_steps", train_cfg.num_steps, "an integer >= 1 (in a config file, None "
           "trains train.num_epochs epochs)")
    _check(train_cfg.get("optimizer", "sgd") in optim.OPTIMIZERS, "train.optimizer",
           train_cfg.get("optimizer"), f"one of {', '.join(optim.OPTIMIZERS)}")
    _check(train_cfg.momentum >= 0 and not (train_cfg.nesterov and train_cfg.momentum == 0),
           "train.momentum", train_cfg.momentum, ">= 0, and > 0 with train.nesterov=True")
    if train_cfg.get("optimizer", "sgd") != "sgd":
        _check(train_cfg.momentum < 1, "train.momentum", train_cfg.momentum,
               f"< 1 with train.optimizer={train_cfg.optimizer} (it is Adam's b1 there)")
    _check(not (train_cfg.nesterov and train_cfg.get("optimizer", "sgd") == "lamb"),
           "train.nesterov", train_cfg.nesterov, "False with train.optimizer=lamb, which has "
           "no Nesterov momentum")
    _check(train_cfg.weight_decay >= 0, "train.weight_decay", train_cfg.weight_decay, ">= 0")
    schedule = train_cfg.lr_schedule
    _check(schedule.name in ("cosine", "step"), "train.lr_schedule.name", schedule.name,
           "cosine or step")
    _check(schedule.get("warmup_epochs", 0) >= 0 and not (
        schedule.name == "step" and schedule.get("warmup_epochs", 0)),
        "train.lr_schedule.warmup_epochs", schedule.get("warmup_epochs", 0),
        ">= 0, and 0 with the step schedule")
    _check(0 <= config.data.validation_fraction < 1, "data.validation_fraction",
           config.data.validation_fraction, "a fraction in [0, 1)")


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
