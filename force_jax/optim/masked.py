"""The masked optimizer: an optax wrapper that keeps pruned weights at zero.

`masked_updates(inner, mask)` wraps any optax optimizer so that pruned
weights get zero updates. The mask lives once in the wrapper's state
(`MaskedUpdatesState`), so it is checkpointed with the optimizer state and
reaches a jitted step as data: a new mask needs no recompilation.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from force_jax.core.masks import check_mask
from force_jax.optim.changing import ChangingMaskState
from force_jax.optim.optimizers import sgd

PyTree = Any


class MaskedUpdatesState(NamedTuple):
    """State of `masked_updates`: the mask (bool leaves) and the inner optimizer's state."""

    mask: PyTree
    inner_state: optax.OptState


def _where_kept(update: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.where(mask, update, jnp.zeros((), update.dtype))


def masked_updates(inner: optax.GradientTransformation,
                   mask: PyTree) -> optax.GradientTransformation:
    """Any optax optimizer with pruned weights frozen at exactly zero.

    The gradient is masked before the inner optimizer sees it, so its
    statistics of pruned weights (momentum, Adam moments) stay zero, and its
    update is masked after, so nothing it adds (coupled or decoupled weight
    decay, trust ratios) moves a pruned weight. Pruned weights must start at
    zero: apply the mask to the params first (`force_jax.apply_mask`). The
    mask given here only initialises the state; `update` reads the one in
    the state, so a restored or replaced state mask is the one applied.

    Args:
      inner: the optimizer to wrap (sgd, momentum, adamw, lamb, any chain).
      mask: mask pytree with the structure of the params (see force_jax.core.masks).

    Returns:
      An optax GradientTransformation whose state is a `MaskedUpdatesState`.
    """

    def init_fn(params: PyTree) -> MaskedUpdatesState:
        check_mask(params, mask)
        # A fresh copy: the state may be donated to a jitted step, and the
        # same buffer must not appear twice in its arguments.
        own = jax.tree.map(lambda m: jnp.array(m, bool, copy=True), mask)
        return MaskedUpdatesState(mask=own, inner_state=inner.init(params))

    def update_fn(updates: PyTree, state: MaskedUpdatesState,
                  params: PyTree | None = None) -> tuple[PyTree, MaskedUpdatesState]:
        updates = jax.tree.map(_where_kept, updates, state.mask)
        updates, inner_state = inner.update(updates, state.inner_state, params)
        updates = jax.tree.map(_where_kept, updates, state.mask)
        return updates, MaskedUpdatesState(mask=state.mask, inner_state=inner_state)

    return optax.GradientTransformation(init_fn, update_fn)


def mask_from_state(opt_state: PyTree) -> PyTree:
    """The mask of a `masked_updates` (or `changing_masked_updates`) optimizer state.

    Args:
      opt_state: the state `masked_updates(...).init` returned (or a later one).

    Returns:
      The mask pytree (bool leaves).

    Raises:
      ValueError: if the state is not a MaskedUpdatesState.
    """
    if not isinstance(opt_state, (MaskedUpdatesState, ChangingMaskState)):
        raise ValueError(f"expected the MaskedUpdatesState of masked_updates, got "
                         f"{type(opt_state).__name__} (wrap the optimizer in masked_updates)")
    return opt_state.mask


def sgd_with_mask(*, mask: PyTree, learning_rate: optax.ScalarOrSchedule,
                  momentum: float = 0.9, weight_decay: float = 5e-4,
                  nesterov: bool = False) -> optax.GradientTransformation:
    """The paper's training optimizer: `masked_updates(sgd(...), mask)`.

    Args:
      mask: mask pytree with the structure of the params.
      learning_rate, momentum, weight_decay, nesterov: as in `sgd`.

    Returns:
      An optax GradientTransformation whose state is a `MaskedUpdatesState`.
    """
    return masked_updates(sgd(learning_rate=learning_rate, momentum=momentum,
                              weight_decay=weight_decay, nesterov=nesterov), mask)
