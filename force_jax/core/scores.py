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
      loss: loss_fn(params, batch) -> scalar, the scoring loss on one batch
        (None without data): for a method that uses this step's micro-batches
        one by one instead of averaging them (ProsPr's inner steps).
      batch: i -> this step's micro-batch i (None without data).
      count: this step's keep count (a scalar, or (L,) per-layer counts),
        for a method that builds its mask up to a count (PHEW).
      probe: what a data-free method knows of the network beyond its
        weights (a `Probe`: NTK-SAP runs it on noise, PHEW walks its layers
        in order).
    """

    params: PyTree
    mask: PyTree
    gradient: Gradient
    hessian_vector: Callable[[PyTree, PyTree], PyTree]
    synflow_gradient: Gradient
    key: jax.Array
    loss: Callable[[PyTree, Any], jax.Array] | None = None
    batch: Callable[[int], Any] | None = None
    count: jax.Array | None = None
    probe: Probe | None = None


Scores = tuple[PyTree, PyTree | None]


class Probe(NamedTuple):
    """What a data-free method may know of the network beyond its weights.

    Built for a Flax Linen model by `force_jax.core.losses.network_probe`.

    Attributes:
      gap: gap(weights, perturbed, noise) -> the scalar
        sum_n ||f(noise_n; weights) - f(noise_n; perturbed)||^2, BatchNorm on
        the statistics of `noise` in the unperturbed network for both
        (NTK-SAP's output gap).
      init: key -> a fresh params pytree from the model's initialiser.
      input_shape: the shape of one input example, e.g. (28, 28, 1).
      layer_order: the prunable leaves' names (`masks.path_name`) in the
        order the network first runs them, input to output (PHEW's walks).
    """

    gap: Callable[[PyTree, PyTree, jax.Array], jax.Array]
    init: Callable[[jax.Array], PyTree]
    input_shape: tuple[int, ...]
    layer_order: tuple[str, ...] = ()


def float_grad(fn: Callable[..., jax.Array]) -> Callable[..., PyTree]:
    """`jax.grad` over the float leaves of the first argument; other leaves get zeros.

    An integer or boolean leaf of params (a lookup table, a counter) is no
    weight and has no gradient: it is held fixed, and its "gradient" is a
    float32 zero array of its shape, so scores built from it are zero.

    Args:
      fn: fn(params, *args) -> scalar.

    Returns:
      grad_fn(params, *args) -> a pytree of float gradients shaped like params.
    """

    def grad_fn(params, *args):
        leaves, treedef = jax.tree.flatten(params)
        floats = [jnp.issubdtype(jnp.result_type(x), jnp.inexact) for x in leaves]
        if all(floats):
            return jax.grad(fn)(params, *args)

        def of_floats(float_leaves):
            it = iter(float_leaves)
            full = [next(it) if f else x for x, f in zip(leaves, floats)]
            return fn(treedef.unflatten(full), *args)

        grads = iter(jax.grad(of_floats)([x for x, f in zip(leaves, floats) if f]))
        return treedef.unflatten([next(grads) if f else jnp.zeros(jnp.shape(x), jnp.float32)
                                  for x, f in zip(leaves, floats)])

    return grad_fn


def saliency(params: PyTree, grads: PyTree) -> PyTree:
    """Connection sensitivity |theta * g|, leaf by leaf."""
    return jax.tree.map(lambda p, g: jnp.abs(p * g).astype(jnp.float32), params, grads)


def only_kept(scores: PyTree, mask: PyTree) -> PyTree:
    """Pruned weights get -inf so the global top-k never brings them back."""
    return jax.tree.map(lambda s, m: jnp.where(m, s, -jnp.inf), scores, mask)


def force(inputs: StepInputs) -> Scores:
    """FORCE: |theta0 * g(theta0 * mask)| over all weights, pruned ones included."""
    grads = inputs.gradient(apply_mask(inputs.params, inputs.mask))
    return saliency(inputs.params, grads), grads


def iter_snip(inputs: StepInputs) -> Scores:
    """Iterative SNIP: the FORCE score on kept weights; pruned ones never return."""
    scores, grads = force(inputs)
    return only_kept(scores, inputs.mask), grads


def snip(inputs: StepInputs) -> Scores:
    """SNIP (Lee et al. 2019): |theta0 * g(theta0)|, one shot."""
    grads = inputs.gradient(inputs.params)
    return saliency(inputs.params, grads), grads


def grasp_it(inputs: StepInputs) -> Scores:
    """GraSP-it, the official code's gradient-norm variant: g(theta0 * mask)^2."""
    grads = inputs.gradient(apply_mask(inputs.params, inputs.mask))
    scores = jax.tree.map(lambda g: jnp.square(g).astype(jnp.float32), grads)
    return only_kept(scores, inputs.mask), grads


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
    return only_kept(scores, inputs.mask), None


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
