"""config.train.mask_changes end to end: LeNet-5 on Fashion-MNIST, its checks, its resume."""

from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np
import pytest
from conftest import SHARED_TFDS
from train_test import assert_pruned_weights_are_zero, final_state, tiny_config

from force_jax import optim
from force_jax.commands import train
from force_jax.core import masks
from force_jax.errors import ConfigError
from force_jax.runs import checkpoint

needs_real_data = pytest.mark.skipif(not SHARED_TFDS.is_dir(), reason="no shared TFDS folder")


def _kept_per_layer(mask):
    return [int(np.sum(m)) for m in jax.tree.leaves(mask) if masks.is_prunable_leaf(m)]


@pytest.mark.slow
@needs_real_data
def test_rigl_rewires_at_fixed_counts_and_resumes_bit_for_bit_around_an_update(tmp_path):
    # Updates at steps 0, 2 and 4 (end 4); checkpoints at 3 and 6. The resumed run restarts
    # from step 3: just after the update of step 2 and just before that of step 4.
    config = tiny_config(**{"prune.sparsity": 0.9, "train.mask_changes.method": "rigl",
                            "train.mask_changes.every": 2, "train.mask_changes.end": 4})
    full = str(tmp_path / "full")
    metrics = train.train_and_evaluate(config, full)
    assert np.isfinite(metrics["train_loss"])
    prune_record = json.loads((tmp_path / "full" / "prune.json").read_text())
    state, step = final_state(config, full)
    assert step == 6 and int(state.opt_state.count) == 6
    assert isinstance(state.opt_state, optim.ChangingMaskState)
    assert_pruned_weights_are_zero(state)
    mask = optim.mask_from_state(state.opt_state)
    assert sum(_kept_per_layer(mask)) == prune_record["report"]["kept"]
    assert [r["global_density"] for r in checkpoint.read_jsonl(
        os.path.join(full, "metrics.jsonl"))] == [pytest.approx(0.1, abs=1e-5)] * 2

    resumed = str(tmp_path / "resumed")
    shutil.copytree(full, resumed)
    shutil.rmtree(os.path.join(resumed, "checkpoints", "6"))
    again = train.train_and_evaluate(config, resumed)
    state_again, _ = final_state(config, resumed)
    jax.tree.map(np.testing.assert_array_equal, state_again.params, state.params)
    jax.tree.map(np.testing.assert_array_equal, state_again.opt_state, state.opt_state)
    assert again["test_accuracy"] == metrics["test_accuracy"]


@needs_real_data
@pytest.mark.parametrize("method, overrides", [
    pytest.param("gmp", {"prune.sparsity": 0.0, "train.mask_changes.sparsity": 0.9},
                 marks=pytest.mark.slow),
    pytest.param("set", {"prune.sparsity": 0.9}, marks=pytest.mark.slow),
])
def test_gradual_pruning_and_set_train_end_to_end(tmp_path, method, overrides):
    config = tiny_config(**{"train.mask_changes.method": method, "train.mask_changes.every": 2,
                            "train.mask_changes.end": 4, **overrides})
    metrics = train.train_and_evaluate(config, str(tmp_path))
    assert np.isfinite(metrics["train_loss"])
    state, _ = final_state(config, str(tmp_path))
    assert_pruned_weights_are_zero(state)
    mask = optim.mask_from_state(state.opt_state)
    n = masks.num_prunable(mask)
    assert int(masks.num_kept(mask)) == int(0.1 * n)
    densities = [r["global_density"] for r in checkpoint.read_jsonl(
        os.path.join(tmp_path, "metrics.jsonl"))]
    if method == "gmp":  # dense at step 0, pruned to 10 % by step 4
        assert densities[0] < 1 and densities[-1] == pytest.approx(int(0.1 * n) / n)
    # The mask training ended with, counted again: its kept weights and those on a path.
    assert metrics["final_kept"] == int(0.1 * n) and 0 < metrics["final_effective"] <= (
        metrics["final_kept"])


@pytest.mark.parametrize("overrides, message", [
    ({"train.mask_changes.method": "lth"}, r"mask_changes.method='lth': expected one of none"),
    ({"train.mask_changes.method": "rigl", "train.mask_changes.every": 0},
     r"mask_changes.every=0: expected an integer >= 1"),
    ({"train.mask_changes.method": "rigl", "train.mask_changes.drop_fraction": 1.5},
     r"mask_changes.drop_fraction=1.5: expected a fraction in \(0, 1\)"),
    ({"train.mask_changes.method": "rigl", "train.mask_changes.end": 6},
     r"mask_changes.end=6: expected a step before the run's end \(6 steps\)"),
    ({"train.mask_changes.method": "rigl", "prune.sparsity": 0.0},
     r"method=rigl rewires a sparse mask, but prune.sparsity=0 leaves it dense"),
    ({"train.mask_changes.method": "gmp", "train.mask_changes.sparsity": 0.5},
     r"mask_changes.sparsity=0.5: expected more than prune.sparsity=0.99"),
    ({"train.mask_changes.method": "gmp", "train.mask_changes.sparsity": 0.995,
      "train.mask_changes.every": 4, "train.mask_changes.end": 2},
     r"mask_changes.end=2: expected a multiple of mask_changes.every=4"),
    ({"train.mask_changes.method": "gmp", "train.mask_changes.sparsity": 0.995,
      "train.mask_changes.scope": "layerwise"},
     r"mask_changes.scope='layerwise': expected global when training starts from a pruned"),
])
def test_a_bad_mask_change_setting_fails_before_any_work(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train.train_and_evaluate(tiny_config(**overrides), str(tmp_path))
    assert not os.listdir(tmp_path)


@needs_real_data
def test_the_mask_training_ended_with_is_counted_again_where_it_changed(tmp_path):
    """metrics.json's final_kept / final_effective, and the results row that reads them."""
    from force_jax.config import pruning_run, setup, training_setup
    from force_jax.reports import sweep_cells
    from force_jax.runs import workdir

    rigl = tiny_config(**{"prune.sparsity": 0.9, "train.mask_changes.method": "rigl",
                          "train.mask_changes.every": 2, "train.mask_changes.end": 4})
    exp = setup.experiment(rigl)
    params = exp.variables["params"]
    # A mask that keeps one weight of the first layer only: no path to the output.
    first = min(k for k, v in params.items() if "kernel" in v)
    mask = jax.tree.map(lambda p: np.zeros(p.shape, bool) if p.ndim > 1 else np.ones((), bool),
                        params)
    mask[first]["kernel"] = np.zeros(params[first]["kernel"].shape, bool)
    mask[first]["kernel"].flat[0] = True
    schedule = training_setup.make_lr_schedule(rigl, exp.info.num_train)
    state = training_setup.initial_state(rigl, exp.model, exp.variables, mask, schedule, 6)
    assert pruning_run.final_mask_counts(rigl, exp, state.opt_state) == {
        "final_kept": 1, "final_effective": 0}
    fixed = tiny_config(**{"prune.sparsity": 0.9})
    assert pruning_run.final_mask_counts(fixed, exp, state.opt_state) == {}  # prune.json's hold
    report = pruning_run.mask_report(exp.model, exp.variables, mask, exp.info.image_shape)
    assert (report.kept, report.effective) == (1, 0)

    # A results row: the pruning mask's counts, and those of the mask training ended with.
    cell = tmp_path / "cell"
    workdir.record_config(str(cell), rigl)
    (cell / "prune.json").write_text(json.dumps({"report": {
        "kept": 50, "effective": 40, "collapsed": []}}))
    (cell / "metrics.json").write_text(json.dumps({"test_accuracy": 0.5, "final_kept": 50,
                                                   "final_effective": 7}))
    row = sweep_cells.cell_row(str(cell), "rigl", 0.9, 0)
    assert (row["kept"], row["effective"], row["final_kept"], row["final_effective"]) == (
        50, 40, 50, 7)
    (cell / "metrics.json").write_text('{"test_accuracy": 0.5}')  # a run that did not count
    row = sweep_cells.cell_row(str(cell), "rigl", 0.9, 0)
    assert (row["final_kept"], row["final_effective"]) == (None, None)  # unknown, not guessed
    workdir.record_config(str(tmp_path / "fixed"), fixed)
    for name in ("prune.json", "metrics.json"):
        (tmp_path / "fixed" / name).write_text((cell / name).read_text())
    row = sweep_cells.cell_row(str(tmp_path / "fixed"), "force", 0.9, 0)
    assert (row["final_kept"], row["final_effective"]) == (50, 40)  # the mask never changed
