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

from configs import default
from force_jax import optim
from force_jax.commands import cli, train
from force_jax.config import pruning_run, setup, training_setup
from force_jax.core import compile_options, masks
from force_jax.errors import ConfigError
from force_jax.runs import checkpoint
from force_jax.training import data

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


def final_state(config, workdir, total_steps=6):
    """Restores the last checkpoint of a run (of a mask that changes too: the same rule)."""
    info = data.dataset_info(config.data.name, config.data.data_dir)
    model = setup.build_model(config, info.num_classes)
    variables = setup.init_variables(model, info.image_shape, jax.random.key(0))
    schedule = optim.make_schedule(config.train.lr_schedule, total_steps=total_steps,
                                   steps_per_epoch=1)
    template = training_setup.initial_state(
        config, model, variables, masks.init_mask(variables["params"]), schedule, total_steps)
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

    # Damage the last checkpoint (as a crash while writing it would on a filesystem without
    # atomic renames) and keep its metrics line, which the resumed run must replace; the
    # rerun sets the damaged checkpoint aside and resumes from step 3.
    resumed = str(tmp_path / "resumed")
    shutil.copytree(full, resumed)
    for folder, _, files in os.walk(os.path.join(resumed, "checkpoints", "6")):
        for name in files:
            if os.path.basename(folder) == "d":
                path = os.path.join(folder, name)
                os.truncate(path, os.path.getsize(path) // 2)
    again = train.train_and_evaluate(config, resumed)
    assert os.listdir(os.path.join(resumed, "checkpoints.damaged")) == ["6"]
    state_again, _ = final_state(config, resumed)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(state_again.params)):
        np.testing.assert_array_equal(a, b)
    assert again["test_accuracy"] == metrics["test_accuracy"]
    assert [r["step"] for r in checkpoint.read_jsonl(os.path.join(resumed, "metrics.jsonl"))] == [
        3, 6]


@pytest.mark.slow
@needs_real_data
def test_config_chooses_another_optimizer_and_pruned_weights_stay_zero(tmp_path):
    # One end-to-end run (lamb); optim_test checks sgd, adamw and lamb step by step.
    config = tiny_config(**{"train.optimizer": "lamb", "train.weight_decay": 0.05,
                            "train.lr_schedule.base_lr": 1e-3})
    metrics = train.train_and_evaluate(config, str(tmp_path))
    assert np.isfinite(metrics["train_loss"])
    state, step = final_state(config, str(tmp_path))
    assert step == 6
    assert isinstance(state.opt_state, optim.MaskedUpdatesState)
    assert_pruned_weights_are_zero(state)
    # The mask is held once, at the top of the optimizer state.
    assert sum(isinstance(x, optim.MaskedUpdatesState) for x in jax.tree.leaves(
        state.opt_state, is_leaf=lambda x: isinstance(x, optim.MaskedUpdatesState))) == 1


# ImageNet end to end: test_imagenet_streams_fresh_augmented_pruning_batches_end_to_end.
@pytest.mark.slow
@pytest.mark.parametrize(
    "name, splits, model, width",
    [("cifar10", {"train": 50_000, "test": 10_000}, "vgg11", 0.125)],
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
    # The record names the CPU and compiler options behind the mask.
    record = json.loads((tmp_path / "run" / "prune.json").read_text())
    assert record["machine"] == json.loads(json.dumps(compile_options.machine()))


@pytest.mark.slow
def test_imagenet_streams_fresh_augmented_pruning_batches_end_to_end(tmp_path):
    """The paper's ImageNet way (pool_size 0, augment): no pool is ever loaded."""
    write_metadata(tmp_path / "tfds", "imagenet2012", {"train": 1_281_167, "validation": 50_000})
    config = tiny_config(**{
        "data.name": "imagenet2012", "data.data_dir": str(tmp_path / "tfds"),
        "model.name": "resnet50_imagenet", "prune.pool_size": 0, "prune.augment": True,
        "prune.batch_size": 8, "prune.batches_per_step": 2, "train.batch_size": 4,
        "train.num_steps": 2, "eval_every_steps": 2, "eval_batch_size": 4,
    })
    config.model.width_multiplier = 0.0625
    config.model.stage_sizes = (1, 1, 1, 1)  # one bottleneck block a stage: the stem is tested
    with tfds.testing.mock_data(num_examples=16, data_dir=str(tmp_path / "tfds")):
        stream = pruning_run.pruning_examples(config)
        first = next(stream)
        assert first["image"].shape == (8, 224, 224, 3) and first["label"].shape == (8,)
        metrics = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert metrics["step"] == 2 and np.isfinite(metrics["train_loss"])
    assert metrics["global_density"] == pytest.approx(0.01, abs=1e-4)
    record = json.loads((tmp_path / "run" / "prune.json").read_text())
    assert (record["backend"], record["kernels"]) == (jax.default_backend(), "cpu" if
                                                      jax.default_backend() == "cpu" else "plain")
    assert len(record["history"]["objective"]) == 3 and np.all(
        np.isfinite(record["history"]["objective"]))


def test_config_typo_is_rejected_on_the_command_line(tmp_path):
    root = os.path.join(os.path.dirname(__file__), "..")
    result = subprocess.run(
        [sys.executable, "-m", "force_jax.train", "--config=configs/default.py",
         f"--workdir={tmp_path}", "--config.trian.batch_size=3"],
        cwd=root, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert ours == ["error: --config.trian.batch_size: 'trian' is not a key of config; did you "
                    "mean --config.train.batch_size?"]
    assert not os.listdir(tmp_path)  # rejected before anything was written


def test_a_config_key_given_twice_is_an_error_not_a_merge():
    argv = ["train", "--config=configs/claim_fashion_mnist.py",
            "--config.sweep.sparsities=(0.9,)", "--config.seed=1",
            "--config.sweep.sparsities=(0.9,1.0)", "--config.seed", "2"]
    assert cli.repeated_overrides(argv) == ["seed", "sweep.sparsities"]
    assert cli.repeated_overrides(argv[:3]) == []


def test_a_config_mistake_on_the_command_line_is_one_line(tmp_path):
    root = os.path.join(os.path.dirname(__file__), "..")
    result = subprocess.run(
        [sys.executable, "-m", "force_jax.train", "--config=configs/default.py",
         f"--workdir={tmp_path}", "--config.prune.steps=0"],
        cwd=root, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: config.prune.steps=0: expected an integer >= 1 (in a config file, None means "
        "the method's default: 60 for force)")


@pytest.mark.parametrize(
    "key, value, message",
    [("prune.method", "snap", "config.prune.method='snap': expected one of force, "),
     ("prune.sparsity", 1.2, r"config.prune.sparsity=1.2: expected a fraction removed in \[0, 1\)"),
     ("model.name", "vgg20", "config.model.name='vgg20'"),
     ("prune.steps", 0, "config.prune.steps=0: expected an integer >= 1"),
     ("prune.steps", -3, "config.prune.steps=-3: expected an integer >= 1"),
     ("train.num_steps", 0, "config.train.num_steps=0: expected an integer >= 1"),
     ("prune.method", "snip", "config.prune.steps=3, but snip prunes in one shot: set "
                              "--config.prune.steps=1"),
     ("prune.pool_size", 32, "config.prune.pool_size=32: expected 0 \\(fresh batches streamed "
                             "from the training split\\) or an integer >= prune.batch_size"),
     ("prune.augment", True, "config.prune.augment=True augments streamed batches, but "
                             "config.prune.pool_size=256 asks for an in-memory pool"),
     ("train.lr_schedule.name", "linear", "config.train.lr_schedule.name='linear': expected "
                                          "cosine or step"),
     ("prune.ablation", "shufle", "config.prune.ablation='shufle': expected one of none, "
                                  "shuffle, reinit, invert"),
     ("model.kernels", "gpu", "config.model.kernels='gpu': expected one of auto, cpu, plain"),
     ("train.optimizer", "adagrad", "config.train.optimizer='adagrad': expected one of sgd, "
                                    "adamw, lamb"),
     ("train.weight_decay", -0.1, "config.train.weight_decay=-0.1: expected >= 0"),
     ("cluster.coordinator_address", "127.0.0.1:1", "names a cluster, but config.distributed "
                                                   "is False: add --config.distributed=True")],
)
def test_bad_config_values_fail_before_any_work(tmp_path, key, value, message):
    with pytest.raises(ConfigError, match=message):
        train.train_and_evaluate(tiny_config(**{key: value}), str(tmp_path))
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize(
    "overrides, message",
    [({"prune.scope": "local"}, "config.prune.scope='local': expected one of global, layerwise"),
     ({"prune.allocation": "erk"}, "config.prune.allocation='erk' needs "
                                   "--config.prune.scope=layerwise"),
     ({"prune.scope": "layerwise", "prune.allocation": "erk2"},
      "config.prune.allocation='erk2': expected one of uniform, erk, er or a map"),
     ({"prune.scope": "layerwise", "prune.allocation": "conv_0/kernel:1.5"},
      "'conv_0/kernel:1.5' is not"),
     ({"prune.scope": "layerwise", "prune.allocation": "conv_0/kernel:0.5,nope/kernel:0.5"},
      "config.prune.allocation=.*names nope/kernel, which is not a prunable layer"),
     ({"prune.scope": "layerwise", "prune.allocation": "conv_0/kernel:0.5"},
      "config.prune.allocation=.*misses classifier/kernel, conv_1/kernel, dense_0/kernel"),
     ({"prune.method": "synflow", "prune.ablation": "random_labels"},
      "config.prune.ablation='random_labels' corrupts the scoring data, but synflow reads "
      "none")],
)
def test_layerwise_and_data_check_mistakes_fail_before_any_work(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train.train_and_evaluate(tiny_config(**overrides), str(tmp_path))
    assert not os.listdir(tmp_path)


def test_a_layerwise_map_is_checked_against_the_model_before_any_work():
    config = tiny_config(**{"prune.scope": "layerwise", "prune.allocation":
                            "conv_0/kernel:0.5,conv_1/kernel:0.1,dense_0/kernel:0.01,"
                            "classifier/kernel:0.1"})
    counts = setup.check_allocation(
        config, setup.abstract_params(setup.build_model(config, 10), (28, 28, 1)))
    assert counts.shape == (3, 4) and counts[-1].sum() == 4305


@pytest.mark.parametrize(
    "overrides, message",
    [({"train.optimizer": "lamb", "train.nesterov": True},
      "config.train.nesterov=True: expected False with train.optimizer=lamb"),
     ({"train.optimizer": "adamw", "train.momentum": 1.0},
      "config.train.momentum=1.0: expected < 1 with train.optimizer=adamw \\(it is Adam's b1")],
)
def test_sgd_keys_are_not_ignored_by_other_optimizers(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train.train_and_evaluate(tiny_config(**overrides), str(tmp_path))
    assert not os.listdir(tmp_path)


@needs_real_data
@pytest.mark.parametrize(
    "key, value, message",
    [("prune.pool_size", 60_000, "config.prune.pool_size=60000 is larger than the training "
                                 "split \\(54,000 examples of fashion_mnist"),
     ("train.batch_size", 54_016, "config.train.batch_size=54016 is larger than the training "
                                  "split"),
     ("data.name", "fashon_mnist", "config.data.name='fashon_mnist' is not a TFDS dataset; did "
                                   "you mean 'fashion_mnist'")],
)
def test_data_size_and_name_mistakes_name_the_key(tmp_path, key, value, message):
    with pytest.raises(ConfigError, match=message) as error:
        train.train_and_evaluate(tiny_config(**{key: value}), str(tmp_path))
    assert len(str(error.value)) < 200  # TFDS's list of every dataset is not repeated
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("name, boundaries", [("cosine", ()), ("step", (1.5, 2.25))])
def test_the_learning_rate_schedule_spans_num_steps(name, boundaries):
    config = tiny_config(**{"train.num_steps": 400, "train.num_epochs": 3,
                            "train.lr_schedule.name": name,
                            "train.lr_schedule.boundaries": boundaries})
    schedule = training_setup.make_lr_schedule(config, num_train=54_000)
    base = config.train.lr_schedule.base_lr
    if name == "cosine":
        np.testing.assert_allclose([schedule(0), schedule(200), schedule(400)],
                                   [base, base / 2, 0.0], atol=1e-7)
    else:  # epoch boundaries at 1.5 and 2.25 of 3 epochs: steps 200 and 300 of 400
        np.testing.assert_allclose(
            [schedule(199), schedule(200), schedule(299), schedule(300)],
            [base, base * 0.1, base * 0.1, base * 0.01], rtol=1e-6)
    epochs_config = tiny_config(**{"train.num_steps": None})
    full = training_setup.make_lr_schedule(epochs_config, num_train=54_000)
    assert training_setup.run_length(epochs_config, 54_000)[0] == 3 * 1687
    np.testing.assert_allclose(full(3 * 1687), 0.0, atol=1e-7)


def test_missing_dataset_fails_fast_with_a_clear_message(tmp_path):
    config = tiny_config(**{"data.data_dir": str(tmp_path / "empty")})
    with pytest.raises(data.DatasetNotFoundError, match="fashion_mnist.*empty|empty.*fashion"):
        train.train_and_evaluate(config, str(tmp_path / "run"))
