"""NTK-SAP (Wang et al., ICLR 2023): data-free scores from the network's output under noise.

At every step of a multi-shot schedule (like SynFlow's), with the current
mask c and for each of R samples r:

1. the prunable weights are drawn afresh from the network's own
   initialiser, w_r (the other parameters stay at theta_0);
2. a noise input x_r ~ N(0, 1) of `noise_batch` examples, and a
   perturbation delta_r ~ N(0, epsilon^2) of every prunable weight;
3. the output gap J_r(c) = sum_n || f(x_rn; c * w_r) - f(x_rn; c * (w_r + delta_r)) ||^2,
   a finite-difference proxy of the trace of the network's NTK, with
   BatchNorm on the statistics of x_r in the unperturbed network, held
   fixed and shared by both (the probe's business: `force_jax.core.losses.
   network_probe` for a Flax Linen model).

The score of a kept weight is | sum_r dJ_r/dc_j |; pruned weights never come
back (they score -inf here, 0 in the official code, whose `<=` threshold
keeps them out). The mask is then applied to the original theta_0.

Read from the official code (YiteWang/NTK-SAP, `Pruners/pruners.py`); the
defaults are its CIFAR-10 recipe (`scripts/run.sh`): epsilon 0.01, R = 5,
20 iterations of the exponential schedule, a noise batch of 100 (its pruning
set of 10 examples per class). Where this module departs from it, on purpose:

- The official code inherits Synaptic-Flow's no-op `shuffle` (it permutes a
  copy and never writes it back) and its `invert` as 1/score (which turns
  the zero scores of pruned weights into NaN and so brings them back). The
  library's own checks apply instead (`force_jax.core.sanity`): a real
  shuffle, and inversion as the negated score over the kept weights.
- Its global threshold prunes every weight tied with the k-th score, and
  every kept weight whose score is exactly 0, so the count can overshoot;
  here each step keeps exactly its count (ties to the lower index).
- With its default `--prune-train-mode False` the very first sample skips
  the BatchNorm calibration (mean 0, variance 1); here every sample
  calibrates, as the recipe's `--prune-train-mode True` does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from force_jax.core import masks as masks_lib
from force_jax.core import scores as scores_lib

PyTree = Any


@dataclasses.dataclass(frozen=True)
class NtkSapScore:
    """The NTK-SAP score function with its options (hashable: equal options, equal programs).

    Attributes:
      epsilon: the standard deviation of the weight perturbation (> 0).
      samples: R, the weight, noise and perturbation draws per step (>= 1).
      noise_batch: examples in each noise input (>= 1).
    """

    epsilon: float = 0.01
    samples: int = 5
    noise_batch: int = 100

    def __post_init__(self):
        check_options(self.epsilon, self.samples, self.noise_batch)

    def draws(self, probe: scores_lib.Probe, params: PyTree, mask: PyTree,
              key: jax.Array) -> tuple[list, list, jax.Array]:
        """One sample's draws: fresh weights, their perturbation and the noise input.

        Args:
          probe: the network's probe.
          params: theta_0 (its non-prunable leaves are kept).
          mask: the current mask (its full-shape leaves are the prunable ones).
          key: the sample's key (`mask_gradient` gives sample r fold_in(key, r)).

        Returns:
          (weights, deltas, noise): the params' leaves with the prunable ones
          drawn afresh by probe.init, epsilon * N(0, 1) per prunable leaf
          (None elsewhere), and N(0, 1) noise of (noise_batch, *input_shape).
        """
        leaves = jax.tree.leaves(params)
        flags = [masks_lib.is_prunable_leaf(m) for m in jax.tree.leaves(mask)]
        k_init, k_noise, k_delta = jax.random.split(key, 3)
        fresh = jax.tree.leaves(probe.init(k_init))
        drawn = [w if f else p for w, p, f in zip(fresh, leaves, flags)]
        delta_keys = iter(jax.random.split(k_delta, max(1, sum(flags))))
        deltas = [self.epsilon * jax.random.normal(next(delta_keys), jnp.shape(w), jnp.float32)
                  if f else None for w, f in zip(drawn, flags)]
        noise = jax.random.normal(k_noise, (self.noise_batch, *probe.input_shape), jnp.float32)
        return drawn, deltas, noise

    def mask_gradient(self, probe: scores_lib.Probe, params: PyTree, mask: PyTree,
                      key: jax.Array) -> list[jax.Array]:
        """sum_r dJ_r/dc over the R samples, one array per prunable leaf (tree order).

        Args:
          probe: the network's `force_jax.core.scores.Probe`.
          params: theta_0 (its non-prunable leaves are used as they are).
          mask: the current mask.
          key: this step's key; sample r uses fold_in(key, r).

        Returns:
          float32 arrays, one per prunable leaf.
        """
        treedef = jax.tree.structure(params)
        flags = [masks_lib.is_prunable_leaf(m) for m in jax.tree.leaves(mask)]
        masks = [m.astype(jnp.float32) for m, f in zip(jax.tree.leaves(mask), flags) if f]

        def one(key):
            drawn, deltas, noise = self.draws(probe, params, mask, key)

            def gap(cs):
                it_o, it_p = iter(cs), iter(cs)
                orig = [w * next(it_o).astype(w.dtype) if f else w for w, f in zip(drawn, flags)]
                pert = [(w + d.astype(w.dtype)) * next(it_p).astype(w.dtype) if f else w
                        for w, d, f in zip(drawn, deltas, flags)]
                return probe.gap(treedef.unflatten(orig), treedef.unflatten(pert), noise)

            return jax.grad(gap)(masks)

        def body(total, r):
            return [t + g for t, g in zip(total, one(jax.random.fold_in(key, r)))], None

        total, _ = jax.lax.scan(body, [jnp.zeros_like(c) for c in masks],
                                jnp.arange(self.samples))
        return total

    def __call__(self, inputs: scores_lib.StepInputs) -> scores_lib.Scores:
        if inputs.probe is None:
            raise ValueError("ntk_sap runs the network on noise: give it a probe "
                             "(force_jax.network_probe(model, variables, input_shape))")
        grads = iter(self.mask_gradient(inputs.probe, inputs.params, inputs.mask, inputs.key))
        mask_leaves, treedef = jax.tree.flatten(inputs.mask)
        scores = treedef.unflatten([jnp.abs(next(grads)) if masks_lib.is_prunable_leaf(m)
                                    else jnp.zeros((), jnp.float32) for m in mask_leaves])
        return scores_lib.only_kept(scores, inputs.mask), None


def check_options(epsilon: float, samples: int, noise_batch: int) -> None:
    """Rejects NTK-SAP options out of range, naming the option.

    Args:
      epsilon: the perturbation's standard deviation.
      samples: R.
      noise_batch: examples per noise input.

    Raises:
      ValueError: for epsilon <= 0 or not finite, R or noise_batch < 1.
    """
    if not (float(epsilon) > 0.0 and float(epsilon) < float("inf")):
        raise ValueError(f"epsilon={epsilon!r}: NTK-SAP's perturbation must be a finite "
                         "number > 0 (the official default is 0.01)")
    for name, value in (("samples", samples), ("noise_batch", noise_batch)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name}={value!r}: must be an integer >= 1")
