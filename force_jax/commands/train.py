"""Prune at initialisation, then train and evaluate a sparse classifier.

    python -m force_jax.train --config=configs/default.py --workdir=/tmp/run \
        --config.data.data_dir=../shared/datasets/tfds

Rerunning the same command on the same workdir resumes from the last
checkpoint and reaches the same result as an uninterrupted run: the mask and
optimizer state are in the checkpoint, and the data stream restarts at the
checkpointed step.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh
from tqdm.auto import tqdm

from force_jax import optim
from force_jax.config import mask_changes as mask_changes_config
from force_jax.config import pruning_run, setup, training_setup, validate
from force_jax.core import compile_options, masks, sharding
from force_jax.errors import ConfigError, DivergedError
from force_jax.runs import checkpoint
from force_jax.runs import metrics as metrics_lib
from force_jax.runs import workdir as workdir_lib
from force_jax.training import cluster, data, steps

PyTree = Any


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Prunes at initialisation, trains, evaluates, checkpoints and writes metrics.

    The workdir is locked for the run (one run per workdir) and answers to
    its config: a rerun with other defining settings is refused (see
    `force_jax.runs.workdir`).

    Args:
      config: experiment config (see configs/default.py for every key).
      workdir: output folder; rerunning on it resumes from the last checkpoint.

    Returns:
      The final metrics, also written to workdir/metrics.json.

    Raises:
      ConfigError: for bad config values, a workdir of another config or one
        in use by another run, unreadable checkpoints or metrics.
    """
    validate.validate_config(config)
    workdir_lib.check_location(workdir)
    cluster.initialize_distributed(config.distributed, config.get("cluster"))
    mesh = _mesh(config)
    exp = setup.experiment(config)
    if mask_changes_config.method(config) != "none":  # before pruning: its end within the run
        total_steps = training_setup.run_length(config, exp.info.num_train)[0]
        mask_changes_config.end_step(config, total_steps)
    with workdir_lib.claim(workdir, config):
        return _run(config, workdir, mesh, exp)


def _prune_or_restore(
    config: ml_collections.ConfigDict, model: nn.Module, variables: PyTree, key: jax.Array,
    new_state: Any, mngr: Any, template: steps.TrainState, workdir: str,
    mesh: Mesh | None, image_shape: tuple[int, ...], place: Any,
) -> tuple[steps.TrainState, int, list[dict]]:
    """The state to train from: the last readable checkpoint, or a fresh prune at step 0.

    `new_state(variables, mask)` builds the train state of a fresh start. A
    fresh start writes prune.json, an empty metrics.jsonl and the step-0
    checkpoint of the new state placed on the mesh by `place` (every array
    global, as a multi-process checkpoint needs); a resume validates
    metrics.jsonl and cuts it back to the checkpointed step. Also returns the
    metrics records so far.
    """
    is_main = jax.process_index() == 0
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    restored = checkpoint.restore_state(mngr, template, set_aside=is_main)
    # Process 0 set damaged checkpoints aside: every process forgets them before saving.
    cluster.barrier("checkpoints restored")
    mngr.reload()
    if restored is not None:
        workdir_lib.check_checkpoint_config(workdir, config)
        state, step = restored
        cluster.check_same_on_all_processes(step, "restored checkpoint step")
        records = checkpoint.resume_records(metrics_path, step)
        if is_main:
            checkpoint.write_jsonl(metrics_path, records)
            print(f"resuming from the checkpoint of step {step}")
        return state, step, records
    start = time.perf_counter()
    mask, history = pruning_run.prune_at_init(config, model, variables, key, mesh)
    prune_seconds = time.perf_counter() - start
    # Each process's own replica, as int32 bits (what the cross-process gather carries).
    local = np.asarray(masks.fingerprint(mask).addressable_data(0)).view(np.int32)
    cluster.check_same_on_all_processes(int(local), "pruning mask fingerprint")
    start_variables = setup.initial_variables(config, model, image_shape, variables,
                                              mask)
    state = place(new_state(start_variables, mask))
    if is_main:
        report = pruning_run.mask_report(model, variables, mask, image_shape)
        print(report)
        checkpoint.write_json(os.path.join(workdir, "prune.json"),
                              pruning_run.prune_record(config, prune_seconds, report, history))
        checkpoint.write_jsonl(metrics_path, [])
        workdir_lib.record_checkpoint_config(workdir, config)
    checkpoint.save_state(mngr, 0, state)
    return state, 0, []


def _evaluate_splits(config: ml_collections.ConfigDict, eval_fn,
                     state: steps.TrainState) -> dict:
    """validation_* and test_* loss and accuracy (validation only when it is held out)."""
    record = {}
    for split in ("validation", "test"):
        if split == "validation" and config.data.validation_fraction == 0:
            continue
        batches = data.eval_iterator(
            config.data.name, split, batch_size=config.eval_batch_size // jax.process_count(),
            data_dir=config.data.data_dir, validation_fraction=config.data.validation_fraction,
            process_index=jax.process_index(), process_count=jax.process_count(),
        )
        result = steps.evaluate(eval_fn, state, batches, config.eval_max_batches)
        record |= {f"{split}_{k}": v for k, v in result.items()}
    return record


def check_finite(config: ml_collections.ConfigDict, record: dict, first_step: int,
                 last_step: int) -> None:
    """Stops a run whose training or evaluation loss is NaN or infinite.

    Called at each evaluation before anything is recorded or checkpointed, so
    the last checkpoint on disk is the last finite state and no metrics that
    look like results are written.

    Args:
      config: experiment config (named in the message).
      record: metrics of the evaluation step (keys ending in "loss" are checked).
      first_step: the last checkpointed step before this window.
      last_step: the step being evaluated.

    Raises:
      DivergedError: naming the loss, the steps and the likely keys.
    """
    bad = {k: v for k, v in record.items() if k.endswith("loss") and not math.isfinite(v)}
    if not bad:
        return
    name, value = next(iter(bad.items()))
    lr = config.train.lr_schedule
    raise DivergedError(
        f"{name} is {value} at step {last_step} (steps {first_step + 1} to {last_step}): the "
        f"run diverged. Likely keys: config.train.lr_schedule.base_lr={lr.base_lr!r} (try a "
        f"smaller one), config.train.weight_decay={config.train.weight_decay!r}, "
        f"config.train.momentum={config.train.momentum!r}; a label outside the model's classes "
        f"also gives NaN. The checkpoint of step {first_step} is kept; no final metrics were "
        "written.")


def _final_metrics(records: list[dict]) -> dict:
    """The last evaluation record plus the best validation accuracy of the run."""
    final = records[-1]
    validation = [r["validation_accuracy"] for r in records if "validation_accuracy" in r]
    if validation:
        final = final | {"best_validation_accuracy": max(validation)}
    return final


REWIND_POINT = "rewind_point"  # the weights a lottery ticket's later rounds rewind to


def _save_rewind_point(config: ml_collections.ConfigDict, workdir: str, step: int,
                       state: steps.TrainState) -> None:
    """The first (dense) round of a lottery run keeps its weights at lottery.rewind_step."""
    lottery = config.get("lottery")
    if lottery and lottery.rounds and config.prune.sparsity == 0 and step == lottery.rewind_step:
        checkpoint.save_tree(os.path.join(workdir, REWIND_POINT),
                             {"params": state.params, "batch_stats": state.batch_stats})


def _mesh(config: ml_collections.ConfigDict) -> Mesh:
    """The config's device mesh, the batch sizes checked against it (ConfigError names the key)."""
    try:
        mesh = sharding.make_mesh(config.mesh.num_devices)
    except ValueError as error:
        raise ConfigError(f"config.mesh.{error}") from None
    try:
        sharding.check_batch_size(config.train.batch_size, mesh, "config.train.batch_size")
        sharding.check_batch_size(config.eval_batch_size, mesh, "config.eval_batch_size")
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return mesh


class _Plan(NamedTuple):
    """What the training loop of one run needs besides its state and records."""

    config: ml_collections.ConfigDict
    workdir: str
    mesh: Mesh
    mngr: Any  # the run's orbax CheckpointManager
    schedule: optax.Schedule
    total_steps: int
    steps_per_epoch: int


def _run(config: ml_collections.ConfigDict, workdir: str, mesh: Mesh,
         exp: setup.Experiment) -> dict:
    """The body of `train_and_evaluate`, on a locked workdir that answers to `config`."""
    info, model, variables, prune_key = exp
    total_steps, _, steps_per_epoch = training_setup.run_length(config, info.num_train)
    schedule = training_setup.make_lr_schedule(config, info.num_train)

    def shard(state):  # place a state on the mesh; its static fields vary by instance
        layout = sharding.param_shardings(state, mesh, fsdp=config.mesh.fsdp)
        return sharding.put_replicated_copy(state, layout)

    def new_state(start_variables, mask):
        return training_setup.initial_state(config, model, start_variables, mask, schedule,
                                            total_steps)

    mngr = checkpoint.manager(os.path.join(workdir, "checkpoints"))
    template = new_state(variables, masks.init_mask(variables["params"]))
    try:
        state, step, records = _prune_or_restore(config, model, variables, prune_key, new_state,
                                                 mngr, shard(template), workdir, mesh,
                                                 info.image_shape, shard)
        plan = _Plan(config, workdir, mesh, mngr, schedule, total_steps, steps_per_epoch)
        records, state = _train(plan, state, step, records)
        final = _final_metrics(records) | pruning_run.final_mask_counts(
            config, exp, state.opt_state)
        if jax.process_index() == 0:
            checkpoint.write_json(os.path.join(workdir, "metrics.json"), final)
            print(f"test accuracy {final.get('test_accuracy', float('nan')):.4f}")
        return final
    finally:
        mngr.close()  # its background threads and file handles


def _compiled_steps(state: steps.TrainState, mesh: Mesh, fsdp: bool) -> tuple[Any, Any]:
    """The jitted train step (state donated, kept in its layout) and the evaluation step.

    The state is on the mesh already (placed at step 0, or restored into the
    placed template); placing it again would fetch FSDP shards held by other
    processes.
    """
    shardings = sharding.param_shardings(state, mesh, fsdp=fsdp)
    train_step = compile_options.jit(steps.train_step, donate_argnums=0,
                                     out_shardings=(shardings, sharding.replicated(mesh)))
    jit_eval_step = compile_options.jit(steps.eval_step, out_shardings=sharding.replicated(mesh))

    def eval_step(state, local_batch):
        return jit_eval_step(state, sharding.global_batch(local_batch, mesh))

    return train_step, eval_step


def _train(plan: _Plan, state: steps.TrainState, step: int,
           records: list[dict]) -> tuple[list[dict], steps.TrainState]:
    """Trains from `step` to the end, evaluating, recording and checkpointing every window.

    Returns the records of every window and the final state.
    """
    config, processes = plan.config, jax.process_count()
    is_main = jax.process_index() == 0
    train_iter = data.train_iterator(
        config.data.name, batch_size=config.train.batch_size // processes, seed=config.seed,
        data_dir=config.data.data_dir, validation_fraction=config.data.validation_fraction,
        augment=config.data.augment, start_step=step, download=config.data.download,
        process_index=jax.process_index(), process_count=processes)
    train_step, eval_step = _compiled_steps(state, plan.mesh, config.mesh.fsdp)
    eval_every = config.eval_every_steps if config.eval_every_steps > 0 else plan.steps_per_epoch
    # Redraw every 30 s when the output is a log file rather than a terminal.
    bar = tqdm(total=plan.total_steps, initial=step, desc="train", disable=not is_main,
               mininterval=0.1 if sys.stderr.isatty() else 30.0)
    writer = metrics_lib.create_writer(plan.workdir, is_main=is_main, records=records,
                                        print_fn=bar.write)
    window_start, window_steps, train_sums = time.perf_counter(), 0, {}
    try:
        _save_rewind_point(config, plan.workdir, step, state)
        while step < plan.total_steps:
            state, metrics = train_step(state, sharding.global_batch(next(train_iter), plan.mesh))
            step += 1
            _save_rewind_point(config, plan.workdir, step, state)
            window_steps += 1
            train_sums = {k: train_sums.get(k, 0.0) + v for k, v in metrics.items()}
            bar.update(1)
            if step % eval_every and step != plan.total_steps:
                continue
            seconds = time.perf_counter() - window_start
            record = _window_record(plan, state, step, window_steps, train_sums, seconds,
                                    eval_step)
            records.append(record)
            writer.write_scalars(step, record)  # before the checkpoint: see JsonlWriter
            checkpoint.save_state(plan.mngr, step, state)
            window_start, window_steps, train_sums = time.perf_counter(), 0, {}
    finally:
        bar.close()
    writer.close()
    return records, state


def _window_record(plan: _Plan, state: steps.TrainState, step: int, window_steps: int,
                   train_sums: dict, seconds: float, eval_step: Any) -> dict:
    """The metrics record of the window of steps ending at `step`, checked finite."""
    config = plan.config
    train_means = {f"train_{k}": float(v) / window_steps for k, v in train_sums.items()}
    # Before any evaluation, record or checkpoint: a NaN sum means some step of the
    # window diverged, and the last checkpoint is then the last finite state.
    check_finite(config, train_means, step - window_steps, step)
    mask = optim.mask_from_state(state.opt_state)
    record = {
        "step": step, "epoch": step / plan.steps_per_epoch,
        "learning_rate": float(plan.schedule(step)),
        "global_density": float(masks.num_kept(mask)) / masks.num_prunable(mask),
        "images_per_second": window_steps * config.train.batch_size / seconds,
        **train_means,
        **_evaluate_splits(config, eval_step, state),
    }
    check_finite(config, record, step - window_steps, step)
    return record


def main() -> None:
    """Command line: --config=configs/x.py --workdir=DIR [--config.key=value ...]."""
    from force_jax.commands import cli

    cli.run_config_command(train_and_evaluate, "Output folder; rerun on it to resume.")


if __name__ == "__main__":
    main()
