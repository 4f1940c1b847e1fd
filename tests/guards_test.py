"""The per-layer floor (force_jax.core.guards): hand cases, jit, records, a real run."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SHARED_TFDS, init_mlp, mlp_loss

import force_jax as fj
from force_jax.config import pruning_run, setup, validate
from force_jax.core import guards, methods
from force_jax.errors import ConfigError

BIG = np.finfo(np.float32).max


class FloorScoresTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_each_layer_keeps_its_floor_and_the_rest_goes_to_the_global_top(self):
        scores = {"a": jnp.array([[9.0, 8.0], [7.0, 6.0]]),  # the 4 best scores overall
                  "b": jnp.array([0.1, 0.3, 0.2, 0.0]),
                  "bias": jnp.array([5.0])}
        mask = {"a": jnp.ones((2, 2), bool), "b": jnp.ones((4,), bool), "bias": jnp.array(True)}
        floored = self.variant(lambda s, m: guards.floor_scores(s, m, 2))(scores, mask)
        # b's two highest (0.3 and 0.2) are raised above everything; a's two highest too.
        np.testing.assert_array_equal(floored["a"], [[BIG, BIG], [7.0, 6.0]])
        np.testing.assert_array_equal(floored["b"], np.float32([0.1, BIG, BIG, 0.0]))
        np.testing.assert_array_equal(floored["bias"], [5.0])  # not prunable: unchanged
        kept = fj.masks.topk_mask(floored, mask, 5)
        np.testing.assert_array_equal(kept["a"], [[True, True], [True, False]])
        np.testing.assert_array_equal(kept["b"], [False, True, True, False])
        # Without the floor the global top 5 takes one weight of b.
        np.testing.assert_array_equal(fj.masks.topk_mask(scores, mask, 5)["b"],
                                      [False, True, False, False])

    @chex.variants(with_jit=True, without_jit=True)
    def test_a_weight_the_method_never_lets_back_stays_out(self):
        scores = {"w": jnp.array([3.0, -jnp.inf, -jnp.inf, 1.0, -jnp.inf])}
        mask = {"w": jnp.array([True, False, False, True, False])}
        floored = self.variant(lambda s, m: guards.floor_scores(s, m, 4))(scores, mask)
        np.testing.assert_array_equal(floored["w"], [BIG, -np.inf, -np.inf, BIG, -np.inf])
        # A floor larger than the layer is capped at its size.
        whole = guards.floor_scores({"w": jnp.arange(3.0)}, {"w": jnp.ones(3, bool)}, 10)
        np.testing.assert_array_equal(whole["w"], [BIG] * 3)


def test_the_floor_is_a_method_record_and_zero_is_the_method():
    assert guards.layer_floor("force", 0) == methods.get("force")
    floored = guards.layer_floor("force", 8)
    assert floored.name == "force:floor8" and floored == guards.layer_floor(methods.get("force"), 8)
    assert floored != guards.layer_floor("force", 9)
    assert guards.layer_floor("force", np.int64(8)) == floored  # numpy integers too
    assert floored.reads_data() and floored.revives and floored.progressive
    for bad in (-1, 2.5, True, "8"):
        with pytest.raises(ValueError, match="floor must be an integer >= 0"):
            guards.layer_floor("force", bad)


def test_prune_with_a_floor_keeps_it_at_every_step_and_without_it_is_unchanged():
    params = init_mlp(jax.random.key(0))  # w1: 2048 weights, w2: 320
    kx, ky = jax.random.split(jax.random.key(1))
    pool = {"image": jax.random.normal(kx, (128, 64)),
            "label": jax.random.randint(ky, (128,), 0, 10)}
    common = dict(sparsity=0.99, steps=6, batch_size=32, key=jax.random.key(2),
                  on_collapse="ignore")
    _, history = fj.prune(mlp_loss, params, pool, method=guards.layer_floor("force", 10),
                          **common)
    assert history.layer_kept.min() >= 10 and history.kept[-1] == 23
    np.testing.assert_array_equal(history.layer_kept.sum(axis=1), history.kept)
    plain, plain_history = fj.prune(mlp_loss, params, pool, method="force", **common)
    zero, zero_history = fj.prune(mlp_loss, params, pool, method=guards.layer_floor("force", 0),
                                  **common)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(zero)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(plain_history.layer_kept, zero_history.layer_kept)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_TFDS.is_dir(), reason="no shared TFDS folder")
def test_config_layer_floor_prunes_lenet5_with_the_floor_and_refuses_one_too_big():
    from train_test import tiny_config

    config = tiny_config(**{"prune.sparsity": 0.999, "prune.layer_floor": 50})
    validate.validate_config(config)
    exp = setup.experiment(config)
    _, history = pruning_run.prune_at_init(config, exp.model, exp.variables, exp.prune_key)
    assert history.kept[-1] == 430 and history.layer_kept.min() >= 50  # 4 layers x 50 of 430
    config.prune.layer_floor = 200
    with pytest.raises(ConfigError, match=r"config.prune.layer_floor=200 asks 800 weights over "
                                          r"4 prunable layers.*keeps 430.*layer_floor=107"):
        pruning_run.prune_at_init(config, exp.model, exp.variables, exp.prune_key)
    config.prune.layer_floor = -1
    with pytest.raises(ConfigError, match="config.prune.layer_floor=-1: expected an integer >= 0"):
        validate.validate_config(config)
