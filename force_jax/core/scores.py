"""Score functions, one per pruning method, on the same machinery.

Each method's score is a pure function of a `StepInputs` and returns the scores
(a pytree shaped like the params; higher means keep) and, where it computed
one, the data-loss gradient at the masked weights (which `prune` reuses for the
FORCE objective instead of paying for another gradient).

Connection sensitivity (SNIP, Iterative SNIP, FORCE) is |theta0 * g|, with g
the gradient of the loss at w = theta0 * mask; for a mask c it equals
|dL(c * theta0)/dc|. Pruned weights get -inf in the methods where they must
never come back; FORCE scores every weight. What else the library knows
about each method is its record in `force_jax.core.methods`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from force_jax.core.masks import apply_mask

PyTree = Any
Gradient = Callable[[PyTree], PyTree]


class StepInputs(NamedTuple):
    """What a score function may use at one pruning step.

    Attributes:
      params: the dense parameters at initialisation, theta0.
      mask: the current mask (all-True at the first step).
      gradient: params -> mean data-loss gradient over this step's batches.
      hessian_vector: (params, v) -> mean H v over this step's batches.
      synflow_gradient: params -> gradient of the SynFlow objective.
      key: PRNG key of this step.
    """

    params: PyTree
    mask: PyTree
    gradient: Gradient
    hessian_vector: Callable[[PyTree, PyTree], PyTree]
    synflow_gradient: Gradient
    key: jax.Array


Scores = tuple[PyTree, PyTree | None]


def saliency(params: PyTree, grads: PyTree) -> PyTree:
    """Connection sensitivity |theta * g|, leaf by leaf."""
    return jax.tree.map(lambda p, g: jnp.abs(p * g).astype(jnp.float32), params, grads)


def _only_kept(scores: PyTree, mask: PyTree) -> PyTree:
    """Pruned weights get -inf so the global top-k never brings them back."""
    return jax.tree.map(lambda s, m: jnp.where(m, s, -jnp.inf), scores, mask)


def force(inputs: StepInputs) -> Scores:
    """FORCE: |theta0 * g(theta0 * mask)| over all weights, pruned ones included."""
    grads = inputs.gradient(apply_mask(inputs.params, inputs.mask))
    return saliency(inputs.params, grads), grads


def iter_snip(inputs: StepInputs) -> Scores:
    """Iterative SNIP: the FORCE score on kept weights; pruned ones never return."""
    scores, grads = force(inputs)
    return _only_kept(scores, inputs.mask), grads


def snip(inputs: StepInputs) -> Scores:
    """SNIP (Lee et al. 2019): |theta0 * g(theta0)|, one shot."""
    grads = inputs.gradient(inputs.params)
    return saliency(inputs.params, grads), grads


def grasp_it(inputs: StepInputs) -> Scores:
    """GraSP-it, the official code's gradient-norm variant: g(theta0 * mask)^2."""
    grads = inputs.gradient(apply_mask(inputs.params, inputs.mask))
    scores = jax.tree.map(lambda g: jnp.square(g).astype(jnp.float32), grads)
    return _only_kept(scores, inputs.mask), grads


def grasp(inputs: StepInputs) -> Scores:
    """GraSP (Wang et al. 2020) in keep-highest form: theta0 * (H g).

    GraSP removes the weights with the highest -theta * (H g), which is the
    same as keeping the highest theta * (H g). g is the gradient over the
    prunable weights only (the tangent is zero on the other leaves), and H g
    is a Hessian-vector product (the gradient of <grad, g>, the double backward
    of the official code), never a full Hessian.
    """
    grads = inputs.gradient(inputs.params)
    tangent = jax.tree.map(
        lambda g, m: g if jnp.ndim(m) > 0 else jnp.zeros_like(g), grads, inputs.mask
    )
    hg = inputs.hessian_vector(inputs.params, tangent)
    return jax.tree.map(lambda p, h: (p * h).astype(jnp.float32), inputs.params, hg), grads


def synflow(inputs: StepInputs) -> Scores:
    """SynFlow (Tanaka et al. 2020): |theta| * dR/d|theta| at |theta0| * mask."""
    abs_params = jax.tree.map(jnp.abs, inputs.params)
    grads = inputs.synflow_gradient(apply_mask(abs_params, inputs.mask))
    scores = jax.tree.map(lambda a, g: (a * g).astype(jnp.float32), abs_params, grads)
    return _only_kept(scores, inputs.mask), None


def magnitude(inputs: StepInputs) -> Scores:
    """Global magnitude pruning: |theta0|."""
    return jax.tree.map(lambda p: jnp.abs(p).astype(jnp.float32), inputs.params), None


def random(inputs: StepInputs) -> Scores:
    """Global random pruning: i.i.d. uniform scores."""
    leaves, treedef = jax.tree.flatten(inputs.params)
    keys = jax.random.split(inputs.key, len(leaves))
    return treedef.unflatten(
        [jax.random.uniform(k, jnp.shape(x)) for k, x in zip(keys, leaves)]
    ), None
