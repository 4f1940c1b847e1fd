"""Lottery tickets: iterative magnitude pruning after training, with rewinding.

Round 0 trains the dense network (`prune.sparsity` 0) and keeps its weights at
step `lottery.rewind_step`. Round r = 1..R prunes, among the weights round r-1
kept, those of lowest trained magnitude (one global ranking, as open_lth's
`sparse_global`) down to floor(keep_r N) with keep_r = (1 - s)^(r / R), so
that round R reaches the sparsity s = `prune.sparsity` exactly; it rewinds the
kept weights to their values at the rewind step and trains from that step to
the end, with a fresh optimizer, as Frankle et al. (2020) do. `rewind_step=-1`
keeps the trained weights instead and retrains from step 0: with one round,
one-shot magnitude pruning after training.

Each round is a train run in its own folder (DIR/round_R): a finished round is
skipped and an interrupted one resumes from its checkpoint, so rerunning the
command resumes by rounds. DIR/lottery.json lists every round's sparsity and
accuracy.
"""

from __future__ import annotations

import copy
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
import orbax.checkpoint as ocp

from force_jax import optim
from force_jax.commands import cli, train
from force_jax.config import mask_changes as mask_changes_config
from force_jax.config import pruning_run, setup, training_setup, validate
from force_jax.core import masks, schedules
from force_jax.errors import ConfigError
from force_jax.runs import checkpoint, files
from force_jax.runs import workdir as workdir_lib
from force_jax.training import cluster

PyTree = Any


def check(config: ml_collections.ConfigDict, total_steps: int | None = None) -> None:
    """The lottery keys: rounds >= 1, a sparsity to reach, a rewind step within the run.

    Args:
      config: experiment config.
      total_steps: the run's optimizer steps, when known.

    Raises:
      ConfigError: naming the key.
    """
    rounds, rewind = config.lottery.rounds, config.lottery.rewind_step
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"config.lottery.rounds={rounds!r}: expected an integer >= 1 (the "
                          "pruning rounds after the dense one)")
    if isinstance(rewind, bool) or not isinstance(rewind, int) or rewind < -1:
        raise ConfigError(f"config.lottery.rewind_step={rewind!r}: expected a step >= 0, or -1 "
                          "(no rewinding)")
    if total_steps is not None and rewind >= total_steps:
        raise ConfigError(f"config.lottery.rewind_step={rewind}: expected a step before the "
                          f"end of training ({total_steps} steps)")
    if not 0 < config.prune.sparsity < 1:
        raise ConfigError(f"config.prune.sparsity={config.prune.sparsity}: a lottery run "
                          "prunes to it in lottery.rounds rounds; expected it in (0, 1)")
    if mask_changes_config.method(config) != "none":
        raise ConfigError("config.train.mask_changes.method="
                          f"{mask_changes_config.method(config)!r}: a lottery run trains each "
                          "round at a fixed mask; set it to none")


def round_config(config: ml_collections.ConfigDict, r: int) -> ml_collections.ConfigDict:
    """Round r's train config: dense for r = 0, else magnitude at that round's sparsity."""
    out = copy.deepcopy(config)
    keep = (1 - config.prune.sparsity) ** (r / config.lottery.rounds)
    out.prune.sparsity = 0.0 if r == 0 else (config.prune.sparsity if r == config.lottery.rounds
                                             else float(1 - keep))
    out.prune.method, out.prune.steps = "magnitude", 1  # what a round records: magnitude
    return out


def prune_trained(params: PyTree, mask: PyTree, keep: int) -> PyTree:
    """The `keep` largest |trained weights| among those `mask` keeps (ties to the lower index)."""
    scores = jax.tree.map(
        lambda p, m: jnp.where(m, jnp.abs(p), -jnp.inf) if masks.is_prunable_leaf(m)
        else jnp.zeros(()), params, mask)
    return masks.topk_mask(scores, mask, keep)


def _start_round(config: ml_collections.ConfigDict, workdir: str, previous: str) -> None:
    """Writes round r's starting checkpoint (the pruned, rewound weights) into `workdir`."""
    exp = setup.experiment(config)
    total, _, _ = training_setup.run_length(config, exp.info.num_train)
    schedule = training_setup.make_lr_schedule(config, exp.info.num_train)
    template = training_setup.initial_state(config, exp.model, exp.variables,
                                            masks.init_mask(exp.variables["params"]), schedule,
                                            total)
    trained, _ = checkpoint.restore_state(checkpoint.manager(os.path.join(previous,
                                                                          "checkpoints")),
                                          template)
    started = time.perf_counter()
    old_mask = optim.mask_from_state(trained.opt_state)
    n = masks.num_prunable(old_mask)
    keep = int(schedules.count_kept(1 - config.prune.sparsity, n))
    mask = prune_trained(trained.params, old_mask, keep)
    rewind = config.lottery.rewind_step
    if rewind >= 0:
        with ocp.StandardCheckpointer() as ckpt:
            weights = ckpt.restore(files.absolute(os.path.join(
                _first_round(previous), train.REWIND_POINT)))
        start_step = rewind
    else:
        weights = {"params": trained.params, "batch_stats": trained.batch_stats}
        start_step = 0
    variables = {"params": masks.apply_mask(weights["params"], mask),
                 **({"batch_stats": weights["batch_stats"]} if weights["batch_stats"] else {})}
    state = training_setup.initial_state(config, exp.model, variables, mask,
                                training_setup.make_lr_schedule(config, exp.info.num_train), total)
    # Training goes on from the rewind step: the learning-rate schedule (the optimizer's
    # step count) at that step, the optimizer's statistics fresh.
    state = state.replace(step=jnp.asarray(start_step, jnp.int32), opt_state=optax.tree_utils.
                          tree_set(state.opt_state, count=jnp.asarray(start_step, jnp.int32)))
    is_main = jax.process_index() == 0
    with workdir_lib.claim(workdir, config):
        # A start cut short by a kill (no prune.json yet) is made again from scratch.
        if is_main and files.exists(os.path.join(workdir, "checkpoints")):
            files.rmtree(os.path.join(workdir, "checkpoints"))
        cluster.barrier("lottery round start")
        checkpoint.save_state(checkpoint.manager(os.path.join(workdir, "checkpoints")),
                              start_step, state)
        if not is_main:
            return
        workdir_lib.record_checkpoint_config(workdir, config)
        # A resumed run continues from the record of its checkpoint's step.
        checkpoint.write_jsonl(os.path.join(workdir, "metrics.jsonl"), [
            {"step": start_step, "rewound_to_step": rewind}] if start_step else [])
        report = pruning_run.mask_report(exp.model, exp.variables, mask, exp.info.image_shape)
        checkpoint.write_json(os.path.join(workdir, "prune.json"), {  # last: the start is whole
            "method": "lottery", "round_of": previous, "rewind_step": rewind,
            "seconds": time.perf_counter() - started, "report": report.as_dict()})


def _first_round(round_dir: str) -> str:
    """The folder of round 0, where the rewind point lives, from any round's folder."""
    return os.path.join(os.path.dirname(round_dir.rstrip("/")), "round_0")


def run_lottery(config: ml_collections.ConfigDict, workdir: str) -> list[dict]:
    """Runs (or resumes) every round; returns and writes their results.

    Args:
      config: experiment config with lottery.rounds >= 1.
      workdir: the folder of the rounds (DIR/round_R) and of lottery.json.

    Returns:
      One record per round: round, sparsity, kept, test_accuracy.
    """
    _check_run(config)
    with workdir_lib.claim(workdir, config):
        return _run_rounds(config, workdir)


def _check_run(config: ml_collections.ConfigDict) -> None:
    """The lottery keys, the config, then the rewind step against the run's length."""
    check(config)
    validate.validate_config(config)
    info = setup.experiment(config).info
    check(config, training_setup.run_length(config, info.num_train)[0])


def _run_rounds(config: ml_collections.ConfigDict, workdir: str) -> list[dict]:
    """The body of `run_lottery`, on its claimed folder."""
    results = []
    for r in range(config.lottery.rounds + 1):
        cfg = round_config(config, r)
        folder = os.path.join(workdir, f"round_{r}")
        done = os.path.join(folder, "metrics.json")
        if files.exists(done):
            metrics = json.loads(files.read_text(done))
        else:
            if r and not files.exists(os.path.join(folder, "prune.json")):
                _start_round(cfg, folder, os.path.join(workdir, f"round_{r - 1}"))
            metrics = train.train_and_evaluate(cfg, folder)
        results.append({"round": r, "sparsity": cfg.prune.sparsity,
                        "test_accuracy": metrics["test_accuracy"],
                        "global_density": metrics.get("global_density")})
        print(f"round {r}: sparsity {cfg.prune.sparsity:.4f}, test accuracy "
              f"{metrics['test_accuracy']:.4f}")
    checkpoint.write_json(os.path.join(workdir, "lottery.json"), {"rounds": results})
    return results


def run_as_one_run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs (or resumes) the rounds, then leaves the last round's record at `workdir`.

    What a sweep cell of lottery rounds needs: the rounds in DIR/round_R, and
    at DIR the files of one train run (metrics.jsonl, prune.json,
    metrics.json; the last round's), metrics.json written last, so that its
    presence says the cell is finished.

    Args:
      config: experiment config with lottery.rounds >= 1.
      workdir: the cell's folder.

    Returns:
      The last round's metrics (as metrics.json holds them).
    """
    _check_run(config)
    last = os.path.join(workdir, f"round_{config.lottery.rounds}")
    with workdir_lib.claim(workdir, config):  # the copies too: no other run writes here meanwhile
        _run_rounds(config, workdir)
        if jax.process_index() == 0:
            checkpoint.write_jsonl(os.path.join(workdir, "metrics.jsonl"),
                                   checkpoint.read_jsonl(os.path.join(last, "metrics.jsonl")))
            for name in ("prune.json", "metrics.json"):
                checkpoint.write_json(os.path.join(workdir, name),
                                      json.loads(files.read_text(os.path.join(last, name))))
    return json.loads(files.read_text(os.path.join(last, "metrics.json")))


def main() -> None:
    """`python -m force_jax.lottery`: --config and --workdir, then `run_lottery`."""
    cli.run_config_command(run_lottery, "folder of the rounds (resumed when rerun)")


