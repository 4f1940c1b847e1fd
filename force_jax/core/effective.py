"""Effective sparsity: the kept weights that lie on an input-output path.

Vysogorets and Kempe ("Connectivity matters: neural network pruning through
the lens of effective sparsity", JMLR 2023) count a kept weight that lies on
no path from the input to the output as pruned: it cannot change what the
network computes from its input. At 99 % and beyond, masks keep many such
weights (a channel whose outgoing weights are all pruned, a layer cut off
behind an emptied one), and methods differ in how many.

`effective_mask` finds them with one forward and one backward pass of the
model on an all-ones input, at weights 1 where kept and 0 where pruned
(`mask_analysis.path_network`). After every module's output the values are
replaced by 1 where positive and 0 elsewhere, and so are the gradients
flowing back into it: each stays a reachability flag, so nothing overflows
or underflows however deep the network. A kept weight's gradient is then
positive exactly when its input is reachable from the network's input and
its output reaches the network's output. A max-pool window connects all its
inputs to its output (any of them may be the maximum), so the models of
`force_jax.models` pool by averaging here; a user's own model keeps its
max-pool, whose gradient reaches one input per window, and the count is
then a lower bound.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from force_jax.core import masks as masks_lib
from force_jax.core.mask_analysis import path_network

PyTree = Any


@jax.custom_vjp
def _reachable(x: jax.Array) -> jax.Array:
    return (x > 0).astype(x.dtype)


def _reachable_fwd(x):
    return _reachable(x), None


def _reachable_bwd(_, g):
    return ((g > 0).astype(g.dtype),)


_reachable.defvjp(_reachable_fwd, _reachable_bwd)


def _binarize_outputs(next_fun, args, kwargs, context):
    del context
    out = next_fun(*args, **kwargs)
    return jax.tree.map(
        lambda y: _reachable(y) if isinstance(y, jax.Array)
        and jnp.issubdtype(y.dtype, jnp.floating) else y, out)


@dataclasses.dataclass(frozen=True)
class _AveragePoolOps:
    """A model's kernel choice with its max-pools replaced by average pools."""

    inner: Any

    def conv(self, **attributes: Any) -> nn.Module:
        return self.inner.conv(**attributes)

    def max_pool(self, x: jax.Array, window: int) -> jax.Array:
        return nn.avg_pool(x, (window, window), strides=(window, window), padding="VALID")


def path_model(model: nn.Module) -> nn.Module:
    """The model with its max-pools averaging, where it takes an `ops` record.

    Args:
      model: a Flax module.

    Returns:
      A clone whose `ops.max_pool` averages (the models of `force_jax.models`),
      or the model itself.
    """
    ops = getattr(model, "ops", None)
    if ops is None or not hasattr(ops, "max_pool"):
        return model
    return model.clone(ops=_AveragePoolOps(ops))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _path_gradients(model: nn.Module, input_shape: tuple[int, ...], others: PyTree,
                    params: PyTree) -> PyTree:
    """Gradients of the binarised path objective (compiled once per model and shape)."""

    def objective(p):
        with nn.intercept_methods(_binarize_outputs):
            out = model.apply({**others, "params": p}, jnp.ones((1, *input_shape)),
                              train=False)
        return jnp.sum(out)

    return jax.grad(objective)(params)


def effective_mask(model: nn.Module, variables: PyTree, mask: PyTree,
                   input_shape: tuple[int, ...]) -> PyTree:
    """The mask's kept weights that lie on at least one input-output path.

    Args:
      model: a Flax Linen module called as `model.apply(vars, x, train=False)`.
      variables: its variables at initialisation (zero biases; BatchNorm in
        inference mode, its statistics as they are).
      mask: a mask of `variables["params"]`.
      input_shape: shape of one example, e.g. (28, 28, 1).

    Returns:
      A mask of the same structure: on prunable leaves, kept and on a path;
      other leaves as in `mask`.
    """
    others = {name: value for name, value in variables.items() if name != "params"}
    grads = _path_gradients(path_model(model), tuple(input_shape), others,
                            path_network(variables["params"], mask))
    return jax.tree.map(
        lambda m, g: jnp.asarray(m, bool) & (g > 0) if masks_lib.is_prunable_leaf(m) else m,
        mask, grads)


def effective_counts(model: nn.Module, variables: PyTree, mask: PyTree,
                     input_shape: tuple[int, ...]) -> list[int]:
    """Kept weights on an input-output path, per prunable leaf in tree order.

    Args:
      model: the Flax module (see `effective_mask`).
      variables: its variables at initialisation.
      mask: a mask of its params.
      input_shape: shape of one example.

    Returns:
      One count per prunable leaf.
    """
    effective = effective_mask(model, variables, mask, input_shape)
    return [int(jnp.sum(m)) for m in jax.tree.leaves(effective) if masks_lib.is_prunable_leaf(m)]
