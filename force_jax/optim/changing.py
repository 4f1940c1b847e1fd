"""The masked optimizer whose mask changes at scheduled steps, inside the jitted step.

`changing_masked_updates(inner, mask, rule)` is `masked_updates` with a rule
of `force_jax.optim.mask_changes` (gradual magnitude pruning, SET, RigL). Its
state holds the current mask, the step count and a PRNG key, so a checkpoint
carries all three and a resumed run changes the mask at the same steps in
the same way. At an update step, under `lax.cond` (other steps pay nothing
for it):

- the rule computes the new mask from the params and the dense gradient the
  step received (the gradient at the masked params, pruned weights
  included: RigL's growth criterion costs no extra pass);
- the inner optimizer's statistics (momentum, Adam's moments) of every weight
  whose mask changed are reset to zero, found by `optax.tree_map_params`, so
  any optax optimizer works;
- a weight that is dropped is set to exactly zero (its update is minus its
  value); a grown weight starts from zero, its value while pruned;
- SET and RigL make no gradient step at an update step (their `skip_gradient`),
  as the code of both papers and jaxpruner do.

Between updates it behaves exactly as `masked_updates`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from force_jax.core.masks import check_mask

PyTree = Any


class ChangingMaskState(NamedTuple):
    """State of `changing_masked_updates`: mask, inner state, step count, PRNG key data."""

    mask: PyTree
    inner_state: optax.OptState
    count: jax.Array
    key: jax.Array


def _reset(inner: optax.GradientTransformation, inner_state: optax.OptState,
           changed: PyTree) -> optax.OptState:
    """The inner state with the statistics of changed weights set to zero."""
    def zero_changed(value, flag):
        if not hasattr(value, "dtype"):  # a placeholder of a params-shaped field
            return value
        return jnp.where(flag, jnp.zeros((), value.dtype), value)
    return optax.tree_utils.tree_map_params(inner, zero_changed, inner_state, changed)


def changing_masked_updates(inner: optax.GradientTransformation, mask: PyTree, rule: Any,
                            *, key: jax.Array | None = None) -> optax.GradientTransformation:
    """Any optax optimizer, its pruned weights at zero, its mask changed by `rule`.

    Args:
      inner: the optimizer to wrap (sgd, momentum, adamw, lamb, any chain).
      mask: the mask training starts from (structure of the params); the
        params must hold zeros where it is False (`force_jax.apply_mask`).
      rule: a `mask_changes.GradualMagnitude` or `mask_changes.DropAndGrow`.
      key: PRNG key of the random choices (SET's growth); default key(0).

    Returns:
      An optax GradientTransformation whose state is a `ChangingMaskState`;
      its `update` needs the params.
    """
    key_data = jax.random.key_data(jax.random.key(0) if key is None else key)

    def init_fn(params: PyTree) -> ChangingMaskState:
        check_mask(params, mask)
        own = jax.tree.map(lambda m: jnp.array(m, bool, copy=True), mask)
        return ChangingMaskState(own, inner.init(params), jnp.zeros((), jnp.int32),
                                 jnp.array(key_data, copy=True))

    def update_fn(grads: PyTree, state: ChangingMaskState,
                  params: PyTree | None = None) -> tuple[PyTree, ChangingMaskState]:
        if params is None:
            raise ValueError("changing_masked_updates needs the params: tx.update(grads, "
                             "state, params)")
        is_update = rule.period.at(state.count)

        def kept(tree, mask):
            return jax.tree.map(lambda x, m: jnp.where(m, x, jnp.zeros((), x.dtype)), tree, mask)

        def between():  # exactly masked_updates
            updates, inner_state = inner.update(kept(grads, state.mask), state.inner_state,
                                                params)
            return kept(updates, state.mask), state.mask, inner_state

        def change():
            step_key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.count)
            mask = rule.new_mask(state.mask, params, grads, state.count, step_key)
            inner_state = _reset(inner, state.inner_state,
                                 jax.tree.map(jnp.not_equal, mask, state.mask))
            if rule.skip_gradient:
                updates = jax.tree.map(jnp.zeros_like, params)
            else:
                updates, inner_state = inner.update(kept(grads, mask), inner_state, params)
            # Kept weights move by the optimizer's update; every other weight by minus its
            # value: zero for those already pruned, exactly back to zero for those dropped.
            updates = jax.tree.map(lambda u, m, p: jnp.where(m, u, -p).astype(u.dtype),
                                   updates, mask, params)
            return updates, mask, inner_state

        # One branch or the other runs: a step between updates pays nothing for the rule.
        updates, mask, inner_state = jax.lax.cond(is_update, change, between)
        return updates, ChangingMaskState(mask, inner_state, state.count + 1, state.key)

    return optax.GradientTransformation(init_fn, update_fn)
