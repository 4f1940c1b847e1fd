"""The real train_and_evaluate for a few steps: Fashion-MNIST from ../shared,
CIFAR-10 and ImageNet shapes under tfds mock_data; resume; bad configs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import SHARED_TFDS, write_metadata

from force_jax import checkpoint, data, masks, optim, train

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from configs import default  # noqa: E402

needs_real_data = pytest.mark.skipif(not SHARED_TFDS.is_dir(), reason="no shared TFDS folder")


def tiny_config(**overrides):
    """The default config cut down to seconds: 6 steps, tiny pruning schedule."""
    config = default.get_config()
    config.data.data_dir = str(SHARED_TFDS)
    config.prune.steps = 3
    config.prune.pool_size = 256
    config.prune.batch_size = 64
    config.train.batch_size = 32
    config.train.num_steps = 6
    config.eval_every_steps = 3
    config.eval_max_batches = 2
    config.eval_batch_size = 100
    config.mesh.num_devices = 1  # parallel_test.py runs the 8-device case
    for key, value in overrides.items():
        target = config
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return config


def final_state(config, workdir):
    """Restores the last checkpoint of a run."""
    info = data.dataset_info(config.data.name, config.data.data_dir)
    model = train.build_model(config, info.num_classes)
    variables = train.init_variables(model, info.image_shape, jax.random.key(0))
    schedule = optim.make_schedule(config.train.lr_schedule, 1)
    template = train.create_train_state(
        config, model, variables, masks.init_mask(variables["params"]), schedule)
    mngr = checkpoint.manager(os.path.join(workdir, "checkpoints"))
    return checkpoint.restore_state(mngr, template)


def assert_pruned_weights_are_zero(state):
    mask = optim.mask_from_state(state.opt_state)
    for p, m in zip(jax.tree.leaves(state.params), jax.tree.leaves(mask)):
        if masks.is_prunable_leaf(m):
            assert np.all(np.asarray(p)[~np.asarray(m)] == 0)


@needs_real_data
def test_default_config_trains_on_fashion_mnist_and_resumes_identically(tmp_path):
    config = tiny_config()
    full = str(tmp_path / "full")
    metrics = train.train_and_evaluate(config, full)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["step"] == 6
    written = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert written["test_accuracy"] == metrics["test_accuracy"]
    lines = checkpoint.read_jsonl(os.path.join(full, "metrics.jsonl"))
    assert [r["step"] for r in lines] == [3, 6]
    assert os.listdir(os.path.join(full, "tensorboard"))
    prune_record = json.loads((tmp_path / "full" / "prune.json").read_text())
    assert prune_record["report"]["kept"] == int(0.01 * 430_500)
    state, step = final_state(config, full)
    assert step == 6
    assert_pruned_weights_are_zero(state)

    # Interrupt after step 3: drop the last checkpoint (and keep its metrics line, which
    # the resumed run must replace), then rerun the same command on the workdir.
    resumed = str(tmp_path / "resumed")
    shutil.copytree(full, resumed)
    shutil.rmtree(os.path.join(resumed, "checkpoints", "6"))
    again = train.train_and_evaluate(config, resumed)
    state_again, _ = final_state(config, resumed)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(state_again.params)):
        np.testing.assert_array_equal(a, b)
    assert again["test_accuracy"] == metrics["test_accuracy"]
    assert [r["step"] for r in checkpoint.read_jsonl(os.path.join(resumed, "metrics.jsonl"))] == [
        3, 6]


@pytest.mark.parametrize(
    "name, splits, model, width",
    [
        ("cifar10", {"train": 50_000, "test": 10_000}, "vgg11", 0.125),
        ("imagenet2012", {"train": 1_281_167, "validation": 50_000}, "resnet50_imagenet", 0.0625),
    ],
)
def test_mock_datasets_train_end_to_end(tmp_path, name, splits, model, width):
    write_metadata(tmp_path / "tfds", name, splits)
    config = tiny_config(**{
        "data.name": name, "data.data_dir": str(tmp_path / "tfds"), "model.name": model,
        "prune.pool_size": 16, "prune.batch_size": 8, "train.batch_size": 4,
        "train.num_steps": 2, "eval_every_steps": 2, "eval_batch_size": 4,
    })
    config.model.width_multiplier = width
    with tfds.testing.mock_data(num_examples=16, data_dir=str(tmp_path / "tfds")):
        metrics = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert metrics["step"] == 2 and np.isfinite(metrics["train_loss"])
    assert metrics["global_density"] == pytest.approx(0.01, abs=1e-4)


def test_config_typo_is_rejected_on_the_command_line(tmp_path):
    root = os.path.join(os.path.dirname(__file__), "..")
    result = subprocess.run(
        [sys.executable, "-m", "force_jax.train", "--config=configs/default.py",
         f"--workdir={tmp_path}", "--config.trian.batch_size=3"],
        cwd=root, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "trian" in result.stderr
    assert not os.listdir(tmp_path)  # rejected before anything was written


@pytest.mark.parametrize(
    "key, value, message",
    [("prune.method", "snap", "config.prune.method"), ("prune.sparsity", 1.2, "sparsity"),
     ("model.name", "vgg20", "config.model.name")],
)
def test_bad_config_values_fail_before_any_work(tmp_path, key, value, message):
    with pytest.raises(ValueError, match=message):
        train.train_and_evaluate(tiny_config(**{key: value}), str(tmp_path))


def test_missing_dataset_fails_fast_with_a_clear_message(tmp_path):
    config = tiny_config(**{"data.data_dir": str(tmp_path / "empty")})
    with pytest.raises(data.DatasetNotFoundError, match="fashion_mnist.*empty|empty.*fashion"):
        train.train_and_evaluate(config, str(tmp_path / "run"))
