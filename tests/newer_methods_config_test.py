"""ProsPr, NTK-SAP and PHEW from a config: a real run on MNIST, their options, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from train_test import tiny_config

from force_jax.commands import train
from force_jax.config import validate
from force_jax.errors import ConfigError


@pytest.mark.slow
@pytest.mark.parametrize("method, overrides", [
    ("prospr", {"prune.prospr.inner_steps": 1}),
    ("ntk_sap", {"prune.steps": 2, "prune.ntk_sap.samples": 1,
                 "prune.ntk_sap.noise_batch": 8}),
    ("phew", {}),
])
def test_each_prunes_and_trains_on_mnist(tmp_path, method, overrides):
    config = tiny_config(**{"prune.method": method, "prune.steps": None, "train.num_steps": 2,
                            "eval_every_steps": 2, **overrides})
    metrics = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert metrics["step"] == 2 and np.isfinite(metrics["train_loss"])
    assert metrics["global_density"] == pytest.approx(0.01, abs=1e-5)
    record = json.loads((tmp_path / "run" / "prune.json").read_text())
    assert record["method"] == method
    expected = {k.split(".")[-1]: v for k, v in overrides.items() if k.count(".") == 2}
    assert {k: v for k, v in record["method_options"].items() if k in expected} == expected


@pytest.mark.parametrize("overrides, message", [
    ({"prune.method": "force", "prune.prospr.inner_steps": 5},
     "config.prune.prospr.inner_steps=5 is an option of prospr, but the method is force"),
    ({"prune.method": "prospr", "prune.steps": None, "prune.prospr.inner_lr": 0.0},
     "config.prune.prospr.inner_lr: inner_lr=0.0"),
    ({"prune.method": "prospr", "prune.steps": None, "prune.prospr.inner_lr": -0.1},
     "config.prune.prospr.inner_lr: inner_lr=-0.1"),
    ({"prune.method": "prospr", "prune.steps": None, "prune.batches_per_step": 2},
     "prospr uses 4 micro-batches per step"),
    ({"prune.method": "prospr", "prune.steps": None, "prune.pool_size": 128},
     "prune.pool_size"),
    ({"prune.method": "ntk_sap", "prune.ntk_sap.epsilon": -1.0},
     "config.prune.ntk_sap.epsilon"),
    ({"prune.method": "phew", "prune.steps": None, "prune.ntk_sap.samples": 2},
     "config.prune.ntk_sap.samples=2 is an option of ntk_sap"),
    ({"prune.method": "phew", "prune.steps": None, "prune.ablation": "random_labels"},
     "corrupts the scoring data"),
])
def test_bad_options_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        validate.validate_config(tiny_config(**overrides))
    assert "\n" not in str(error.value)
