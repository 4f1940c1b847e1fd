"""A run whose loss becomes NaN or infinite stops with one error and writes no results."""

from __future__ import annotations

import math
import os

import pytest
from conftest import SHARED_TFDS
from train_test import tiny_config

from configs import default
from force_jax.commands import train
from force_jax.errors import DivergedError
from force_jax.runs import checkpoint


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_loss_names_the_steps_and_the_likely_keys(value):
    config = default.get_config()
    with pytest.raises(DivergedError) as raised:
        train.check_finite(config, {"train_loss": value, "train_accuracy": 0.1}, 40, 60)
    message = str(raised.value)
    assert message.startswith(f"train_loss is {value} at step 60 (steps 41 to 60)")
    assert "config.train.lr_schedule.base_lr=0.05" in message
    assert "checkpoint of step 40 is kept" in message


def test_finite_losses_and_non_loss_values_pass():
    train.check_finite(default.get_config(), {"train_loss": 2.3, "test_loss": 1e30,
                                              "images_per_second": math.inf}, 0, 3)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_TFDS.is_dir(), reason="no shared TFDS folder")
def test_a_diverging_run_stops_keeps_its_last_finite_checkpoint_and_writes_no_metrics(
        tmp_path):
    config = tiny_config(**{"train.lr_schedule.base_lr": 1e6})
    workdir = str(tmp_path)
    for _ in range(2):  # a rerun resumes from the finite checkpoint and stops again
        with pytest.raises(DivergedError, match=r"train_loss is nan at step 3 \(steps 1 to 3\)"):
            train.train_and_evaluate(config, workdir)
        assert not os.path.exists(os.path.join(workdir, "metrics.json"))
        assert checkpoint.read_jsonl(os.path.join(workdir, "metrics.jsonl")) == []
        assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["0"]
