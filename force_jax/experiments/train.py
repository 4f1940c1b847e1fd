"""Prune at initialisation, then train and evaluate a sparse classifier.

    python -m force_jax.train --config=configs/default.py --workdir=/tmp/run \
        --config.data.data_dir=../shared/datasets/tfds

Rerunning the same command on the same workdir resumes from the last
checkpoint and reaches the same result as an uninterrupted run: the mask and
optimiser state are in the checkpoint, and the data stream restarts at the
checkpointed step.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tensorflow as tf
from flax.training import train_state
from jax.sharding import Mesh
from tqdm.auto import tqdm

from force_jax import models as models_lib
from force_jax.core import compile_options, losses, masks, pruning_stream, sanity, sharding
from force_jax.core.pruning import prune as prune_params
from force_jax.errors import ConfigError
from force_jax.experiments import workdir as workdir_lib
from force_jax.training import checkpoint, cluster, data, optim

PyTree = Any


class TrainState(train_state.TrainState):
    """Params, optimiser state (which holds the mask) and BatchNorm statistics."""

    batch_stats: PyTree


def build_model(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
    """The configured Flax model.

    Args:
      config: experiment config (uses config.model).
      num_classes: classifier width.

    Returns:
      A Flax Linen module.
    """
    kwargs = {k: v for k, v in config.model.items() if k != "name"}
    return models_lib.get_model(config.model.name, num_classes, **kwargs)


def init_variables(model: nn.Module, image_shape: tuple[int, ...], key: jax.Array) -> PyTree:
    """Initialises the model's variables on a dummy batch of one."""
    return jax.jit(functools.partial(model.init, train=False))(
        key, jnp.zeros((1, *image_shape), jnp.float32)
    )


def prune_at_init(
    config: ml_collections.ConfigDict, model: nn.Module, variables: PyTree, key: jax.Array,
    mesh: Mesh | None = None,
) -> tuple[PyTree, Any]:
    """Runs the configured pruning method on training examples (`pruning_examples`).

    Every process computes the same mask: from the same pool, or from one
    stream of global batches to which each process gives its own slice.
    With ``config.prune.ablation`` "invert" the method keeps its lowest scores
    at every step; with "shuffle" the final mask's kept positions are redrawn
    at random within each layer (key `sanity.ablation_key(config.seed)`).

    Args:
      config: experiment config (uses config.data, config.prune, config.seed).
      model: the Flax model.
      variables: its variables at initialisation.
      key: PRNG key of the pruning schedule.
      mesh: device mesh the pruning batches are split over (None: one device).

    Returns:
      (mask, history) from `force_jax.prune`, the mask after the ablation.
    """
    cfg = config.prune
    examples = pruning_examples(config)
    loss_fn = losses.classification_loss(
        model, variables, loss=cfg.scoring_loss, temperature=cfg.temperature
    )
    synflow_fn = None
    if cfg.method == "synflow":
        if pruning_stream.is_stream(examples):
            image_shape = data.dataset_info(
                config.data.name, config.data.data_dir,
                validation_fraction=config.data.validation_fraction).image_shape
        else:
            image_shape = examples["image"].shape[1:]
        synflow_fn = losses.synflow_objective(model, variables, image_shape)
    ablation = cfg.get("ablation", "none")
    mask, history = prune_params(
        loss_fn, variables["params"], examples, method=cfg.method, sparsity=cfg.sparsity,
        steps=cfg.steps, schedule=cfg.schedule,
        batch_size=cfg.batch_size, batches_per_step=cfg.batches_per_step, key=key,
        synflow_fn=synflow_fn, on_collapse=cfg.on_collapse, mesh=mesh,
        invert_scores=ablation == "invert",
    )
    if ablation == "shuffle":
        mask = sanity.shuffle_within_layers(mask, sanity.ablation_key(config.seed))
    return mask, history


def pruning_examples(config: ml_collections.ConfigDict) -> Any:
    """The examples the pruning batches come from: a pool, or a stream of fresh batches.

    With config.prune.pool_size > 0, a pool of that many unaugmented training
    examples, the same on every process (`data.load_examples`, seed
    config.seed). With pool_size 0, the paper code's way: an endless stream of
    training batches (augmented if config.prune.augment), each process reading
    its own slice of the split and holding batch_size / process_count
    examples of each batch, from which every pruning step takes fresh ones.
    Its shuffle seed is -1 - config.seed, never a training run's seed.

    Args:
      config: experiment config (uses config.data, config.prune, config.seed).

    Returns:
      A dict of numpy arrays (pool) or an iterator of such dicts (stream).

    Raises:
      ConfigError: when prune.batch_size does not divide over the processes.
    """
    cfg = config.prune
    if cfg.pool_size:
        return data.load_examples(
            config.data.name, "train", num_examples=cfg.pool_size,
            data_dir=config.data.data_dir, seed=config.seed,
            validation_fraction=config.data.validation_fraction, download=config.data.download)
    processes = jax.process_count()
    if cfg.batch_size % processes:
        raise ConfigError(f"config.prune.batch_size={cfg.batch_size} does not divide over "
                          f"{processes} processes: use a multiple of {processes}")
    return data.train_iterator(
        config.data.name, batch_size=cfg.batch_size // processes, seed=-1 - config.seed,
        data_dir=config.data.data_dir, validation_fraction=config.data.validation_fraction,
        augment=bool(cfg.get("augment", False)), process_index=jax.process_index(),
        process_count=processes, download=config.data.download)


def initial_variables(config: ml_collections.ConfigDict, model: nn.Module,
                      image_shape: tuple[int, ...], variables: PyTree, mask: PyTree) -> PyTree:
    """The variables training starts from: those pruned, or new ones for "reinit".

    Args:
      config: experiment config (uses config.prune.ablation and config.seed).
      model: the Flax model.
      image_shape: shape of one input image.
      variables: the variables the mask was found at.
      mask: the mask.

    Returns:
      `variables`, or with ablation "reinit" the model's own initialisation at
      `sanity.ablation_key(config.seed)`, masked.
    """
    if config.prune.get("ablation", "none") != "reinit":
        return variables
    return sanity.reinitialize(lambda k: init_variables(model, image_shape, k),
                               sanity.ablation_key(config.seed), mask)


def prune_record(config: ml_collections.ConfigDict, seconds: float,
                 report: masks.SparsityReport, history: Any) -> dict:
    """The JSON record of a pruning run (prune.json).

    Args:
      config: experiment config.
      seconds: wall time of the pruning.
      report: sparsity report of the mask.
      history: the `History` returned by `prune`.

    Returns:
      A JSON-ready dict: method, sparsity, ablation, seconds, backend, the
      kernels the model used ("cpu" rewrites or "plain"), report, history.
    """
    return {
        "method": config.prune.method, "sparsity": config.prune.sparsity,
        "ablation": config.prune.get("ablation", "none"), "seconds": seconds,
        # What config.model.kernels resolved to here: numerics differ between the two.
        "backend": jax.default_backend(),
        "kernels": "cpu" if models_lib.kernels.use_cpu_kernels(
            config.model.get("kernels", "auto")) else "plain",
        "report": report.as_dict(),
        "history": {k: np.asarray(v).tolist() for k, v in history._asdict().items()},
    }


def create_train_state(
    config: ml_collections.ConfigDict, model: nn.Module, variables: PyTree, mask: PyTree,
    schedule: optax.Schedule,
) -> TrainState:
    """Masked params and an SGD optimiser that keeps pruned weights at zero.

    Args:
      config: experiment config (uses config.train).
      model: the Flax model.
      variables: its variables at initialisation (dense).
      mask: the pruning mask.
      schedule: learning-rate schedule.

    Returns:
      The initial TrainState; pruned weights are exactly zero.
    """
    tx = optim.sgd_with_mask(
        mask=mask, learning_rate=schedule, momentum=config.train.momentum,
        weight_decay=config.train.weight_decay, nesterov=config.train.nesterov,
    )
    state = TrainState.create(
        apply_fn=model.apply, params=masks.apply_mask(variables["params"], mask), tx=tx,
        batch_stats=variables.get("batch_stats", {}),
    )
    # An int32 array step from the start: a Python int 0 would compile the step twice.
    return state.replace(step=jnp.zeros((), jnp.int32))


def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    """One SGD step on a batch, BatchNorm statistics updated."""

    def loss_fn(params):
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats}, batch["image"], train=True,
            mutable=["batch_stats"],
        )
        return losses.logits_loss(logits, batch["label"]), (logits, updates)

    (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=updates.get("batch_stats", {}))
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return state, {"loss": loss, "accuracy": accuracy}


def eval_step(state: TrainState, batch: dict) -> dict:
    """Sums of loss and correct predictions over the real examples of a batch."""
    logits = state.apply_fn(
        {"params": state.params, "batch_stats": state.batch_stats}, batch["image"], train=False
    )
    per_example = optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), batch["label"]
    )
    weight = batch["mask"]
    return {
        "loss": jnp.sum(per_example * weight),
        "correct": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * weight),
        "count": jnp.sum(weight),
    }


def evaluate(eval_fn, state: TrainState, batches: Iterator[dict], max_batches: int) -> dict:
    """Loss and accuracy over a whole split (or its first max_batches batches)."""
    totals = {"loss": 0.0, "correct": 0.0, "count": 0.0}
    for index, batch in enumerate(batches):
        if 0 < max_batches <= index:
            break
        sums = eval_fn(state, batch)
        totals = {k: totals[k] + float(sums[k]) for k in totals}
    count = max(totals["count"], 1.0)
    return {"loss": totals["loss"] / count, "accuracy": totals["correct"] / count}


def _write_summaries(writer, step: int, metrics: dict) -> None:
    with writer.as_default(step=step):
        for name, value in metrics.items():
            if isinstance(value, int | float):
                tf.summary.scalar(name, value)
    writer.flush()


def _prune_or_restore(
    config: ml_collections.ConfigDict, model: nn.Module, variables: PyTree, key: jax.Array,
    schedule: optax.Schedule, mngr: Any, template: TrainState, workdir: str,
    mesh: Mesh | None, image_shape: tuple[int, ...], place: Any,
) -> tuple[TrainState, int, list[dict]]:
    """The state to train from: the last readable checkpoint, or a fresh prune at step 0.

    A fresh start writes prune.json, an empty metrics.jsonl and the step-0
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
        state, step = restored
        cluster.check_same_on_all_processes(step, "restored checkpoint step")
        records = checkpoint.resume_records(metrics_path, step)
        if is_main:
            checkpoint.write_jsonl(metrics_path, records)
            print(f"resuming from the checkpoint of step {step}")
        return state, step, records
    start = time.perf_counter()
    mask, history = prune_at_init(config, model, variables, key, mesh)
    prune_seconds = time.perf_counter() - start
    # Each process's own replica, as int32 bits (what the cross-process gather carries).
    local = np.asarray(masks.fingerprint(mask).addressable_data(0)).view(np.int32)
    cluster.check_same_on_all_processes(int(local), "pruning mask fingerprint")
    start_variables = initial_variables(config, model, image_shape, variables, mask)
    state = place(create_train_state(config, model, start_variables, mask, schedule))
    if is_main:
        report = masks.sparsity_report(mask)
        print(report)
        checkpoint.write_json(os.path.join(workdir, "prune.json"),
                              prune_record(config, prune_seconds, report, history))
        checkpoint.write_jsonl(metrics_path, [])
    checkpoint.save_state(mngr, 0, state)
    return state, 0, []


def _evaluate_splits(config: ml_collections.ConfigDict, eval_fn, state: TrainState) -> dict:
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
        result = evaluate(eval_fn, state, batches, config.eval_max_batches)
        record |= {f"{split}_{k}": v for k, v in result.items()}
    return record


def _final_metrics(records: list[dict]) -> dict:
    """The last evaluation record plus the best validation accuracy of the run."""
    final = records[-1]
    validation = [r["validation_accuracy"] for r in records if "validation_accuracy" in r]
    if validation:
        final = final | {"best_validation_accuracy": max(validation)}
    return final


def run_length(config: ml_collections.ConfigDict, num_train: int) -> tuple[int, float, int]:
    """How long a run is, in steps, and how long its schedule's epochs are.

    Args:
      config: experiment config (uses config.train).
      num_train: training examples (all processes).

    Returns:
      (total_steps, schedule_steps_per_epoch, data_steps_per_epoch): the run's
      optimizer steps (config.train.num_steps when set, else num_epochs
      epochs); the steps per epoch of the learning-rate schedule, stretched
      when num_steps is set so that the schedule spans the run; and the steps
      in one pass over the training data.
    """
    data_steps_per_epoch = num_train // config.train.batch_size
    if config.train.num_steps is None:
        total = round(config.train.num_epochs * data_steps_per_epoch)
        return total, data_steps_per_epoch, data_steps_per_epoch
    total = int(config.train.num_steps)
    return total, total / config.train.num_epochs, data_steps_per_epoch


def make_lr_schedule(config: ml_collections.ConfigDict, num_train: int) -> optax.Schedule:
    """The learning-rate schedule of config.train.lr_schedule, spanning the whole run.

    Args:
      config: experiment config.
      num_train: training examples (all processes).

    Returns:
      An optax schedule of the step count.
    """
    total_steps, schedule_steps_per_epoch, _ = run_length(config, num_train)
    return optim.make_schedule(config.train.lr_schedule, total_steps=total_steps,
                               steps_per_epoch=schedule_steps_per_epoch)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Prunes at initialisation, trains, evaluates, checkpoints and writes metrics.

    The workdir is locked for the run (one run per workdir) and answers to
    its config: a rerun with other defining settings is refused (see
    `force_jax.experiments.workdir`).

    Args:
      config: experiment config (see configs/default.py for every key).
      workdir: output folder; rerunning on it resumes from the last checkpoint.

    Returns:
      The final metrics, also written to workdir/metrics.json.

    Raises:
      ConfigError: for bad config values, a workdir of another config or one
        in use by another run, unreadable checkpoints or metrics.
    """
    validate_config(config)
    cluster.initialize_distributed(config.distributed, config.get("cluster"))
    mesh = sharding.make_mesh(config.mesh.num_devices)
    sharding.check_batch_size(config.train.batch_size, mesh, "config.train.batch_size")
    sharding.check_batch_size(config.eval_batch_size, mesh, "config.eval_batch_size")
    info = data.dataset_info(
        config.data.name, config.data.data_dir,
        validation_fraction=config.data.validation_fraction, download=config.data.download,
    )
    check_data_sizes(config, info)
    with workdir_lib.claim(workdir, config):
        return _run(config, workdir, mesh, info)


def _run(config: ml_collections.ConfigDict, workdir: str, mesh: Mesh,
         info: data.DatasetInfo) -> dict:
    """The body of `train_and_evaluate`, on a locked workdir that answers to `config`."""
    processes = jax.process_count()
    is_main = jax.process_index() == 0
    model = build_model(config, info.num_classes)
    init_key, prune_key = jax.random.split(jax.random.key(config.seed))
    variables = init_variables(model, info.image_shape, init_key)
    total_steps, _, steps_per_epoch = run_length(config, info.num_train)
    schedule = make_lr_schedule(config, info.num_train)

    def shard(state):  # place a state on the mesh; its static fields vary by instance
        layout = sharding.param_shardings(state, mesh, fsdp=config.mesh.fsdp)
        return sharding.put_replicated_copy(state, layout), layout

    mngr = checkpoint.manager(os.path.join(workdir, "checkpoints"))
    template = create_train_state(config, model, variables, masks.init_mask(variables["params"]),
                                  schedule)
    try:
        state, step, records = _prune_or_restore(config, model, variables, prune_key, schedule,
                                                 mngr, shard(template)[0], workdir, mesh,
                                                 info.image_shape, lambda s: shard(s)[0])
        metrics_path = os.path.join(workdir, "metrics.jsonl")

        train_iter = data.train_iterator(
            config.data.name, batch_size=config.train.batch_size // processes, seed=config.seed,
            data_dir=config.data.data_dir, validation_fraction=config.data.validation_fraction,
            augment=config.data.augment, start_step=step, download=config.data.download,
            process_index=jax.process_index(), process_count=processes,
        )
        # The state is on the mesh already (placed at step 0, or restored into the placed
        # template); placing it again would fetch FSDP shards held by other processes.
        shardings = sharding.param_shardings(state, mesh, fsdp=config.mesh.fsdp)
        p_train_step = compile_options.jit(train_step, donate_argnums=0,
                                           out_shardings=(shardings, sharding.replicated(mesh)))
        jit_eval_step = compile_options.jit(eval_step, out_shardings=sharding.replicated(mesh))

        def p_eval_step(state, local_batch):
            return jit_eval_step(state, sharding.global_batch(local_batch, mesh))

        writer = None
        if is_main:
            writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
        eval_every = config.eval_every_steps if config.eval_every_steps > 0 else steps_per_epoch
        # Redraw every 30 s when the output is a log file rather than a terminal.
        bar = tqdm(total=total_steps, initial=step, desc="train", disable=not is_main,
                   mininterval=0.1 if sys.stderr.isatty() else 30.0)
        window_start, window_steps, train_sums = time.perf_counter(), 0, {}
        while step < total_steps:
            state, metrics = p_train_step(state, sharding.global_batch(next(train_iter), mesh))
            step += 1
            window_steps += 1
            train_sums = {k: train_sums.get(k, 0.0) + v for k, v in metrics.items()}
            bar.update(1)
            if step % eval_every and step != total_steps:
                continue
            mask = optim.mask_from_state(state.opt_state)
            record = {
                "step": step, "epoch": step / steps_per_epoch,
                "learning_rate": float(schedule(step)),
                "global_density": float(masks.num_kept(mask)) / masks.num_prunable(mask),
                "images_per_second": window_steps * config.train.batch_size
                / (time.perf_counter() - window_start),
                **{f"train_{k}": float(v) / window_steps for k, v in train_sums.items()},
                **_evaluate_splits(config, p_eval_step, state),
            }
            records.append(record)
            if is_main:
                # The whole record list, from memory: a file lost mid-run is rewritten whole.
                checkpoint.write_jsonl(metrics_path, records)
                _write_summaries(writer, step, record)
                bar.write(" ".join(f"{k}={v:.4g}" for k, v in record.items()))
            checkpoint.save_state(mngr, step, state)
            window_start, window_steps, train_sums = time.perf_counter(), 0, {}
        bar.close()
        if writer is not None:
            writer.close()
        final = _final_metrics(records)
        if is_main:
            checkpoint.write_json(os.path.join(workdir, "metrics.json"), final)
            print(f"test accuracy {final.get('test_accuracy', float('nan')):.4f}")
        return final
    finally:
        mngr.close()  # its background threads and file handles


def _check(condition: bool, key: str, value: Any, expected: str) -> None:
    if not condition:
        raise ConfigError(f"config.{key}={value!r}: expected {expected}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Rejects bad values before any data is read or model built.

    Args:
      config: experiment config.

    Raises:
      ConfigError: naming the offending key and what it accepts.
    """
    from force_jax.core import schedules, scores
    from force_jax.core.pruning import DEFAULT_STEPS

    cfg = config.prune
    _check(cfg.method in scores.METHODS, "prune.method", cfg.method,
           f"one of {', '.join(scores.METHODS)}")
    _check(isinstance(cfg.sparsity, int | float) and 0 <= cfg.sparsity < 1, "prune.sparsity",
           cfg.sparsity, "a fraction removed in [0, 1)")
    _check(cfg.steps is None or (_is_int(cfg.steps) and cfg.steps >= 1), "prune.steps",
           cfg.steps, "an integer >= 1 (in a config file, None means the method's default: "
           f"{DEFAULT_STEPS.get(cfg.method, 1)} for {cfg.method})")
    if cfg.method in scores.ONE_SHOT and cfg.steps not in (None, 1):
        raise ConfigError(f"config.prune.steps={cfg.steps!r}, but {cfg.method} prunes in one "
                          "shot: set --config.prune.steps=1")
    _check(cfg.schedule in schedules.SCHEDULES, "prune.schedule", cfg.schedule,
           f"one of {', '.join(schedules.SCHEDULES)}")
    _check(cfg.scoring_loss in losses.SCORING_LOSSES, "prune.scoring_loss", cfg.scoring_loss,
           f"one of {', '.join(losses.SCORING_LOSSES)}")
    _check(cfg.on_collapse in ("warn", "raise", "ignore"), "prune.on_collapse", cfg.on_collapse,
           "warn, raise or ignore")
    _check(cfg.get("ablation", "none") in sanity.ABLATIONS, "prune.ablation",
           cfg.get("ablation"), f"one of {', '.join(sanity.ABLATIONS)}")
    for key in ("batch_size", "batches_per_step"):
        _check(_is_int(cfg[key]) and cfg[key] >= 1, f"prune.{key}", cfg[key], "an integer >= 1")
    _check(_is_int(cfg.pool_size) and (cfg.pool_size == 0 or cfg.pool_size >= cfg.batch_size
                                        * cfg.batches_per_step), "prune.pool_size",
           cfg.pool_size, "0 (fresh batches streamed from the training split) or an integer >= "
           f"prune.batch_size * prune.batches_per_step = {cfg.batch_size * cfg.batches_per_step} "
           "(each step draws that many distinct examples from the pool)")
    _check(cfg.get("augment", False) in (True, False), "prune.augment", cfg.get("augment"),
           "True or False")
    if cfg.get("augment", False) and cfg.pool_size:
        raise ConfigError("config.prune.augment=True augments streamed batches, but "
                          f"config.prune.pool_size={cfg.pool_size} asks for an in-memory pool, "
                          "which is never augmented: set --config.prune.pool_size=0")
    _check(config.model.name in models_lib.model_names(), "model.name", config.model.name,
           f"one of {', '.join(models_lib.model_names())}")
    _check(config.model.get("kernels", "auto") in models_lib.kernels.KERNELS, "model.kernels",
           config.model.get("kernels"), f"one of {', '.join(models_lib.kernels.KERNELS)}")
    if config.get("cluster") and config.cluster.get("coordinator_address") and not (
            config.distributed):
        raise ConfigError(f"config.cluster.coordinator_address="
                          f"{config.cluster.coordinator_address!r} names a cluster, but "
                          "config.distributed is False: add --config.distributed=True")
    _check(_is_int(config.seed), "seed", config.seed, "an integer")
    train_cfg = config.train
    _check(_is_int(train_cfg.batch_size) and train_cfg.batch_size >= 1, "train.batch_size",
           train_cfg.batch_size, "an integer >= 1")
    _check(_is_int(config.eval_batch_size) and config.eval_batch_size >= 1, "eval_batch_size",
           config.eval_batch_size, "an integer >= 1")
    _check(train_cfg.num_epochs > 0, "train.num_epochs", train_cfg.num_epochs, "> 0")
    _check(train_cfg.num_steps is None or (_is_int(train_cfg.num_steps)
                                           and train_cfg.num_steps >= 1),
           "train.num_steps", train_cfg.num_steps, "an integer >= 1 (in a config file, None "
           "trains train.num_epochs epochs)")
    schedule = train_cfg.lr_schedule
    _check(schedule.name in ("cosine", "step"), "train.lr_schedule.name", schedule.name,
           "cosine or step")
    _check(schedule.get("warmup_epochs", 0) >= 0 and not (
        schedule.name == "step" and schedule.get("warmup_epochs", 0)),
        "train.lr_schedule.warmup_epochs", schedule.get("warmup_epochs", 0),
        ">= 0, and 0 with the step schedule")
    _check(0 <= config.data.validation_fraction < 1, "data.validation_fraction",
           config.data.validation_fraction, "a fraction in [0, 1)")


def check_data_sizes(config: ml_collections.ConfigDict, info: data.DatasetInfo) -> None:
    """Rejects batches and pools larger than the data they are drawn from.

    Args:
      config: experiment config.
      info: the dataset's description (sizes after the validation hold-out).

    Raises:
      ConfigError: naming the key and the split's size.
    """
    if config.prune.pool_size > info.num_train:
        raise ConfigError(
            f"config.prune.pool_size={config.prune.pool_size} is larger than the training split "
            f"({info.num_train:,} examples of {info.name} after the validation hold-out); use at "
            f"most {info.num_train}")
    if config.train.batch_size > info.num_train:
        raise ConfigError(
            f"config.train.batch_size={config.train.batch_size} is larger than the training "
            f"split ({info.num_train:,} examples of {info.name} after the validation hold-out); "
            f"use at most {info.num_train}")


def main() -> None:
    """Command line: --config=configs/x.py --workdir=DIR [--config.key=value ...]."""
    from force_jax.experiments import cli

    cli.run_config_command(train_and_evaluate, "Output folder; rerun on it to resume.")


if __name__ == "__main__":
    main()
