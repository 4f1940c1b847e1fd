"""ProsPr (Alizadeh et al., ICLR 2022, "Prospect pruning"): scores from meta-gradients.

A mask c multiplies the initial weights once, theta_0 = c * theta; the
network then takes M steps of SGD (learning rate eta, momentum mu, no weight
decay) on the scoring loss, every parameter moving (biases and BatchNorm's
scale and offset too), and the score of a weight is how much the loss after
those steps depends on keeping it:

    score_j = | d L(theta_M; B_meta) / d c_j |  at the current mask c,

which by the chain rule is |theta_j * dL(theta_M)/d theta_0,j|. The "full"
score differentiates through the M steps (second order, every
Hessian-vector term of the trajectory); the first-order score holds the
inner gradients constant, so d theta_M / d theta_0 is the identity and the
score is |theta_j * g(theta_M)|: SNIP's saliency taken after M steps.

The inner steps use fresh micro-batches (the official code's `prune()`
default): batch k for inner step k and batch M for the meta-loss, so a step
of the schedule takes M + 1 micro-batches; without new data all M + 1 use
the first. BatchNorm runs on batch statistics throughout, as the scoring
losses of `force_jax.core.losses` do.

Read from the official code (mil-ad/prospr, `prospr/prospr.py`); defaults
are its command line's: M = 3, eta = 0.1, mu = 0, full meta-gradients.
Where this module departs from it, on purpose:

- With momentum, PyTorch's SGD detaches the first momentum buffer, which
  cuts the first inner gradient's dependence on the mask out of every later
  step of the full meta-gradient. Here the trajectory is differentiated
  whole. The two agree with the default mu = 0.
- The official keep count is ceil((1 - s) N); here it is the library's one
  rule, floor((1 - s) N) (`force_jax.core.schedules.count_kept`).
- The official command line's `--new-data-in-inner` flag takes any value,
  "False" included, as true; here `new_data` is a boolean.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from force_jax.core import scores as scores_lib
from force_jax.core.masks import apply_mask

PyTree = Any


def _is_float(x: jax.Array) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


@dataclasses.dataclass(frozen=True)
class ProsPrScore:
    """The ProsPr score function with its options (hashable: equal options, equal programs).

    Attributes:
      inner_steps: M, the SGD steps taken before the meta-loss (>= 1).
      inner_lr: eta, the inner learning rate (> 0).
      inner_momentum: mu, heavy-ball momentum of the inner steps, in [0, 1).
      first_order: hold the inner gradients constant (the first-order
        meta-gradient) instead of differentiating through the steps.
      new_data: a fresh micro-batch for every inner step and for the
        meta-loss (M + 1 per pruning step); else the first for all.
    """

    inner_steps: int = 3
    inner_lr: float = 0.1
    inner_momentum: float = 0.0
    first_order: bool = False
    new_data: bool = True

    def __post_init__(self):
        check_options(self.inner_steps, self.inner_lr, self.inner_momentum)

    @property
    def batches_per_step(self) -> int:
        """Micro-batches one pruning step uses: M + 1 with new data, else 1."""
        return self.inner_steps + 1 if self.new_data else 1

    def trajectory(self, loss, theta: PyTree, batch) -> PyTree:
        """theta_M: M steps of SGD with momentum from `theta` (float leaves move)."""
        velocity = None
        for k in range(self.inner_steps):
            grads = scores_lib.float_grad(loss)(theta, batch(k if self.new_data else 0))
            if self.first_order:
                grads = jax.lax.stop_gradient(grads)
            if velocity is None or self.inner_momentum == 0.0:
                velocity = grads
            else:
                velocity = jax.tree.map(lambda v, g: self.inner_momentum * v + g, velocity,
                                        grads)
            theta = jax.tree.map(
                lambda t, v: t - self.inner_lr * v.astype(t.dtype) if _is_float(t) else t,
                theta, velocity)
        return theta

    def __call__(self, inputs: scores_lib.StepInputs) -> scores_lib.Scores:
        if inputs.loss is None or inputs.batch is None:
            raise ValueError("prospr scores with data: give it a loss_fn and data")
        meta_batch = inputs.batch(self.inner_steps if self.new_data else 0)
        theta0 = apply_mask(inputs.params, inputs.mask)
        if self.first_order:
            theta_m = self.trajectory(inputs.loss, theta0, inputs.batch)
            grads = scores_lib.float_grad(inputs.loss)(theta_m, meta_batch)
        else:
            grads = scores_lib.float_grad(
                lambda t: inputs.loss(self.trajectory(inputs.loss, t, inputs.batch), meta_batch)
            )(theta0)
        return scores_lib.saliency(inputs.params, grads), None


def check_options(inner_steps: int, inner_lr: float, inner_momentum: float) -> None:
    """Rejects ProsPr options out of range, naming the option.

    Args:
      inner_steps: M.
      inner_lr: eta.
      inner_momentum: mu.

    Raises:
      ValueError: for M < 1 or not an integer, eta <= 0 or not finite, mu
        outside [0, 1).
    """
    if isinstance(inner_steps, bool) or int(inner_steps) != inner_steps or inner_steps < 1:
        raise ValueError(f"inner_steps={inner_steps!r}: ProsPr takes an integer >= 1 of "
                         "SGD steps before its meta-loss (the official default is 3)")
    if not (float(inner_lr) > 0.0 and float(inner_lr) < float("inf")):
        raise ValueError(f"inner_lr={inner_lr!r}: ProsPr's inner learning rate must be a "
                         "finite number > 0 (the official default is 0.1)")
    if not 0.0 <= float(inner_momentum) < 1.0:
        raise ValueError(f"inner_momentum={inner_momentum!r}: must be in [0, 1) (the "
                         "official default is 0)")
