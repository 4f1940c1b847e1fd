"""Optimizers and learning-rate schedules as optax transformations.

`sgd` computes what torch.optim.SGD does (the paper's optimizer);
`make_optimizer` picks one by name for the configs, and `make_schedule` builds
the learning-rate schedule of a run. None of them masks: wrap the result in
`force_jax.optim.masked_updates`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("sgd", "adamw", "lamb")


def sgd(*, learning_rate: optax.ScalarOrSchedule, momentum: float = 0.9,
        weight_decay: float = 5e-4, nesterov: bool = False) -> optax.GradientTransformation:
    """SGD as torch.optim.SGD computes it (the paper's optimizer), unmasked.

    Per step: g += weight_decay * param (coupled decay); buf = momentum * buf
    + g; d = g + momentum * buf if nesterov else buf; param -= lr * d. Weight
    decay applies to every parameter, biases and norms included, as in the
    paper's PyTorch code.

    Args:
      learning_rate: a float or an optax schedule of the step count.
      momentum: momentum coefficient (0 for plain SGD).
      weight_decay: coupled L2 coefficient added to the gradient.
      nesterov: Nesterov momentum, as torch.optim.SGD(nesterov=True).

    Returns:
      An optax GradientTransformation.

    Raises:
      ValueError: for negative momentum or weight decay, or Nesterov without momentum.
    """
    if momentum < 0 or weight_decay < 0:
        raise ValueError(f"momentum and weight_decay must be >= 0, got {momentum}, {weight_decay}")
    if nesterov and momentum == 0:
        raise ValueError("nesterov momentum needs momentum > 0")
    return optax.chain(
        optax.add_decayed_weights(weight_decay) if weight_decay else optax.identity(),
        optax.trace(decay=momentum, nesterov=nesterov) if momentum else optax.identity(),
        optax.scale_by_learning_rate(learning_rate),
    )


def make_optimizer(name: str, *, learning_rate: optax.ScalarOrSchedule, momentum: float = 0.9,
                   nesterov: bool = False, weight_decay: float = 5e-4, b2: float = 0.999,
                   eps: float = 1e-8) -> optax.GradientTransformation:
    """An unmasked optimizer by name; wrap it in `masked_updates` to train a pruned net.

    `momentum` is the decay of the first moment for every optimizer: SGD's
    momentum, Adam's b1 (both default to 0.9), so no hyperparameter of the
    config is left unused whichever optimizer is chosen.

    Args:
      name: "sgd" (torch-style SGD with momentum and coupled weight decay, the
        paper's), "adamw" (decoupled weight decay) or "lamb".
      learning_rate: a float or an optax schedule of the step count.
      momentum: SGD's momentum (0 for plain SGD), or b1 of adamw and lamb (in [0, 1)).
      nesterov: Nesterov momentum (sgd and adamw; lamb has none).
      weight_decay: coupled (sgd) or decoupled (adamw, lamb) decay.
      b2, eps: Adam's second-moment decay and epsilon (adamw, lamb).

    Returns:
      An optax GradientTransformation.

    Raises:
      ValueError: for an unknown name or bad hyperparameters.
    """
    if name == "sgd":
        return sgd(learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay,
                   nesterov=nesterov)
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: expected one of {', '.join(OPTIMIZERS)}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum (b1 of {name}) must be in [0, 1), got {momentum}")
    if name == "adamw":
        return optax.adamw(learning_rate, b1=momentum, b2=b2, eps=eps,
                           weight_decay=weight_decay, nesterov=nesterov)
    if nesterov:
        raise ValueError("lamb has no Nesterov momentum: set nesterov=False")
    return optax.lamb(learning_rate, b1=momentum, b2=b2, eps=eps, weight_decay=weight_decay)


def piecewise_constant_schedule(
    *, base_lr: float, boundaries_epochs: tuple[float, ...], factor: float,
    steps_per_epoch: float,
) -> optax.Schedule:
    """Step decay by epochs, like torch MultiStepLR: lr = base_lr * factor ** n.

    n counts the boundaries reached: the new rate starts at step boundary *
    steps_per_epoch. Paper (CIFAR): 0.1, x0.1 at epochs 150 and 250 of 350;
    ImageNet: boundaries (30, 60, 80) of 90.

    Args:
      base_lr: rate before the first boundary.
      boundaries_epochs: epochs at which the rate is multiplied by `factor`.
      factor: multiplier applied at each boundary.
      steps_per_epoch: optimizer steps per epoch (> 0).

    Returns:
      An optax schedule of the step count.
    """
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be > 0, got {steps_per_epoch}")
    boundary_steps = jnp.asarray([round(e * steps_per_epoch) for e in boundaries_epochs], jnp.int32)

    def schedule(count: jax.Array) -> jax.Array:
        reached = jnp.sum(count >= boundary_steps)
        return base_lr * jnp.asarray(factor, jnp.float32) ** reached

    return schedule


def cosine_schedule(*, base_lr: float, total_steps: int, warmup_steps: int = 0) -> optax.Schedule:
    """Cosine decay from base_lr to 0 at total_steps, after an optional warmup.

    The warmup rises linearly from 0 at step 0 to base_lr at warmup_steps; the
    cosine then spans the remaining total_steps - warmup_steps steps.

    Args:
      base_lr: peak rate.
      total_steps: length of the whole schedule, warmup included.
      warmup_steps: length of the linear warmup (0 for none).

    Returns:
      An optax schedule of the step count.
    """
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"need 0 <= warmup_steps < total_steps, got {warmup_steps}, {total_steps}")
    if warmup_steps == 0:
        return optax.cosine_decay_schedule(init_value=base_lr, decay_steps=total_steps)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=base_lr, warmup_steps=warmup_steps, decay_steps=total_steps
    )


def make_schedule(
    config: Mapping[str, Any], *, total_steps: int, steps_per_epoch: float
) -> optax.Schedule:
    """Builds a schedule that spans a run of `total_steps`, epochs turned into steps once.

    Args:
      config: dict-like with keys name ("step" or "cosine") and base_lr; for
        "step", boundaries (epochs) and factor (default 0.1); for "cosine",
        warmup_epochs (default 0). The cosine decays to 0 at total_steps.
      total_steps: optimizer steps of the whole run.
      steps_per_epoch: optimizer steps per epoch of the schedule. A run cut to
        `num_steps` passes total_steps / num_epochs here, so that epoch
        boundaries and warmup stretch with the run and every schedule spans it.

    Returns:
      An optax schedule of the step count.

    Raises:
      ValueError: for an unknown name, or warmup asked of the "step" schedule.
    """
    if total_steps < 1 or steps_per_epoch <= 0:
        raise ValueError(f"need total_steps >= 1 and steps_per_epoch > 0, got {total_steps}, "
                         f"{steps_per_epoch}")
    name = config["name"]
    warmup_epochs = config.get("warmup_epochs", 0) or 0
    if name == "step":
        if warmup_epochs:
            raise ValueError(f"warmup_epochs={warmup_epochs} is not supported by the step schedule")
        return piecewise_constant_schedule(
            base_lr=config["base_lr"],
            boundaries_epochs=tuple(config["boundaries"]),
            factor=config.get("factor", 0.1),
            steps_per_epoch=steps_per_epoch,
        )
    if name == "cosine":
        return cosine_schedule(
            base_lr=config["base_lr"],
            total_steps=int(total_steps),
            warmup_steps=round(warmup_epochs * steps_per_epoch),
        )
    raise ValueError(f"unknown learning-rate schedule {name!r}: expected 'step' or 'cosine'")
