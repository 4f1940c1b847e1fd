"""A user's mistakes and a refusing disk: one `error:` line naming the key or path, status 2.

Numbers outside their domain (NaN, inf, out of range, a bool for an integer),
a sparsity that keeps no weight, an override of a key that does not exist, a
disk that fills or is read-only; and a sweep whose cells fail exits non-zero,
naming them.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import uuid

import ml_collections
import numpy as np
import pytest
from conftest import SHARED_TFDS
from train_test import tiny_config

from force_jax.commands import cli, prune_command, sweep, train
from force_jax.config import setup, validate
from force_jax.core import recipe
from force_jax.errors import ConfigError
from force_jax.reports import sweep_cells
from force_jax.runs import checkpoint, disk

ROOT = os.path.join(os.path.dirname(__file__), "..")
needs_real_data = pytest.mark.skipif(not SHARED_TFDS.is_dir(), reason="no shared TFDS folder")
NAN, INF = float("nan"), float("inf")


# A. Every number against its domain.

@pytest.mark.parametrize(
    "key, value, message",
    [("train.lr_schedule.base_lr", NAN, "config.train.lr_schedule.base_lr=nan: expected a "
                                        "finite number > 0"),
     ("train.lr_schedule.base_lr", -0.05, "base_lr=-0.05: expected a finite number > 0"),
     ("train.lr_schedule.base_lr", 0.0, "base_lr=0.0: expected a finite number > 0"),
     ("train.lr_schedule.base_lr", INF, "base_lr=inf: expected a finite number > 0"),
     ("prune.temperature", 0.0, "config.prune.temperature=0.0: expected a finite number > 0"),
     ("prune.temperature", -1.0, "config.prune.temperature=-1.0: expected a finite number"),
     ("prune.temperature", NAN, "config.prune.temperature=nan: expected a finite number"),
     ("prune.sparsity", NAN, r"config.prune.sparsity=nan: expected a fraction removed in \[0"),
     ("train.weight_decay", INF, "config.train.weight_decay=inf: expected >= 0"),
     ("train.momentum", NAN, "config.train.momentum=nan: expected >= 0"),
     ("train.momentum", INF, "config.train.momentum=inf: expected >= 0.*a finite number"),
     ("train.lr_schedule.factor", 0.0, "config.train.lr_schedule.factor=0.0: expected a "
                                       "finite number > 0"),
     ("train.lr_schedule.factor", NAN, "config.train.lr_schedule.factor=nan"),
     ("train.lr_schedule.boundaries", (2, 1), r"boundaries=\(2, 1\): expected a tuple of "
                                              "epochs >= 0"),
     ("train.lr_schedule.boundaries", (-1.0,), r"boundaries=\(-1.0,\)"),
     ("train.lr_schedule.boundaries", (INF,), r"boundaries=\(inf,\)"),
     ("train.lr_schedule.warmup_epochs", NAN, "warmup_epochs=nan: expected >= 0"),
     ("train.lr_schedule.warmup_epochs", 3, "warmup_epochs=3: expected fewer epochs than "
                                            "train.num_epochs=3"),
     ("train.num_epochs", NAN, "config.train.num_epochs=nan: expected > 0"),
     ("train.num_epochs", INF, "config.train.num_epochs=inf: expected > 0"),
     ("train.num_epochs", 0, "config.train.num_epochs=0: expected > 0"),
     ("data.validation_fraction", NAN, r"validation_fraction=nan: expected a fraction in \[0"),
     ("eval_batch_size", True, "config.eval_batch_size=True: expected an integer >= 1"),
     ("eval_every_steps", 2.5, "config.eval_every_steps=2.5: expected an integer"),
     ("eval_max_batches", True, "config.eval_max_batches=True: expected an integer"),
     ("prune.batch_size", True, "config.prune.batch_size=True: expected an integer >= 1"),
     ("seed", False, "config.seed=False: expected an integer"),
     ("cluster.initialization_timeout", 0, "initialization_timeout=0: expected an integer "
                                           "number of seconds > 0"),
     ("cluster.initialization_timeout", True, "initialization_timeout=True"),
     ("cluster.num_processes", -1, "config.cluster.num_processes=-1: expected an integer"),
     ("cluster.process_id", -2, "config.cluster.process_id=-2: expected an integer >= 0"),
     ("mesh.num_devices", 0, r"config.mesh.num_devices=0: expected -1 \(every device\)"),
     ("train.nesterov", 1, "config.train.nesterov=1: expected True or False"),
     ("model.width_multiplier", 0.0, "config.model.width_multiplier=0.0: expected a finite "
                                     "number > 0")],
)
def test_a_number_outside_its_domain_names_key_value_and_domain(key, value, message):
    # Built from a dict, as a config file may build it: no type of the default to keep.
    values = tiny_config().to_dict()
    *parents, leaf = key.split(".")
    node = values
    for part in parents:
        node = node[part]
    node[leaf] = value
    with pytest.raises(ConfigError, match=message):
        validate.validate_config(ml_collections.ConfigDict(values))


def test_a_large_learning_rate_is_left_to_the_training_loop():
    """1e6 is a learning rate; whether it diverges is the training loop's to say."""
    validate.validate_config(tiny_config(**{"train.lr_schedule.base_lr": 1e6}))


def test_the_sweep_settings_of_synflow_and_grasp_are_validated():
    config = ml_collections.ConfigDict({"synflow_steps": 0, "grasp_temperature": 200.0})
    with pytest.raises(ConfigError, match="config.sweep.synflow_steps=0: expected an integer"):
        validate.validate_sweep_settings(config)
    config.synflow_steps, config.grasp_temperature = None, 0.0
    with pytest.raises(ConfigError, match="config.sweep.grasp_temperature=0.0: expected a "
                                          "finite number > 0"):
        validate.validate_sweep_settings(config)


def test_the_command_prints_a_config_error_as_one_line_and_exits_2(tmp_path, capsys):
    config = tiny_config(**{"train.lr_schedule.base_lr": NAN})
    with pytest.raises(SystemExit) as exited:
        cli.run_command(train.train_and_evaluate, config, str(tmp_path))
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "error: config.train.lr_schedule.base_lr=nan: expected a finite number > 0\n")
    assert not os.listdir(tmp_path)


# B. A sparsity that keeps no weight, refused from the model's shapes before any data.

def test_the_prunable_count_and_the_largest_sparsity_come_from_shapes_alone():
    params = setup.abstract_params(setup.build_model(tiny_config(), 10), (28, 28, 1))
    assert setup.num_prunable_weights(params) == 430_500  # LeNet-5
    assert recipe.largest_sparsity(430_500) == 0.9999976
    assert recipe.final_keep_count(0.9999976, 430_500) == 1
    assert recipe.final_keep_count(0.9999977, 430_500) == 0
    assert recipe.final_keep_count(0.9, 430_500) == 43_050


NO_WEIGHT = ("config.prune.sparsity=0.9999999 keeps no weight: floor((1 - 0.9999999) * "
             "430500) = 0 of the 430,500 prunable weights of lenet5; use at most 0.9999976, "
             "which keeps 1")


@needs_real_data
@pytest.mark.parametrize("command", [train.train_and_evaluate, prune_command.prune_and_save])
def test_a_sparsity_that_keeps_no_weight_is_refused_before_the_workdir(tmp_path, command):
    with pytest.raises(ConfigError) as refused:
        command(tiny_config(**{"prune.sparsity": 0.9999999}), str(tmp_path))
    assert str(refused.value) == NO_WEIGHT
    assert not os.listdir(tmp_path)


def test_the_sweep_refuses_such_a_cell_before_any_cell_runs(tmp_path):
    config = tiny_config()
    config.sweep = ml_collections.ConfigDict(
        {"methods": ("force",), "sparsities": (0.9, 0.9999999), "seeds": (0,)})
    ran = []
    with pytest.raises(ConfigError) as refused:
        sweep.run_sweep(config, str(tmp_path / "sweep"), train_fn=lambda *a: ran.append(a))
    assert str(refused.value) == NO_WEIGHT
    assert ran == [] and not (tmp_path / "sweep").exists()


# C. A sweep whose cells fail exits non-zero and names them.

def _one_cell_sweep() -> ml_collections.ConfigDict:
    config = tiny_config()
    config.sweep = ml_collections.ConfigDict(
        {"methods": ("force",), "sparsities": (0.9,), "seeds": (0,)})
    return config


def test_a_sweep_with_a_failed_cell_exits_1_naming_it(tmp_path, capsys):
    def fails(cell_config, cell_dir):
        raise RuntimeError("boom\nsecond line")

    with pytest.raises(SystemExit) as exited:
        sweep._sweep_and_summarise(_one_cell_sweep(), str(tmp_path), train_fn=fails)
    assert exited.value.code == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == f"1 cells, 1 failed; results in {tmp_path}/results.csv"
    assert err.splitlines()[-1] == "failed: force_s0.9_seed0: RuntimeError: boom second line"


def test_a_sweep_whose_cells_all_finish_exits_0(tmp_path, capsys):
    def finishes(cell_config, cell_dir):
        checkpoint.write_json(os.path.join(cell_dir, "metrics.json"), {"test_accuracy": 0.5})

    sweep._sweep_and_summarise(_one_cell_sweep(), str(tmp_path), train_fn=finishes)
    assert capsys.readouterr().out.splitlines()[-1].startswith("1 cells, 0 failed; ")


def test_a_refusing_disk_stops_the_sweep_instead_of_failing_every_cell(tmp_path):
    ran = []

    def disk_full(cell_config, cell_dir):
        ran.append(cell_dir)
        raise OSError(errno.ENOSPC, "No space left on device", cell_dir)

    config = _one_cell_sweep()
    config.sweep.seeds = (0, 1)
    with pytest.raises(OSError, match="No space left on device"):
        sweep.run_sweep(config, str(tmp_path), train_fn=disk_full)
    assert len(ran) == 1 and not os.path.exists(os.path.join(ran[0], sweep_cells.CELL_RECORD))


# D. An override of a key that does not exist.

def test_a_key_that_does_not_exist_names_its_level_and_the_closest_keys():
    config = tiny_config()
    assert cli.unknown_key(config, "model.num_classes") == (
        "--config.model.num_classes: 'num_classes' is not a key of config.model; its keys "
        "are kernels, name")
    assert cli.unknown_key(config, "prune.sparsty") == (
        "--config.prune.sparsty: 'sparsty' is not a key of config.prune; did you mean "
        "--config.prune.sparsity?")
    assert cli.unknown_key(config, "seed.value").startswith(
        "--config.seed.value: config.seed is a value (0), not a group of keys")
    assert cli.unknown_key(config, "train.lr_schedule.base_lr") is None


def test_the_command_line_names_a_key_that_does_not_exist(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "force_jax.train", "--config=configs/default.py",
         f"--workdir={tmp_path / 'run'}", "--config.model.num_classes=5"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --config.model.num_classes: 'num_classes' is not a key of config.model; its "
        "keys are kernels, name")
    assert not os.listdir(tmp_path)


# E. A disk that refuses a write.

def test_a_full_disk_during_a_result_file_names_the_file_and_keeps_the_old_one(
        tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    checkpoint.write_json(str(path), {"step": 1})

    def disk_full(fd):  # what the OS says when the data cannot be flushed
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError) as refused:
        checkpoint.write_json(str(path), {"step": 2})
    assert (refused.value.errno, refused.value.filename) == (errno.ENOSPC, str(path))
    assert path.read_text() == '{\n  "step": 1\n}\n' and os.listdir(tmp_path) == ["metrics.json"]


def test_orbax_s_report_of_a_full_disk_is_read_as_an_os_error():
    tensorstore = ValueError(
        'RESOURCE_EXHAUSTED: Error writing local file "/w/checkpoints/0.orbax-checkpoint-tmp/'
        'x": Failed to write 6075 bytes to file 6: No space left on device '
        "[os_error_code='28']")
    refused = disk.disk_error(tensorstore)
    assert (refused.errno, refused.filename) == (
        errno.ENOSPC, "/w/checkpoints/0.orbax-checkpoint-tmp/x")
    assert disk.disk_error(tensorstore, "/w/checkpoints/0").filename == "/w/checkpoints/0"
    assert disk.disk_error(ValueError("boom")) is None
    assert disk.disk_error(FileNotFoundError(errno.ENOENT, "No such file", "x")) is None


@pytest.fixture
def small_disk(tmp_path):
    """A mount function: a tmpfs of the given size (and options) under tmp_path, or a skip."""
    mounted = []

    def mount(size: str, *options: str):
        folder = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
        folder.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}",
                                                                           *options]),
                                 "tmpfs", str(folder)], capture_output=True, text=True)
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_disk_that_fills_during_a_checkpoint_is_one_line_and_keeps_the_last_one(
        small_disk, capfd):
    disk = small_disk("64k")
    mngr = checkpoint.manager(str(disk / "checkpoints"))
    try:
        checkpoint.save_state(mngr, 0, {"w": np.zeros(4, np.float32)})
        big = {"w": np.random.default_rng(0).standard_normal(300_000).astype(np.float32)}
        capfd.readouterr()
        with pytest.raises(SystemExit) as exited:  # 1.2 MB that do not compress, on 64 KiB
            cli.run_command(lambda config, workdir: checkpoint.save_state(mngr, 1, big), None,
                            str(disk))
        assert exited.value.code == 2
        assert capfd.readouterr().err.splitlines() == [
            f"error: cannot write {disk}/checkpoints/1: No space left on device; free some "
            "space (or use a --workdir on another disk) and rerun the same command: a run "
            "resumes from its last complete checkpoint"]
        mngr.reload()
        assert mngr.all_steps() == [0]
    finally:
        mngr.close()


def test_a_read_only_disk_is_one_line_naming_the_result_file(small_disk, capsys):
    disk = small_disk("64k", "ro")
    with pytest.raises(SystemExit) as exited:
        cli.run_command(lambda config, workdir: checkpoint.write_json(
            os.path.join(workdir, "prune.json"), {}), None, str(disk))
    assert exited.value.code == 2
    assert capsys.readouterr().err == (f"error: cannot write {disk}/prune.json: Read-only file "
                                       "system; use a --workdir on a writable disk\n")
