"""A workdir answers to its config: a rerun with other defining settings is refused with the
differing keys listed, config.json is left as it was, and settings that change neither the
result nor what its numbers mean (where the data lives, the device layout, how the evaluated
examples are cut into batches) may differ."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from train_test import needs_real_data, tiny_config

from force_jax.commands import train
from force_jax.errors import WorkdirError
from force_jax.runs import checkpoint, workdir


def test_only_defining_settings_count_as_differences():
    base = tiny_config()  # evaluations of 2 batches of 100 examples
    moved = tiny_config(**{"data.data_dir": "/elsewhere", "eval_batch_size": 50,
                           "eval_max_batches": 4, "mesh.num_devices": 8, "distributed": True,
                           "cluster.num_processes": 2, "data.download": True})
    assert workdir.differences(workdir.config_record(base), workdir.config_record(moved)) == []
    changed = tiny_config(**{"prune.method": "random", "prune.sparsity": 0.5, "seed": 3})
    assert workdir.differences(workdir.config_record(base), workdir.config_record(changed)) == [
        'prune.method: "force" -> "random"', "prune.sparsity: 0.99 -> 0.5", "seed: 0 -> 3"]
    recorded = workdir.config_record(base)
    del recorded["prune"]["temperature"]  # a key the recorded run did not have
    assert workdir.differences(recorded, workdir.config_record(base)) == [
        'prune.temperature: "(absent)" -> 1.0']


@pytest.mark.parametrize("overrides, line", [
    ({"eval_batch_size": 50}, f"{workdir.EVALUATED_EXAMPLES}: 200 -> 100"),
    ({"eval_max_batches": 3}, f"{workdir.EVALUATED_EXAMPLES}: 200 -> 300"),
    ({"eval_max_batches": -1}, f'{workdir.EVALUATED_EXAMPLES}: 200 -> "whole split"'),
    ({"eval_every_steps": 1}, "eval_every_steps: 3 -> 1"),
])
def test_what_changes_the_evaluation_is_defining(overrides, line):
    base = workdir.config_record(tiny_config())
    assert workdir.differences(base, workdir.config_record(tiny_config(**overrides))) == [line]


def test_the_evaluation_batch_size_is_free_when_whole_splits_are_evaluated():
    whole = workdir.config_record(tiny_config(eval_max_batches=-1))
    resized = workdir.config_record(tiny_config(eval_max_batches=0, eval_batch_size=50))
    assert workdir.differences(whole, resized) == []


def test_a_key_added_later_matches_records_made_before_it_at_its_neutral_value():
    recorded = workdir.config_record(tiny_config())
    del recorded["prune"]["ablation"]  # a run recorded before sanity checks existed
    del recorded["model"]["kernels"]  # and before the per-backend kernel choice
    del recorded["prune"]["augment"]  # and before streamed pruning batches
    del recorded["prune"]["layer_floor"]  # and before the per-layer floor
    del recorded["prune"]["scope"], recorded["prune"]["allocation"]  # and the layer-wise scope
    del recorded["prune"]["prospr"], recorded["prune"]["ntk_sap"]  # and the methods' options
    del recorded["train"]["mask_changes"]  # and masks that change during training
    del recorded["lottery"]  # and lottery tickets
    assert workdir.ADDED_KEYS == {"prune.ablation": "none", "model.kernels": "auto",
                                  "prune.augment": False, "train.optimizer": "sgd",
                                  "prune.layer_floor": 0, "prune.scope": "global",
                                  "prune.allocation": "", "prune.prospr.inner_steps": 3,
                                  "prune.prospr.inner_lr": 0.1, "prune.prospr.inner_momentum": 0.0,
                                  "prune.prospr.first_order": False, "prune.prospr.new_data": True,
                                  "prune.ntk_sap.epsilon": 0.01, "prune.ntk_sap.samples": 5,
                                  "prune.ntk_sap.noise_batch": 100,
                                  "train.mask_changes.method": "none",
                                  "train.mask_changes.sparsity": None,
                                  "train.mask_changes.scope": "global",
                                  "train.mask_changes.drop_fraction": 0.3,
                                  "train.mask_changes.start": 0, "train.mask_changes.end": None,
                                  "train.mask_changes.every": 100,
                                  "lottery.rounds": 0, "lottery.rewind_step": 0}
    assert workdir.differences(recorded, workdir.config_record(tiny_config())) == []
    floored = workdir.config_record(tiny_config(**{"prune.layer_floor": 8}))
    assert workdir.differences(recorded, floored) == ["prune.layer_floor: 0 -> 8"]
    prospr = workdir.config_record(tiny_config(**{"prune.prospr.inner_lr": 0.5}))
    assert workdir.differences(recorded, prospr) == ["prune.prospr.inner_lr: 0.1 -> 0.5"]
    shuffled = workdir.config_record(tiny_config(**{"prune.ablation": "shuffle"}))
    assert workdir.differences(recorded, shuffled) == ['prune.ablation: "none" -> "shuffle"']
    # The other way round too: a config without the key means its neutral value.
    assert workdir.differences(workdir.config_record(tiny_config()), recorded) == []
    plain = workdir.config_record(tiny_config(**{"model.kernels": "plain"}))
    assert workdir.differences(recorded, plain) == ['model.kernels: "auto" -> "plain"']


def test_the_checkpoints_config_record_ignores_what_is_not_defining(tmp_path):
    workdir.record_checkpoint_config(str(tmp_path), tiny_config())
    workdir.check_checkpoint_config(str(tmp_path), tiny_config(**{"data.data_dir": "/elsewhere"}))
    with pytest.raises(WorkdirError, match="train.num_steps: 6 -> 12"):
        workdir.check_checkpoint_config(str(tmp_path), tiny_config(**{"train.num_steps": 12}))


@pytest.mark.slow
@needs_real_data
def test_a_hand_edited_config_record_cannot_resume_the_old_checkpoints(tmp_path):
    run = str(tmp_path / "run")
    train.train_and_evaluate(tiny_config(), run)
    record = os.path.join(run, "config.json")
    edited = json.loads(open(record).read())
    edited["train"]["num_steps"] = 12  # a hand edit, to resume with more steps
    with open(record, "w") as f:
        json.dump(edited, f)
    with pytest.raises(WorkdirError, match="config.json was edited after they were made"):
        train.train_and_evaluate(tiny_config(**{"train.num_steps": 12}), run)


def test_results_without_a_config_record_are_refused(tmp_path):
    assert workdir.check_config(str(tmp_path / "new"), tiny_config()) is False
    (tmp_path / "prune.json").write_text("{}")
    with pytest.raises(WorkdirError, match="holds results \\(prune.json\\) but no config.json"):
        workdir.check_config(str(tmp_path), tiny_config())


@pytest.mark.slow
@needs_real_data
def test_a_changed_config_on_a_finished_run_is_refused_and_its_record_kept(tmp_path,
                                                                           monkeypatch):
    config = tiny_config()
    run = tmp_path / "run"
    # metrics.jsonl deleted by hand during the run, after the step-3 checkpoint: the run
    # rewrites it whole from memory, so the best validation accuracy covers both records.
    save_state = checkpoint.save_state

    def save_then_lose_metrics(mngr, step, state):
        save_state(mngr, step, state)
        if step == 3:
            os.remove(run / "metrics.jsonl")

    monkeypatch.setattr(checkpoint, "save_state", save_then_lose_metrics)
    final = train.train_and_evaluate(config, str(run))
    monkeypatch.undo()
    records = checkpoint.read_jsonl(str(run / "metrics.jsonl"))
    assert [r["step"] for r in records] == [3, 6]
    assert final["best_validation_accuracy"] == max(r["validation_accuracy"] for r in records)

    recorded = (run / "config.json").read_text()
    assert json.loads(recorded)["prune"]["method"] == "force"
    results = {name: (run / name).read_text() for name in ("metrics.json", "prune.json")}
    changed = tiny_config(**{"prune.method": "random", "prune.sparsity": 0.5, "prune.steps": 1})
    with pytest.raises(WorkdirError) as refused:
        train.train_and_evaluate(changed, str(run))
    message = str(refused.value)
    assert 'prune.method: "force" -> "random"' in message
    assert "prune.sparsity: 0.99 -> 0.5" in message and "new --workdir" in message
    with pytest.raises(WorkdirError, match='model.name: "lenet5" -> "mlp"'):
        train.train_and_evaluate(tiny_config(**{"model.name": "mlp"}), str(run))
    assert (run / "config.json").read_text() == recorded
    assert {name: (run / name).read_text() for name in results} == results

    # Where the data lives, and how the same evaluated examples are cut into batches, do
    # not define the result: accepted, with the same numbers.
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    moved = tiny_config(**{"data.data_dir": config.data.data_dir + "/", "eval_batch_size": 50,
                           "eval_max_batches": 4})
    again = train.train_and_evaluate(moved, str(copy))
    assert again["test_accuracy"] == final["test_accuracy"]
    assert json.loads((copy / "config.json").read_text())["eval_batch_size"] == 50
    # Fewer evaluated examples would change what the accuracy means: refused.
    with pytest.raises(WorkdirError, match="evaluated examples .*: 200 -> 100"):
        train.train_and_evaluate(tiny_config(eval_batch_size=50), str(copy))


def test_a_run_that_failed_before_any_result_does_not_block_its_fix(tmp_path):
    workdir.record_config(str(tmp_path), tiny_config(**{"train.lr_schedule.name": "linear"}))
    (tmp_path / "checkpoints").mkdir()  # created empty before the failure
    assert workdir.check_config(str(tmp_path), tiny_config()) is False
    (tmp_path / "checkpoints" / "0").mkdir()
    with pytest.raises(WorkdirError, match='train.lr_schedule.name: "linear" -> "cosine"'):
        workdir.check_config(str(tmp_path), tiny_config())
