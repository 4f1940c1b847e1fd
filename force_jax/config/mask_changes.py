"""config.train.mask_changes: a mask that changes during training, checked and built.

method "none" keeps the pruning mask for the whole run (the paper's setting);
"gmp" prunes further by magnitude along Zhu and Gupta's schedule to
mask_changes.sparsity; "set" and "rigl" rewire every layer at a fixed count
(`force_jax.optim.mask_changes`). Steps count optimizer steps from 0; `end`
unset means three quarters of the run (RigL's choice), rounded down to a
multiple of `every`.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections

from force_jax.errors import ConfigError
from force_jax.optim import mask_changes
from force_jax.runs import keys

METHODS = keys.MASK_CHANGES
PyTree = Any


def method(config: ml_collections.ConfigDict) -> str:
    """config.train.mask_changes.method; "none" for a config without the key."""
    changes = config.train.get("mask_changes")
    return "none" if changes is None else changes.method


def _fail(key: str, value: Any, expected: str) -> None:
    raise ConfigError(f"config.train.mask_changes.{key}={value!r}: expected {expected}")


def check(config: ml_collections.ConfigDict) -> None:
    """The checks that need no dataset: names, ranges and what the pruning leaves to change.

    Args:
      config: experiment config.

    Raises:
      ConfigError: naming the key and the fix.
    """
    if method(config) == "none":
        return
    cfg = config.train.mask_changes
    if cfg.method not in METHODS:
        _fail("method", cfg.method, f"one of {', '.join(METHODS)}")
    for key in ("start", "every"):
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < (key == "every"):
            _fail(key, value, "an integer >= 1" if key == "every" else "an integer >= 0")
    if cfg.end is not None and (isinstance(cfg.end, bool) or not isinstance(cfg.end, int)
                                or cfg.end < cfg.start):
        _fail("end", cfg.end, f"an integer >= mask_changes.start={cfg.start}, or None")
    if cfg.method == "gmp":
        _check_gmp(config)
    else:
        if not 0 < cfg.drop_fraction < 1:
            _fail("drop_fraction", cfg.drop_fraction, "a fraction in (0, 1)")
        if config.prune.sparsity == 0:
            raise ConfigError(f"config.train.mask_changes.method={cfg.method} rewires a sparse "
                              "mask, but prune.sparsity=0 leaves it dense: set prune.sparsity "
                              "(for RigL from ERK: prune.method=random, prune.scope=layerwise, "
                              "prune.allocation=erk)")


def _check_gmp(config: ml_collections.ConfigDict) -> None:
    cfg = config.train.mask_changes
    if cfg.sparsity is None or not 0 < cfg.sparsity < 1:
        _fail("sparsity", cfg.sparsity, "the final sparsity of gradual pruning, in (0, 1)")
    if cfg.sparsity <= config.prune.sparsity:
        _fail("sparsity", cfg.sparsity, f"more than prune.sparsity={config.prune.sparsity} "
              "(gradual pruning prunes further than the mask it starts from)")
    if cfg.scope not in ("global", "layerwise"):
        _fail("scope", cfg.scope, "global or layerwise")
    if cfg.scope == "layerwise" and config.prune.sparsity:
        _fail("scope", cfg.scope, "global when training starts from a pruned mask "
              "(prune.sparsity > 0); layerwise gradual pruning starts dense")
    if cfg.start % cfg.every or (cfg.end is not None and cfg.end % cfg.every):
        _fail("start" if cfg.start % cfg.every else "end",
              cfg.start if cfg.start % cfg.every else cfg.end,
              f"a multiple of mask_changes.every={cfg.every}")


def end_step(config: ml_collections.ConfigDict, total_steps: int) -> int:
    """The last step that may change the mask (checked against the run's length).

    Args:
      config: experiment config.
      total_steps: the run's optimizer steps.

    Returns:
      mask_changes.end, or 3/4 of the run rounded down to a multiple of every.

    Raises:
      ConfigError: when the schedule ends after training does, or starts too late.
    """
    cfg = config.train.mask_changes
    end = cfg.end if cfg.end is not None else (3 * total_steps // 4) // cfg.every * cfg.every
    if end >= total_steps:
        _fail("end", end, f"a step before the run's end ({total_steps} steps): lower it or "
              "train longer")
    if end < cfg.start:
        _fail("start", cfg.start, f"at most the end of the schedule ({end}, 3/4 of the run "
              "unless mask_changes.end is set)")
    return end


def rule(config: ml_collections.ConfigDict, mask: PyTree, total_steps: int) -> Any:
    """The `force_jax.optim.mask_changes` rule of a config, or None for method "none".

    Gradual pruning's initial sparsity is prune.sparsity, the mask's own, so
    that the rule of a restored run equals the rule of the run that saved it.

    Args:
      config: experiment config.
      mask: the mask training starts from (or one of its structure).
      total_steps: the run's optimizer steps.

    Returns:
      A GradualMagnitude or DropAndGrow record, or None.
    """
    if method(config) == "none":
        return None
    cfg = config.train.mask_changes
    end = end_step(config, total_steps)
    if cfg.method == "gmp":
        return mask_changes.gradual_magnitude(
            mask, sparsity=cfg.sparsity, start=cfg.start, end=end, every=cfg.every,
            initial_sparsity=config.prune.sparsity, scope=cfg.scope)
    grow = "gradient" if cfg.method == "rigl" else "random"
    return mask_changes.drop_and_grow(grow=grow, drop_fraction=cfg.drop_fraction,
                                      start=cfg.start, end=end, every=cfg.every)


def key(config: ml_collections.ConfigDict) -> jax.Array:
    """The PRNG key of the random choices of the rule (SET's growth): from config.seed."""
    return jax.random.fold_in(jax.random.key(config.seed), 0x5e7)
