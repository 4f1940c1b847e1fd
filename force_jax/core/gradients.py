"""The gradients a pruning step needs, averaged over its micro-batches.

A step holds its micro-batches as one array per leaf, (batches, batch, ...);
`gradients` returns the gradient and the Hessian-vector product of the
pruner's loss as the mean over them, accumulated in a loop so that one
micro-batch's activations are live at a time, each micro-batch split over
the mesh's data axis where there is one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from force_jax.core import sharding
from force_jax.core.scores import float_grad

PyTree = Any


def picker(batches: PyTree, mesh: Mesh | None) -> Callable[[Any], PyTree]:
    """i -> micro-batch i of a step's batches, split over the mesh's data axis."""

    def pick(i):
        picked = jax.tree.map(lambda x: x[i], batches)
        if mesh is None:
            return picked
        return jax.lax.with_sharding_constraint(picked, sharding.batch_sharding(mesh))

    return pick


def mean_over_batches(fn: Callable, batches: PyTree, count: int, mesh: Mesh | None) -> PyTree:
    """Mean of fn(batch) over the micro-batches, accumulated in a loop (one live at a time)."""
    pick = picker(batches, mesh)
    first = fn(pick(0))
    if count == 1:
        return first
    total = jax.lax.fori_loop(
        1, count, lambda i, acc: jax.tree.map(jnp.add, acc, fn(pick(i))), first)
    return jax.tree.map(lambda x: x / count, total)


def gradients(pruner: Any, batches: PyTree | None) -> tuple[Callable | None, Callable | None]:
    """(gradient, hessian_vector) over this step's batches, or (None, None) without data."""
    if batches is None or pruner.loss_fn is None:
        return None, None
    loss_fn, count, mesh = pruner.loss_fn, pruner.batches_per_step, pruner.mesh

    def gradient(p):
        return mean_over_batches(lambda b: float_grad(loss_fn)(p, b), batches, count, mesh)

    def hessian_vector(p, v):
        # Reverse over reverse, H v = d<g(q), v>/dq: the models' convs on
        # CPU have a custom VJP, which forward mode cannot go through.
        def hv(b):
            def directional(q):
                grads = float_grad(loss_fn)(q, b)
                return sum(jnp.vdot(g, t) for g, t in
                           zip(jax.tree.leaves(grads), jax.tree.leaves(v)))

            return float_grad(directional)(p)

        return mean_over_batches(hv, batches, count, mesh)

    return gradient, hessian_vector
