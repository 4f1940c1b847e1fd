"""What a config trains with: the run's length, its learning-rate schedule, the masked
optimizer and the first train state.

The optimizer is always wrapped in the mask (`force_jax.optim.masked_updates`,
or `changing_masked_updates` where config.train.mask_changes changes it), so
pruned weights stay exactly zero through every update.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import ml_collections
import optax

from force_jax import optim
from force_jax.config import mask_changes as mask_changes_config
from force_jax.training import steps

PyTree = Any


def make_optimizer(config: ml_collections.ConfigDict, schedule: optax.Schedule,
                   mask: PyTree, total_steps: int | None = None) -> optax.GradientTransformation:
    """The configured optimizer (config.train.optimizer, SGD by default), masked.

    Args:
      config: experiment config (uses config.train).
      schedule: learning-rate schedule.
      mask: the pruning mask.
      total_steps: the run's optimizer steps (needed when the mask changes).

    Returns:
      `optim.masked_updates(inner, mask)`, or `optim.changing_masked_updates`
      with the rule of config.train.mask_changes.
    """
    cfg = config.train
    inner = optim.make_optimizer(
        cfg.get("optimizer", "sgd"), learning_rate=schedule, momentum=cfg.momentum,
        nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    if mask_changes_config.method(config) == "none":
        return optim.masked_updates(inner, mask)
    if total_steps is None:
        raise ValueError("a changing mask (config.train.mask_changes) needs total_steps")
    rule = mask_changes_config.rule(config, mask, total_steps)
    return optim.changing_masked_updates(inner, mask, rule,
                                         key=mask_changes_config.key(config))


def initial_state(config: ml_collections.ConfigDict, model: nn.Module, variables: PyTree,
                  mask: PyTree, schedule: optax.Schedule,
                  total_steps: int | None = None) -> steps.TrainState:
    """The train state of a config: masked params, the configured optimizer wrapped in the mask.

    Args:
      config: experiment config (uses config.train).
      model: the Flax model.
      variables: the variables training starts from (dense).
      mask: the pruning mask.
      schedule: learning-rate schedule.
      total_steps: the run's optimizer steps (needed when the mask changes).

    Returns:
      `steps.create_train_state(model, variables, mask, make_optimizer(...))`.
    """
    return steps.create_train_state(model, variables, mask,
                                    make_optimizer(config, schedule, mask, total_steps))


def run_length(config: ml_collections.ConfigDict, num_train: int) -> tuple[int, float, int]:
    """How long a run is, in steps, and how long its schedule's epochs are.

    Args:
      config: experiment config (uses config.train).
      num_train: training examples (all processes).

    Returns:
      (total_steps, schedule_steps_per_epoch, data_steps_per_epoch): the run's
      optimizer steps (config.train.num_steps when set, else num_epochs
      epochs); the steps per epoch of the learning-rate schedule, stretched
      when num_steps is set so that the schedule spans the run; and the steps
      in one pass over the training data.
    """
    data_steps_per_epoch = num_train // config.train.batch_size
    if config.train.num_steps is None:
        total = round(config.train.num_epochs * data_steps_per_epoch)
        return total, data_steps_per_epoch, data_steps_per_epoch
    total = int(config.train.num_steps)
    return total, total / config.train.num_epochs, data_steps_per_epoch


def make_lr_schedule(config: ml_collections.ConfigDict, num_train: int) -> optax.Schedule:
    """The learning-rate schedule of config.train.lr_schedule, spanning the whole run.

    Args:
      config: experiment config.
      num_train: training examples (all processes).

    Returns:
      An optax schedule of the step count.
    """
    total_steps, schedule_steps_per_epoch, _ = run_length(config, num_train)
    return optim.make_schedule(config.train.lr_schedule, total_steps=total_steps,
                               steps_per_epoch=schedule_steps_per_epoch)
