"""Arms of a sweep (config.sweep.arms): named partial configs beside the methods, such as RigL
from ERK densities, gradual pruning from dense or lottery rounds; their cells' configs, their
checks before any cell runs, and a sweep of them end to end."""

from __future__ import annotations

import csv
import json
import os

import ml_collections
import pytest
from sweep_test import needs_real_data, tiny_sweep_config

from configs import mask_changes_fashion_mnist
from force_jax.commands import sweep
from force_jax.config import sweep_grid
from force_jax.core import schedules
from force_jax.errors import ConfigError

ARMS = {
    "rigl_erk": {"prune": {"method": "random", "scope": "layerwise", "allocation": "erk"},
                 "train": {"mask_changes": {"method": "rigl", "every": 2, "end": 4}}},
    "gmp": {"prune": {"method": "random", "sparsity": 0.0},
            "train": {"mask_changes": {"method": "gmp", "every": 2, "start": 2, "end": 4}}},
    "one_shot": {"prune": {"method": "magnitude"}, "lottery": {"rounds": 1, "rewind_step": -1}},
}


def arms_config(**arms) -> ml_collections.ConfigDict:
    config = tiny_sweep_config()
    config.sweep.arms = ml_collections.ConfigDict(arms or ARMS)
    config.sweep.methods = ("snip", *config.sweep.arms)
    config.sweep.sparsities = (0.9,)
    return config


def test_an_arm_s_cell_has_its_method_its_settings_and_the_cell_s_sparsity():
    config = arms_config()
    sweep_grid.validate_grid(config.sweep)
    rigl = sweep_grid.cell_config(config, "rigl_erk", 0.9, 1)
    assert (rigl.prune.method, rigl.prune.sparsity, rigl.seed) == ("random", 0.9, 1)
    assert (rigl.prune.scope, rigl.prune.allocation) == ("layerwise", "erk")
    assert (rigl.train.mask_changes.method, rigl.train.mask_changes.every) == ("rigl", 2)
    assert rigl.prune.steps is None  # random prunes in one shot, as its own cells do
    gmp = sweep_grid.cell_config(config, "gmp", 0.9, 0)  # from dense to the cell's sparsity
    assert (gmp.prune.sparsity, gmp.train.mask_changes.sparsity) == (0.0, 0.9)
    one_shot = sweep_grid.cell_config(config, "one_shot", 0.9, 0)
    assert (one_shot.prune.method, one_shot.lottery.rounds) == ("magnitude", 1)
    snip = sweep_grid.cell_config(config, "snip", 0.9, 0)  # a method beside arms is untouched
    assert snip.train.mask_changes.method == "none" and snip.lottery.rounds == 0
    assert sweep_grid.cell_name("rigl_erk", 0.9, 1) == "rigl_erk_s0.9_seed1"


@pytest.mark.parametrize("arms, methods, message", [
    ({}, ("snip", "rigl"), r"config.sweep.methods has unknown \['rigl'\]"),
    ({"force": {"prune": {"method": "snip"}}}, ("force",),
     r"config.sweep.arms.force: an arm may not take a method's name"),
    ({"rigl": {"train": {"mask_changes": {"method": "rigl"}}}}, ("rigl",),
     r"config.sweep.arms.rigl.prune.method=None: expected the method"),
    ({"rigl": {"prune": {"method": "rigl"}}}, ("rigl",),
     r"config.sweep.arms.rigl.prune.method='rigl': expected the method"),
])
def test_a_bad_arm_is_refused_naming_its_key(arms, methods, message):
    config = tiny_sweep_config()
    config.sweep.arms = ml_collections.ConfigDict(arms)
    config.sweep.methods = methods
    with pytest.raises(ConfigError, match=message):
        sweep_grid.validate_grid(config.sweep)


def test_an_arm_key_the_config_lacks_names_the_arm():
    config = arms_config(rigl={"prune": {"method": "random"}, "train": {"rigl_every": 2}})
    with pytest.raises(ConfigError, match=r"config.sweep.arms.rigl.train.rigl_every=2: the "
                                          "config has no key train.rigl_every"):
        sweep_grid.cell_config(config, "rigl", 0.9, 0)


@needs_real_data
@pytest.mark.parametrize("arm, message", [
    ({"prune": {"method": "force"}, "train": {"mask_changes": {"method": "rigl", "every": 2}}},
     None),  # 3/4 of 6 steps: end 4, within the run
    ({"prune": {"method": "force"},
      "train": {"mask_changes": {"method": "rigl", "every": 2, "end": 6}}},
     r"mask_changes.end=6: expected a step before the run's end \(6 steps\)"),
    ({"prune": {"method": "magnitude"}, "lottery": {"rounds": 2, "rewind_step": 6}},
     r"lottery.rewind_step=6: expected a step before the end of training \(6 steps\)"),
    ({"prune": {"method": "magnitude"}, "lottery": {"rounds": 2},
      "train": {"mask_changes": {"method": "set"}}},
     r"a lottery run trains each round at a fixed mask"),
])
def test_an_arm_that_cannot_train_is_refused_before_any_cell_runs(tmp_path, arm, message):
    config = arms_config(arm=arm)
    if message is None:
        sweep.validate_cells(config)
        return
    with pytest.raises(ConfigError, match=message):
        sweep.run_sweep(config, str(tmp_path / "sweep"))
    assert not (tmp_path / "sweep").exists()


def test_the_comparison_config_validates_and_reuses_force_s_cells():
    config = mask_changes_fashion_mnist.get_config()
    sweep_grid.validate_grid(config.sweep)
    force = sweep_grid.cell_config(config, "force", 0.99, 0)
    rigl = sweep_grid.cell_config(config, "rigl_force", 0.99, 0)
    assert (force.prune.method, rigl.prune.method) == ("force", "force")
    assert rigl.prune.steps == force.prune.steps  # the same FORCE mask to start RigL from
    lottery = sweep_grid.cell_config(config, "lottery", 0.995, 2)
    assert (lottery.lottery.rounds, lottery.lottery.rewind_step) == (6, 20)


@pytest.mark.slow
@needs_real_data
def test_a_sweep_of_arms_trains_each_and_reports_its_final_density(tmp_path):
    config = arms_config()
    config.sweep.methods = tuple(ARMS)
    sweep.run_sweep(config, str(tmp_path))
    with open(tmp_path / "results.csv") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"rigl_erk", "gmp", "one_shot"}
    assert not any(r["error"] for r in rows.values())
    n = int(rows["gmp"]["kept"])  # gradual pruning started dense: all prunable weights
    kept = int(schedules.count_kept(0.1, n))
    for name, row in rows.items():  # every arm ends at the cell's keep count exactly
        assert round(float(row["final_density"]) * n) == kept, name
    assert int(rows["rigl_erk"]["kept"]) == kept < n
    one_shot = tmp_path / "cells" / "one_shot_s0.9_seed0"
    assert {"round_0", "round_1", "metrics.json", "lottery.json"} <= set(os.listdir(one_shot))
    last = json.loads((one_shot / "round_1" / "metrics.json").read_text())
    assert json.loads((one_shot / "metrics.json").read_text()) == last
    assert int(rows["one_shot"]["kept"]) == kept
    before = (tmp_path / "results.csv").read_text()
    sweep.run_sweep(config, str(tmp_path), train_fn=lambda *_: pytest.fail("cell rerun"))
    assert (tmp_path / "results.csv").read_text() == before
