"""python -m force_jax.prune: the mask, its report and the density plot."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest
from train_test import SHARED_TFDS, tiny_config

from force_jax.commands import prune_command
from force_jax.config import pruning_run, setup
from force_jax.core import density
from force_jax.errors import ConfigError, WorkdirError


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
    assert pruning_run.mask_report(model, variables, mask, (28, 28, 1)) == report
    assert 0 < record["report"]["effective"] <= record["report"]["kept"]
    assert density.sparsity_report(mask).kept == report.kept
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


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_TFDS.is_dir(), reason="no shared TFDS folder")
def test_the_prune_command_runs_as_a_module_from_another_folder(tmp_path):
    """python -m force_jax.prune, with a config path given from outside the repository."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-m", "force_jax.prune",
         f"--config={os.path.join(root, 'configs', 'sanity_fashion_mnist.py')}",
         f"--workdir={tmp_path / 'mask'}", f"--config.data.data_dir={SHARED_TFDS}",
         "--config.prune.method=magnitude",
         "--config.prune.steps=1", "--config.prune.pool_size=256",
         "--config.prune.batch_size=64"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    record = json.loads((tmp_path / "mask" / "prune.json").read_text())
    # The sanity config's VGG-11 at width 0.25: 577,424 prunable weights.
    assert record["method"] == "magnitude" and record["report"]["kept"] == int(0.01 * 577_424)


def test_a_model_setting_the_model_lacks_names_the_key():
    config = tiny_config()  # LeNet-5
    config.model.width_multiplier = 0.5
    with pytest.raises(ConfigError, match="config.model.width_multiplier=0.5 is not a setting "
                                          "of lenet5"):
        setup.build_model(config, 10)
