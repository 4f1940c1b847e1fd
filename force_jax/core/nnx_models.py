"""Pruning a Flax NNX model: its nnx.Param state to a mask, and the mask back.

`prune` works on any params pytree, and an `nnx.State` is one. `split`
takes a model apart into (graphdef, params, rest); the loss and SynFlow
objective here rebuild the model from a params state inside the traced
function, so they are plain `loss_fn(params, batch)` functions for `prune`.
BatchNorm scores on batch statistics (train mode) as in the paper's code,
on a copy of the statistics: the model's running statistics are never
touched. The mask has the structure of the params state, so it applies to
the model with `apply_mask` and trains with
`nnx.Optimizer(model, force_jax.masked_updates(tx, mask), wrt=nnx.Param)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from force_jax.core import losses, masks

PyTree = Any
LossFn = Callable[[PyTree, Mapping[str, jax.Array]], jax.Array]


def split(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """The model as (graphdef, params, rest): `prune` takes `params`.

    Args:
      model: an NNX module.

    Returns:
      Its graph definition, its nnx.Param state and every other state
      (BatchNorm statistics, RNG counters).
    """
    return nnx.split(model, nnx.Param, ...)


def _fresh(state: nnx.State) -> nnx.State:
    # New Variable objects of the same values: the module merged inside a trace
    # may update them (BatchNorm in train mode) without touching the caller's.
    return jax.tree.map(lambda x: x, state)


def classification_loss(graphdef: nnx.GraphDef, rest: nnx.State, *,
                        loss: str = "cross_entropy", temperature: float = 1.0) -> LossFn:
    """The scoring loss of an NNX classifier, BatchNorm on batch statistics.

    Args:
      graphdef: from `split`.
      rest: the non-param state from `split` (held fixed).
      loss: "cross_entropy" or "nll_on_logits" (see `force_jax.logits_loss`).
      temperature: logits are divided by it.

    Returns:
      loss_fn(params, batch) -> scalar, batch = {"image": ..., "label": ...}.
    """
    if loss not in losses.SCORING_LOSSES:
        raise ValueError(f"unknown scoring loss {loss!r}; expected one of "
                         f"{losses.SCORING_LOSSES}")

    def loss_fn(params: nnx.State, batch: Mapping[str, jax.Array]) -> jax.Array:
        model = nnx.merge(graphdef, params, _fresh(rest))
        model.train()
        logits = model(batch["image"])
        return losses.logits_loss(logits / temperature, batch["label"], loss)

    return loss_fn


def synflow_objective(graphdef: nnx.GraphDef, rest: nnx.State,
                      input_shape: tuple[int, ...]) -> LossFn:
    """SynFlow's objective: the sum of the outputs on an all-ones input, BatchNorm in eval mode.

    Args:
      graphdef: from `split`.
      rest: the non-param state from `split`.
      input_shape: shape of one example, e.g. (28, 28, 1).

    Returns:
      fn(params, batch) -> scalar; `batch` is ignored.
    """
    ones = jnp.ones((1, *input_shape), jnp.float32)

    def objective(params: nnx.State, batch: Any = None) -> jax.Array:
        del batch
        model = nnx.merge(graphdef, params, _fresh(rest))
        model.eval()
        return jnp.sum(model(ones))

    return objective


def apply_mask(model: nnx.Module, mask: PyTree) -> None:
    """Zeroes the model's pruned weights in place.

    Args:
      model: the NNX module the mask was computed for.
      mask: a mask of its nnx.Param state (from `prune` on `split(model)[1]`).

    Raises:
      ValueError: if the mask does not have the structure of the params state.
    """
    params = nnx.state(model, nnx.Param)
    nnx.update(model, masks.apply_mask(params, mask))
