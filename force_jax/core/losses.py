"""Scoring objectives built from a Flax Linen classifier.

`prune` works on any `loss_fn(params, batch) -> scalar`; these helpers build
the two a Flax classifier needs: the data loss used by the gradient-based
methods, and the data-free SynFlow objective.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

PyTree = Any
LossFn = Callable[[PyTree, Mapping[str, jax.Array]], jax.Array]
SCORING_LOSSES = ("cross_entropy", "nll_on_logits")


def nan_unless_labels_in_range(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """`logits`, or all NaN when some label is not a class index.

    Labels are traced inside jit, so they cannot be checked on the host. An
    out-of-range label gathers nothing (JAX fills or drops an out-of-bounds
    index), which gives zero gradients: pruning would rank all-zero scores,
    i.e. keep weights in index order, without any error. NaN logits make the
    loss NaN, and so the finiteness checks of `prune` and of training fire.
    The logits are multiplied, not replaced (`jnp.where`): the cotangent of
    every logit is then NaN, even one the loss never reads, so every
    gradient is NaN too; `where` would pass zeros back.

    Args:
      logits: (batch, classes) float array.
      labels: (batch,) integer labels (may be traced).

    Returns:
      `logits` unchanged when every label is in [0, classes), else NaN logits.
    """
    in_range = jnp.all((labels >= 0) & (labels < logits.shape[-1]))
    return logits * jnp.where(in_range, 1.0, jnp.nan).astype(logits.dtype)


def logits_loss(logits: jax.Array, labels: jax.Array, kind: str = "cross_entropy") -> jax.Array:
    """Mean classification loss of a batch of logits.

    Args:
      logits: (batch, classes) float array.
      labels: (batch,) integer labels.
      kind: "cross_entropy" (softmax cross-entropy), or "nll_on_logits": minus
        the mean true-class logit, which is what the official PyTorch code of
        FORCE computes (it applies `nll_loss` to raw logits).

    Returns:
      A float32 scalar; NaN, with NaN gradients, when a label lies outside
      [0, classes) (see `nan_unless_labels_in_range`).
    """
    logits = nan_unless_labels_in_range(logits.astype(jnp.float32), labels)
    if kind == "cross_entropy":
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    if kind == "nll_on_logits":
        return -jnp.take_along_axis(logits, labels[:, None], axis=1).mean()
    raise ValueError(f"unknown scoring loss {kind!r}; expected one of {SCORING_LOSSES}")


def classification_loss(
    model: nn.Module,
    variables: PyTree,
    *,
    loss: str = "cross_entropy",
    temperature: float = 1.0,
) -> LossFn:
    """The scoring loss of a Flax classifier, with BatchNorm on batch statistics.

    BatchNorm runs in train mode (batch statistics) as in the paper's code,
    and the updated running statistics are thrown away, so scoring never
    touches the statistics of the model that is trained.

    Args:
      model: a Flax Linen module called as `model.apply(vars, x, train=...)`.
      variables: its variables; everything but "params" is held fixed.
      loss: "cross_entropy" or "nll_on_logits" (see `logits_loss`).
      temperature: logits are divided by it (GraSP's official code uses 200).

    Returns:
      loss_fn(params, batch) -> scalar, batch = {"image": ..., "label": ...}.
    """
    if loss not in SCORING_LOSSES:
        raise ValueError(f"unknown scoring loss {loss!r}; expected one of {SCORING_LOSSES}")
    others = {name: value for name, value in variables.items() if name != "params"}
    # Flax returns (output, updates) for any mutable other than False, even [].
    mutable = ["batch_stats"] if "batch_stats" in others else False

    def loss_fn(params: PyTree, batch: Mapping[str, jax.Array]) -> jax.Array:
        out = model.apply({**others, "params": params}, batch["image"], train=True, mutable=mutable)
        logits = out[0] if mutable else out
        return logits_loss(logits / temperature, batch["label"], loss)

    return loss_fn


def synflow_objective(
    model: nn.Module, variables: PyTree, input_shape: tuple[int, ...]
) -> LossFn:
    """SynFlow's data-free objective R = sum of the outputs on an all-ones input.

    `prune` evaluates it at |params| * mask (Tanaka et al. 2020); BatchNorm
    runs in inference mode with the statistics in `variables`.

    Args:
      model: a Flax Linen module.
      variables: its variables.
      input_shape: shape of one example, e.g. (32, 32, 3).

    Returns:
      fn(params, batch) -> scalar; `batch` is ignored (the objective is
      data-free).
    """
    others = {name: value for name, value in variables.items() if name != "params"}
    ones = jnp.ones((1, *input_shape), jnp.float32)

    def objective(params: PyTree, batch: Any = None) -> jax.Array:
        del batch
        return jnp.sum(model.apply({**others, "params": params}, ones, train=False))

    return objective
