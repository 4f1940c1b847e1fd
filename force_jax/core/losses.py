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

from force_jax.core import density
from force_jax.core import masks as masks_lib
from force_jax.core import scores as scores_lib

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


def _batch_norm_with(module: nn.BatchNorm, x: jax.Array, mean: jax.Array,
                     var: jax.Array) -> jax.Array:
    """What `module` computes on x when it normalises with these statistics."""
    axes = module.axis if isinstance(module.axis, tuple) else (module.axis,)
    features = tuple(a % x.ndim for a in axes)
    shape = tuple(x.shape[a] if a in features else 1 for a in range(x.ndim))
    y = (x - mean.reshape(shape)) * jax.lax.rsqrt(var.reshape(shape) + module.epsilon)
    params = module.variables.get("params", {})
    if module.use_scale:
        y = y * params["scale"].reshape(shape)
    if module.use_bias:
        y = y + params["bias"].reshape(shape)
    return y.astype(x.dtype)


def _batch_statistics(module: nn.BatchNorm, x: jax.Array) -> tuple[jax.Array, ...]:
    """(mean, biased variance, unbiased variance) of x over the module's reduction axes."""
    axes = module.axis if isinstance(module.axis, tuple) else (module.axis,)
    features = tuple(a % x.ndim for a in axes)
    reduce = tuple(a for a in range(x.ndim) if a not in features)
    n = 1
    for a in reduce:
        n *= x.shape[a]
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=reduce)
    var = jnp.mean(jnp.square(x32 - jnp.expand_dims(mean, reduce)), axis=reduce)
    return mean, var, var * (n / max(n - 1, 1))


def layer_order(model: nn.Module, variables: PyTree,
                input_shape: tuple[int, ...]) -> tuple[str, ...]:
    """The names of the params' leaves in the order the network first runs their modules.

    Args:
      model: a Flax Linen module called as `model.apply(vars, x, train=False)`.
      variables: its variables.
      input_shape: shape of one example.

    Returns:
      `masks.path_name`s of every params leaf, input to output (a leaf whose
      module never runs comes last, in name order).
    """
    entered: list[tuple[str, ...]] = []

    def record(next_fun, args, kwargs, context):
        path = tuple(context.module.path)
        if path not in entered:
            entered.append(path)
        return next_fun(*args, **kwargs)

    def run(params):
        with nn.intercept_methods(record):
            return model.apply({**variables, "params": params},
                               jnp.zeros((1, *input_shape), jnp.float32), train=False)

    jax.eval_shape(run, variables["params"])
    rank = {path: i for i, path in enumerate(entered)}
    flat, _ = jax.tree_util.tree_flatten_with_path(variables["params"])

    def when(path) -> tuple[int, list]:
        keys = tuple(str(getattr(k, "key", k)) for k in path[:-1])
        return (rank.get(keys, len(rank)), density.natural_key(masks_lib.path_name(path)))

    return tuple(masks_lib.path_name(path) for path, _ in sorted(flat, key=lambda t: when(t[0])))


def network_probe(model: nn.Module, variables: PyTree,
                  input_shape: tuple[int, ...]) -> scores_lib.Probe:
    """What the data-free methods NTK-SAP and PHEW need of a Flax Linen classifier.

    The output gap runs the network three times on the noise: a calibration
    pass at the unperturbed weights, BatchNorm on the batch's statistics,
    records each BatchNorm's batch mean and unbiased variance (what a PyTorch
    BatchNorm with momentum 1 stores, as the official code does); the
    unperturbed and the perturbed passes then normalise with those recorded
    statistics, held fixed (inference mode). Without BatchNorm the
    calibration pass does nothing and is skipped.

    Args:
      model: a Flax Linen module called as `model.apply(vars, x, train=...)`,
        its BatchNorms `flax.linen.BatchNorm`.
      variables: its variables; the probe's init draws fresh "params" with
        `model.init`.
      input_shape: shape of one example, e.g. (28, 28, 1).

    Returns:
      A `force_jax.core.scores.Probe` (its layer order from `layer_order`).
    """
    others = {name: value for name, value in variables.items() if name != "params"}
    has_batch_norm = "batch_stats" in others

    def run(params, noise, stats, mode):
        def intercept(next_fun, args, kwargs, context):
            module = context.module
            if not (isinstance(module, nn.BatchNorm) and context.method_name == "__call__"):
                return next_fun(*args, **kwargs)
            x = args[0]
            if mode == "calibrate":
                mean, biased, unbiased = jax.lax.stop_gradient(_batch_statistics(module, x))
                stats[module.path] = (mean, unbiased)
                return _batch_norm_with(module, x, mean, biased)
            mean, var = stats[module.path]
            return _batch_norm_with(module, x, mean, var)

        with nn.intercept_methods(intercept):
            return model.apply({**others, "params": params}, noise, train=False)

    def gap(weights: PyTree, perturbed: PyTree, noise: jax.Array) -> jax.Array:
        stats: dict = {}
        if has_batch_norm:
            run(weights, noise, stats, "calibrate")
        out = run(weights, noise, stats, "fixed").astype(jnp.float32)
        out_perturbed = run(perturbed, noise, stats, "fixed").astype(jnp.float32)
        return jnp.sum(jnp.square(out - out_perturbed))

    dummy = jnp.zeros((1, *input_shape), jnp.float32)

    def init(key: jax.Array) -> PyTree:
        return model.init(key, dummy, train=False)["params"]

    return scores_lib.Probe(gap=gap, init=init, input_shape=tuple(input_shape),
                            layer_order=layer_order(model, variables, input_shape))
