"""One step of a pruning schedule: score the weights at a mask, keep the top k.

Shared by the two programs of `force_jax.prune`: the pooled schedule, which
scans this step over all T steps and draws each step's micro-batches from an
in-memory pool, and the streamed one, which calls it once per step on
micro-batches drawn from an iterator. Gradients over micro-batches are
averaged in a `fori_loop`, so only one is live at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from force_jax.core import masks as masks_lib
from force_jax.core import methods as methods_lib
from force_jax.core import sanity, sharding
from force_jax.core import scores as scores_lib

PyTree = Any
LossFn = Callable[[PyTree, Any], jax.Array]


def _mean_over_batches(fn: Callable, pick: Callable[[jax.Array], PyTree], count: int,
                       mesh: Mesh | None = None) -> PyTree:
    """Mean of fn(pick(i)) over the micro-batches i < count, accumulated in a loop.

    With a mesh, each micro-batch is split over its data axis.
    """

    def batch(i):
        picked = pick(i)
        if mesh is None:
            return picked
        return jax.lax.with_sharding_constraint(picked, sharding.batch_sharding(mesh))

    first = fn(batch(0))
    total = jax.lax.fori_loop(
        1, count, lambda i, acc: jax.tree.map(jnp.add, acc, fn(batch(i))), first)
    return jax.tree.map(lambda x: x / count, total)


def _finite(scores: PyTree, mask: PyTree) -> jax.Array:
    """True when every prunable score is finite, -inf allowed on pruned weights."""
    checks = [
        jnp.all(jnp.isfinite(s) | ((s == -jnp.inf) & ~m))
        for s, m in zip(jax.tree.leaves(scores), jax.tree.leaves(mask))
        if masks_lib.is_prunable_leaf(m)
    ]
    return jnp.all(jnp.stack(checks))


def _objective(params: PyTree, grads: PyTree, mask: PyTree) -> jax.Array:
    """S(mask): sum over kept prunable weights of |theta0 * g|."""
    sal = scores_lib.saliency(params, grads)
    return sum(
        jnp.sum(jnp.where(m, s, 0.0))
        for s, m in zip(jax.tree.leaves(sal), jax.tree.leaves(mask))
        if masks_lib.is_prunable_leaf(m)
    )


def step_fn(method: methods_lib.Method, loss_fn: LossFn, synflow_fn: LossFn | None, batch_size: int,
             batches_per_step: int, track_objective: bool, mesh: Mesh | None,
             invert_scores: bool, streamed: bool) -> Callable:
    """One step of a schedule, shared by the pooled and the streamed programs.

    Args:
      method: the method's record (`force_jax.core.methods`).
      loss_fn, synflow_fn, batch_size, batches_per_step, track_objective,
        mesh, invert_scores: as in `force_jax.prune`.
      streamed: whether `data` holds this step's stacked micro-batches
        (True) or the pool to draw them from (False).

    Returns:

      step(params, data, mask, step_key, count, is_last), which scores the
      weights at `mask` and keeps the top `count` (or, when `is_last`, only
      evaluates S(mask)), and returns (new mask, objective, scores finite,
      revived, kept per layer). `data` is the pool, from which the step
      draws its micro-batches with `step_key` (pooled), or this step's
      micro-batches stacked on a leading axis of batches_per_step (streamed).
    """
    score_fn = method.score
    extra_gradient = method.objective == methods_lib.OBJECTIVE_EXTRA and track_objective

    def step(params, data, mask, step_key, count, is_last):
        has_data = data is not None
        batch_key, score_key = jax.random.split(step_key)
        gradient = hessian_vector = None
        if has_data:
            if streamed:
                def pick(i):
                    return jax.tree.map(lambda x: x[i], data)
            else:
                n = jax.tree.leaves(data)[0].shape[0]
                order = jax.random.permutation(batch_key, n)
                indices = order[: batch_size * batches_per_step].reshape(batches_per_step, -1)

                def pick(i):
                    return jax.tree.map(lambda x: jnp.take(x, indices[i], axis=0), data)

            def gradient(p):
                return _mean_over_batches(lambda b: jax.grad(loss_fn)(p, b), pick,
                                          batches_per_step, mesh)

            def hessian_vector(p, v):
                # Reverse over reverse, H v = d<g(q), v>/dq: the models' convs on
                # CPU have a custom VJP, which forward mode cannot go through.
                def hv(b):
                    def directional(q):
                        grads = jax.grad(loss_fn)(q, b)
                        return sum(jnp.vdot(g, t) for g, t in
                                   zip(jax.tree.leaves(grads), jax.tree.leaves(v)))

                    return jax.grad(directional)(p)

                return _mean_over_batches(hv, pick, batches_per_step, mesh)

        synflow_gradient = jax.grad(synflow_fn) if synflow_fn is not None else None
        inputs = scores_lib.StepInputs(
            params, mask, gradient, hessian_vector, synflow_gradient, score_key)

        def select(mask):
            scores, grads = score_fn(inputs)
            if invert_scores:
                scores = sanity.invert_scores(scores)
            if grads is None and extra_gradient and has_data:
                grads = inputs.gradient(masks_lib.apply_mask(params, mask))
            objective = _objective(params, grads, mask) if grads is not None else jnp.nan
            new_mask = masks_lib.topk_mask(scores, mask, count)
            revived = masks_lib.num_kept(jax.tree.map(lambda a, b: a & ~b, new_mask, mask))
            return new_mask, jnp.float32(objective), _finite(scores, mask), revived

        def final(mask):
            objective = jnp.float32(jnp.nan)
            if has_data and track_objective:
                grads = inputs.gradient(masks_lib.apply_mask(params, mask))
                objective = jnp.float32(_objective(params, grads, mask))
            return mask, objective, jnp.bool_(True), jnp.int32(0)

        new_mask, objective, finite, revived = jax.lax.cond(is_last, final, select, mask)
        layer_kept = jnp.stack([jnp.sum(m, dtype=jnp.int32) for m in jax.tree.leaves(new_mask)
                                if masks_lib.is_prunable_leaf(m)])
        return new_mask, objective, finite, revived, layer_kept

    return step
