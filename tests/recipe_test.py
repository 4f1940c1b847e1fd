"""A pruning run's settings decided in one function: `force_jax.core.recipe.from_settings`."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import mlp_loss

import force_jax as fj
from force_jax.core import recipe

CLI = recipe.Spelling("config.prune.", "--config.prune.")


def test_defaults_come_from_the_method():
    run = recipe.from_settings({"method": "force", "sparsity": 0.99})
    assert (run.method.name, run.steps, run.schedule, run.batches_per_step) == (
        "force", 60, "exp", 1)
    assert run.allocation is None and run.data_check is None and run.mask_shuffle is None
    assert recipe.from_settings({"method": "synflow", "sparsity": 0.9, "steps": None}).steps == 100
    # ProsPr uses its micro-batches one by one: its inner steps and the meta-step.
    prospr = recipe.from_settings({"method": "prospr", "sparsity": 0.9,
                                   "prospr": {"inner_steps": 2}})
    assert prospr.batches_per_step == 3 and prospr.method.score.inner_steps == 2


def test_the_sanity_checks_and_the_floor_compose_onto_the_method():
    run = recipe.from_settings({"method": "iter_snip", "sparsity": 0.9, "ablation": "invert",
                                "layer_floor": 5})
    assert run.method.name == "iter_snip:inverted:floor5" and run.layer_floor == 5
    labels = recipe.from_settings({"method": "force", "sparsity": 0.9,
                                   "ablation": "random_labels"})
    assert labels.data_check == "random_labels" and labels.method.name == "force"
    taps = recipe.from_settings({"method": "snip", "sparsity": 0.9, "ablation": "shuffle_taps"})
    assert taps.mask_shuffle == {"per_tap": True} and taps.method.name == "snip"


def test_allocations_are_parsed_once():
    def allocation(**settings):
        return recipe.from_settings({"method": "snip", "sparsity": 0.9, **settings}).allocation

    assert allocation() is None
    assert allocation(scope="layerwise") == "uniform"
    assert allocation(scope="layerwise", allocation="erk") == "erk"
    assert allocation(scope="layerwise", allocation="conv_0/kernel:0.5, dense/kernel:1") == {
        "conv_0/kernel": 0.5, "dense/kernel": 1.0}
    assert allocation(scope="layerwise", allocation={"w1": 0.2}) == {"w1": 0.2}


@pytest.mark.parametrize("settings, message", [
    ({"sparsity": 1.0}, r"^prune.sparsity=1.0: expected a fraction removed in \[0, 1\)$"),
    ({"sparsity": True}, r"^prune.sparsity=True: expected"),
    ({"method": "snip", "steps": 5},
     r"^prune.steps=5, but snip prunes in one shot: set prune.steps=1$"),
    ({"method": "synflow", "ablation": "random_pixels"},
     r"^prune.ablation='random_pixels' corrupts the scoring data, but synflow reads none"),
    ({"method": "prospr", "batches_per_step": 2}, r"^prune.batches_per_step=2, but prospr uses 4"),
    ({"prospr": {"inner_lr": 0.5}}, r"^prune.prospr.inner_lr=0.5 is an option of prospr, but the "
                                    r"method is force: leave it at 0.1 or set prune.method=prospr"),
    ({"allocation": "erk"}, r"^prune.allocation='erk' needs prune.scope=layerwise"),
    ({"scope": "local"}, r"^prune.scope='local': expected one of global, layerwise$"),
    ({"scope": "layerwise", "allocation": "conv:2"}, r"'conv:2' is not$"),
])
def test_each_wrong_setting_is_named(settings, message):
    with pytest.raises(ValueError, match=message):
        recipe.from_settings({"method": "force", "sparsity": 0.9, **settings})


def test_a_command_spells_the_keys_and_flags_its_own_way():
    with pytest.raises(ValueError, match=r"^config.prune.steps=5, but snip prunes in one shot: "
                                         r"set --config.prune.steps=1$"):
        recipe.from_settings({"method": "snip", "sparsity": 0.9, "steps": 5}, spelling=CLI)


def test_the_sparsity_must_keep_a_weight_and_the_floors_must_fit():
    sizes = [500, 25_000, 400_000, 5_000]  # LeNet-5's prunable layers
    assert recipe.largest_sparsity(430_500) == 0.9999976
    assert recipe.final_keep_count(0.9999976, 430_500) == 1
    assert recipe.final_keep_count(0.9999977, 430_500) == 0
    assert recipe.final_keep_count(0.9, 430_500) == 43_050  # 1 - 0.9 is 0.0999...98 in float64
    recipe.from_settings({"method": "force", "sparsity": 0.9999976}, layer_sizes=sizes)
    with pytest.raises(ValueError, match=r"^prune.sparsity=0.9999977 keeps no weight: .* = 0 of "
                                         r"the 430,500 prunable weights of lenet5; use at most "
                                         r"0.9999976, which keeps 1$"):
        recipe.from_settings({"method": "force", "sparsity": 0.9999977}, layer_sizes=sizes,
                             model_name="lenet5")
    # 0.999 keeps 430; floors of 107 over 4 layers fit (428), of 108 do not (432).
    recipe.from_settings({"method": "force", "sparsity": 0.999, "layer_floor": 107},
                         layer_sizes=sizes)
    with pytest.raises(ValueError, match=r"layer_floor=108 asks 432 weights over 4 prunable "
                                         r"layers, but prune.sparsity=0.999 keeps 430: use at "
                                         r"most prune.layer_floor=107"):
        recipe.from_settings({"method": "force", "sparsity": 0.999, "layer_floor": 108},
                             layer_sizes=sizes)


def test_prune_with_a_recipe_is_prune_with_its_arguments(tiny):
    loss_fn, params, data = tiny
    run = fj.recipe.from_settings({"method": "iter_snip", "sparsity": 0.95, "steps": 3,
                                   "batch_size": 32, "scope": "layerwise", "allocation": "erk"})
    key = jax.random.key(4)
    got, _ = fj.prune(loss_fn, params, data, key=key, **run.prune_arguments())
    want, _ = fj.prune(mlp_loss, params, data, method="iter_snip", sparsity=0.95, steps=3,
                       batch_size=32, scope="layerwise", allocation="erk", key=key)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(a, b)
