"""python -m force_jax.prune: the mask, its report and the density plot."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest
from train_test import SHARED_TFDS, tiny_config

from force_jax.core import masks
from force_jax.errors import ConfigError, WorkdirError
from force_jax.experiments import prune_command, setup


@pytest.mark.skipif(not SHARED_TFDS.is_dir(), reason="no shared TFDS folder")
def test_prune_and_save_writes_mask_report_and_plot(tmp_path):
    config = tiny_config()
    report = prune_command.prune_and_save(config, str(tmp_path))
    assert report.kept == int(0.01 * 430_500)
    record = json.loads((tmp_path / "prune.json").read_text())
    assert record["report"]["kept"] == report.kept and len(record["history"]["kept"]) == 3
    assert (tmp_path / "layer_density.png").stat().st_size > 1000
    model = setup.build_model(config, 10)
    variables = setup.init_variables(model, (28, 28, 1), jax.random.key(0))
    mask = prune_command.load_mask(str(tmp_path), variables["params"])
    assert masks.sparsity_report(mask) == report
    assert all(np.asarray(m).dtype == bool for m in jax.tree.leaves(mask))
    assert os.path.isdir(tmp_path / "mask")
    # The workdir answers to its config: another sparsity is refused, the record is kept.
    recorded = (tmp_path / "config.json").read_text()
    with pytest.raises(WorkdirError, match="prune.sparsity: 0.99 -> 0.9"):
        prune_command.prune_and_save(tiny_config(**{"prune.sparsity": 0.9}), str(tmp_path))
    assert (tmp_path / "config.json").read_text() == recorded


def test_reinit_is_refused_where_there_is_no_training(tmp_path):
    with pytest.raises(ConfigError, match="prune.ablation='reinit' changes the initial weights"):
        prune_command.prune_and_save(tiny_config(**{"prune.ablation": "reinit"}), str(tmp_path))
    assert not os.listdir(tmp_path)
