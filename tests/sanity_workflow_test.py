"""config.prune.ablation on real Fashion-MNIST: what each sanity check changes in a run, and
the sweep axis over it (results, summary, resume)."""

from __future__ import annotations

import json
import os

import jax
import ml_collections
import numpy as np
import pytest
from sweep_test import read_csv, tiny_sweep_config
from train_test import needs_real_data, tiny_config

from force_jax.commands import sweep
from force_jax.config import pruning_run, setup, sweep_grid
from force_jax.core import density, masks, sanity
from force_jax.errors import ConfigError
from force_jax.runs import workdir
from force_jax.training import data


def pruned(config):
    """(mask, history, variables the mask was found at, variables training starts from)."""
    info = data.dataset_info(config.data.name, config.data.data_dir)
    model = setup.build_model(config, info.num_classes)
    init_key, prune_key = jax.random.split(jax.random.key(config.seed))
    variables = setup.init_variables(model, info.image_shape, init_key)
    mask, history = pruning_run.prune_at_init(config, model, variables, prune_key)
    start = setup.initial_variables(config, model, info.image_shape, variables, mask)
    return mask, history, variables, start


@pytest.mark.slow
@needs_real_data
def test_each_ablation_changes_what_it_names_and_nothing_else():
    base_mask, base_history, variables, start = pruned(tiny_config())
    assert start is variables
    counts = [layer.kept for layer in density.sparsity_report(base_mask).layers]

    shuffled, history, found_at, start = pruned(tiny_config(**{"prune.ablation": "shuffle"}))
    assert [layer.kept for layer in density.sparsity_report(shuffled).layers] == counts
    np.testing.assert_array_equal(history.layer_kept, base_history.layer_kept)
    overlap = float(masks.num_kept(jax.tree.map(lambda a, b: a & b, shuffled, base_mask)))
    assert overlap < 0.5 * sum(counts) and start is found_at

    by_tap, history, found_at, start = pruned(tiny_config(**{"prune.ablation": "shuffle_taps"}))
    np.testing.assert_array_equal(history.layer_kept, base_history.layer_kept)
    convs = 0
    for new, old in zip(jax.tree.leaves(by_tap), jax.tree.leaves(base_mask)):
        if masks.is_prunable_leaf(old):
            axes = tuple(range(old.ndim - 2, old.ndim)) if old.ndim > 2 else None
            np.testing.assert_array_equal(np.sum(new, axis=axes), np.sum(old, axis=axes))
            convs += old.ndim > 2
    assert convs > 0 and start is found_at
    assert float(masks.num_kept(jax.tree.map(lambda a, b: a & b, by_tap, base_mask))) < sum(counts)

    mask, _, _, start = pruned(tiny_config(**{"prune.ablation": "reinit"}))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(mask),
                                                    jax.tree.leaves(base_mask)))
    for new, old, m in zip(jax.tree.leaves(start["params"]), jax.tree.leaves(variables["params"]),
                           jax.tree.leaves(mask)):
        if masks.is_prunable_leaf(m):
            assert np.all(np.asarray(new)[~np.asarray(m)] == 0)
            assert not np.allclose(np.asarray(new)[np.asarray(m)], np.asarray(old)[np.asarray(m)])

    inverted, _, found_at, start = pruned(tiny_config(**{"prune.ablation": "invert"}))
    assert int(masks.num_kept(inverted)) == sum(counts) and start is found_at
    overlap = float(masks.num_kept(jax.tree.map(lambda a, b: a & b, inverted, base_mask)))
    assert overlap < 0.5 * sum(counts)


def test_the_sweep_axis_names_cells_and_reports_one_series_per_method_and_ablation(tmp_path):
    config = tiny_sweep_config()
    config.sweep.methods = ("force",)
    config.sweep.sparsities = (0.9,)
    config.sweep.seeds = (0, 1)
    config.sweep.ablations = ("none", "shuffle", "invert")
    calls = []

    def finishes(cell_config, cell_dir):
        calls.append((os.path.basename(cell_dir), cell_config.prune.ablation))
        workdir.record_config(cell_dir, cell_config)
        accuracy = {"none": 0.8, "shuffle": 0.7, "invert": 0.2}[cell_config.prune.ablation]
        with open(os.path.join(cell_dir, "metrics.json"), "w") as f:
            json.dump({"test_accuracy": accuracy + 0.01 * cell_config.seed}, f)

    sweep.run_sweep(config, str(tmp_path), train_fn=finishes)
    assert calls[:3] == [("force_s0.9_seed0", "none"), ("force_s0.9_seed0_shuffle", "shuffle"),
                         ("force_s0.9_seed0_invert", "invert")]
    table = read_csv(tmp_path / "results.csv")
    assert [(r["method"], r["ablation"], r["seed"]) for r in table] == [
        ("force", "none", "0"), ("force", "none", "1"), ("force", "shuffle", "0"),
        ("force", "shuffle", "1"), ("force", "invert", "0"), ("force", "invert", "1")]
    summary = (tmp_path / "summary.md").read_text().splitlines()
    assert "| force | 0.8050 ± 0.0071 |" in summary
    assert "| force+shuffle | 0.7050 ± 0.0071 |" in summary
    assert "| force+invert | 0.2050 ± 0.0071 |" in summary
    assert (tmp_path / "accuracy_vs_sparsity.png").stat().st_size > 1000
    calls.clear()
    sweep.run_sweep(config, str(tmp_path), train_fn=finishes)  # resumed: nothing to run
    assert calls == []
    config.sweep.ablations = ("none", "shufle")
    with pytest.raises(ConfigError, match="config.sweep.ablations has unknown"):
        sweep.run_sweep(config, str(tmp_path), train_fn=finishes)
    assert sweep_grid.cell_name("force", 0.9, 0) == "force_s0.9_seed0"
    assert sanity.ABLATIONS[0] == "none"


@pytest.mark.slow
@needs_real_data
def test_an_ablation_sweep_runs_for_real_and_resumes(tmp_path):
    config = tiny_sweep_config()
    config.sweep.methods = ("snip",)
    config.sweep.sparsities = (0.95,)
    config.prune.steps = 1
    config.sweep.ablations = ("none", "reinit")
    rows = sweep.run_sweep(config, str(tmp_path))
    assert [(r["ablation"], r["error"]) for r in rows] == [("none", None), ("reinit", None)]
    assert all(0 <= r["test_accuracy"] <= 1 for r in rows)
    record = json.loads((tmp_path / "cells" / "snip_s0.95_seed0_reinit" / "prune.json")
                        .read_text())
    assert record["ablation"] == "reinit"
    again = sweep.run_sweep(config, str(tmp_path), train_fn=lambda *a: pytest.fail("reran"))
    assert [r["test_accuracy"] for r in again] == [r["test_accuracy"] for r in rows]
    # The masks read back from the checkpoints are the pruned ones, and they connect.
    from force_jax.reports import mask_paths

    cell = tmp_path / "cells" / "snip_s0.95_seed0"
    cell_config = ml_collections.ConfigDict(json.loads((cell / "config.json").read_text()))
    mask, _, variables, _ = pruned(cell_config)
    for a, b in zip(jax.tree.leaves(mask),
                    jax.tree.leaves(mask_paths.trained_mask(str(cell), variables["params"]))):
        np.testing.assert_array_equal(a, b)
    conv = masks.path_name(next(path for path, leaf in jax.tree_util.tree_flatten_with_path(mask)[0]
                                if np.ndim(leaf) == 4))
    paths = mask_paths.write_paths(str(tmp_path), center_layers=[conv])
    assert [(r["ablation"], r["paths"] > 0) for r in paths] == [("none", True), ("reinit", True)]
    kernel = np.asarray(mask_paths.trained_mask(str(cell), variables["params"])
                        [conv.split("/")[0]]["kernel"])
    h, w = kernel.shape[:2]
    assert paths[0]["center_tap"][conv] == pytest.approx(
        kernel[h // 2, w // 2].sum() / kernel.sum())
    assert "| snip+reinit | 0.95 | 1/1 |" in (tmp_path / "paths.md").read_text()
    assert len(read_csv(tmp_path / "paths.csv")) == 2
    # A checkpoint that disagrees with the count pruning recorded is refused.
    record = json.loads((cell / "prune.json").read_text())
    record["history"]["kept"][-1] += 1
    (cell / "prune.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="pruning kept"):
        mask_paths.trained_mask(str(cell), variables["params"])
