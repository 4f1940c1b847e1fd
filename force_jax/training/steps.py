"""The jitted work of training: the train state, one SGD step, one evaluation step.

Nothing here reads a config: the optimizer (wrapped in
`force_jax.optim.masked_updates`) and the model come in as values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from force_jax.core import losses, masks

PyTree = Any


class TrainState(train_state.TrainState):
    """Params, optimizer state (which holds the mask) and BatchNorm statistics."""

    batch_stats: PyTree


def create_train_state(model: nn.Module, variables: PyTree, mask: PyTree,
                       tx: optax.GradientTransformation) -> TrainState:
    """Masked params and an optimizer that keeps pruned weights at zero.

    Args:
      model: the Flax model.
      variables: its variables at initialisation (dense).
      mask: the pruning mask.
      tx: the optimizer, wrapped in `masked_updates` with this mask.

    Returns:
      The initial TrainState; pruned weights are exactly zero.
    """
    state = TrainState.create(
        apply_fn=model.apply, params=masks.apply_mask(variables["params"], mask), tx=tx,
        batch_stats=variables.get("batch_stats", {}),
    )
    # An int32 array step from the start: a Python int 0 would compile the step twice.
    return state.replace(step=jnp.zeros((), jnp.int32))


def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    """One optimizer step on a batch, BatchNorm statistics updated.

    Args:
      state: the train state.
      batch: {"image", "label"} arrays.

    Returns:
      (new state, {"loss", "accuracy"} of the batch); the loss (and so the
      update) is NaN when a label lies outside [0, num_classes).
    """

    def loss_fn(params):
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats}, batch["image"], train=True,
            mutable=["batch_stats"],
        )
        return losses.logits_loss(logits, batch["label"]), (logits, updates)

    (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=updates.get("batch_stats", {}))
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return state, {"loss": loss, "accuracy": accuracy}


def eval_step(state: TrainState, batch: dict) -> dict:
    """Sums of loss and correct predictions over the real examples of a batch.

    Args:
      state: the train state.
      batch: {"image", "label", "mask"}; mask is 0 on padding examples.

    Returns:
      {"loss", "correct", "count"} sums; the loss is NaN when a real
      example's label lies outside [0, num_classes).
    """
    logits = state.apply_fn(
        {"params": state.params, "batch_stats": state.batch_stats}, batch["image"], train=False
    )
    weight = batch["mask"]
    # An out-of-range label would count as a wrong answer with a made-up loss; NaN shows it.
    # Padding examples (weight 0) are not checked: their labels are filler.
    labels = jnp.where(weight > 0, batch["label"], 0)
    checked = losses.nan_unless_labels_in_range(logits.astype(jnp.float32), labels)
    per_example = optax.softmax_cross_entropy_with_integer_labels(checked, labels)
    return {
        "loss": jnp.sum(per_example * weight),
        "correct": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * weight),
        "count": jnp.sum(weight),
    }


def evaluate(eval_fn: Callable[[TrainState, dict], dict], state: TrainState,
             batches: Iterator[dict], max_batches: int) -> dict:
    """Loss and accuracy over a whole split (or its first max_batches batches).

    Args:
      eval_fn: a (jitted) `eval_step`.
      state: the train state.
      batches: the split's batches.
      max_batches: stop after this many (<= 0: the whole split).

    Returns:
      {"loss", "accuracy"} over the real examples seen.
    """
    totals = {"loss": 0.0, "correct": 0.0, "count": 0.0}
    for index, batch in enumerate(batches):
        if 0 < max_batches <= index:
            break
        sums = eval_fn(state, batch)
        totals = {k: totals[k] + float(sums[k]) for k in totals}
    count = max(totals["count"], 1.0)
    return {"loss": totals["loss"] / count, "accuracy": totals["correct"] / count}
