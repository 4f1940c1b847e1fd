"""Labels outside [0, num_classes) give NaN losses, so pruning and training stop, not guess."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import force_jax as fj
from force_jax.core import losses
from force_jax.training import steps

BAD_LABELS = [10, -1, 1000]


class TinyClassifier(nn.Module):
    """16 inputs, 10 classes: the smallest model with a `train` argument."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        del train
        return nn.Dense(10)(nn.relu(nn.Dense(8)(x.reshape(x.shape[0], -1))))


@pytest.fixture(scope="module")
def model_and_variables():
    model = TinyClassifier()
    return model, model.init(jax.random.key(0), jnp.zeros((1, 4, 4)))


def images(n: int = 32) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 4, 4)).astype(np.float32)


@pytest.mark.parametrize("kind", losses.SCORING_LOSSES)
def test_scoring_loss_and_its_gradient_are_nan_for_a_label_out_of_range(kind):
    logits = jnp.asarray(np.random.default_rng(1).normal(size=(4, 10)), jnp.float32)

    def loss(x, labels):
        return losses.logits_loss(x, labels, kind)

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    value, grad = value_and_grad(logits, jnp.array([0, 3, 9, 9]))
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    for labels in ([0, 3, bad, 9] for bad in BAD_LABELS):
        value, grad = value_and_grad(logits, jnp.array(labels))
        # Every logit's gradient, not only the true classes': all weights' scores are NaN.
        assert np.isnan(value) and np.all(np.isnan(grad)), labels
    value, grad = value_and_grad(logits, jnp.full(4, 10))  # gathers nothing at all
    assert np.isnan(value) and np.all(np.isnan(grad))


@pytest.mark.parametrize("kind", [losses.SCORING_LOSSES[0], *(
    pytest.param(k, marks=pytest.mark.slow) for k in losses.SCORING_LOSSES[1:])])
def test_prune_stops_on_labels_out_of_range_and_names_them(model_and_variables, kind):
    model, variables = model_and_variables
    loss_fn = fj.classification_loss(model, variables, loss=kind)
    x = images()

    def prune(labels):
        return fj.prune(loss_fn, variables["params"], {"image": x, "label": labels},
                        method="snip", sparsity=0.9, batch_size=32, key=jax.random.key(0))

    for bad in BAD_LABELS:
        with pytest.raises(ValueError, match=r"step 1 of 1.*labels outside \[0, num_classes\)"):
            prune(np.full(32, bad, np.int32))
    _, history = prune(np.arange(32, dtype=np.int32) % 10)
    assert history.objective[-1] > 0


def test_train_and_eval_losses_are_nan_for_a_label_out_of_range(model_and_variables):
    model, variables = model_and_variables
    state = steps.create_train_state(model, variables, fj.init_mask(variables["params"]),
                                     optax.sgd(0.1))
    train_step, eval_step = jax.jit(steps.train_step), jax.jit(steps.eval_step)
    x, good = images(8), np.arange(8, dtype=np.int32)
    weight = np.ones(8, np.float32)
    assert np.isfinite(train_step(state, {"image": x, "label": good})[1]["loss"])
    assert np.isfinite(eval_step(state, {"image": x, "label": good, "mask": weight})["loss"])
    for bad in BAD_LABELS:
        labels = good.copy()
        labels[3] = bad
        assert np.isnan(train_step(state, {"image": x, "label": labels})[1]["loss"]), bad
        assert np.isnan(eval_step(state, {"image": x, "label": labels, "mask": weight})["loss"])
        # A padding example's label is filler, not checked.
        padded = {"image": x, "label": labels, "mask": np.where(np.arange(8) == 3, 0.0, 1.0)}
        assert np.isfinite(eval_step(state, padded)["loss"])
