"""A config's pruning run: its examples, its losses, the method's run and its record.

`prune_at_init` is what the train, prune, sweep and lottery commands prune
with: the configured method (`setup.recipe`) on the training examples
(`pruning_examples`: a pool or a stream), with the sanity check the config
asks for; `prune_record` is the prune.json that says what was run, on which
data and which machine.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from force_jax import models as models_lib
from force_jax import optim
from force_jax.config import mask_changes as mask_changes_config
from force_jax.config import validate
from force_jax.config.setup import Experiment, check_allocation, recipe
from force_jax.core import (
    compile_options,
    data_checks,
    density,
    effective,
    losses,
    methods,
    pruning,
    pruning_stream,
    sanity,
)
from force_jax.core import recipe as recipe_lib
from force_jax.errors import ConfigError
from force_jax.training import data

PyTree = Any


def prune_at_init(
    config: ml_collections.ConfigDict, model: nn.Module, variables: PyTree, key: jax.Array,
    mesh: Mesh | None = None,
) -> tuple[PyTree, Any]:
    """Runs the configured pruning method on training examples (`pruning_examples`).

    Every process computes the same mask: from the same pool, or from one
    stream of global batches to which each process gives its own slice.
    With ``config.prune.layer_floor`` > 0 every step keeps at least that many
    weights of each prunable layer (`force_jax.core.guards.layer_floor`).
    With ``config.prune.ablation`` "invert" the method keeps its lowest scores
    at every step; with "shuffle" the final mask's kept positions are redrawn
    at random within each layer, with "shuffle_taps" within each spatial tap
    of a convolution kernel; with "random_labels" or "random_pixels" the
    method scores corrupted examples (`force_jax.core.data_checks`; key
    `sanity.ablation_key(config.seed)` for all of them).

    Args:
      config: experiment config (uses config.data, config.prune, config.seed).
      model: the Flax model.
      variables: its variables at initialisation.
      key: PRNG key of the pruning schedule.
      mesh: device mesh the pruning batches are split over (None: one device).

    Returns:
      (mask, history) from `force_jax.prune`, the mask after the ablation.
    """
    run = recipe(config, variables["params"])
    check_allocation(config, variables["params"], run)  # before any data is read
    # A method that reads no data gets none (no pool loaded, no stream), as `prune` decides.
    examples = pruning_examples(config) if run.method.reads_data() else None
    if examples is not None and run.data_check:
        examples = _corrupted(examples, run.data_check, sanity.ablation_key(config.seed),
                              model.num_classes)
    loss_fn = losses.classification_loss(
        model, variables, loss=config.prune.scoring_loss, temperature=config.prune.temperature)
    synflow_fn, probe = _network_objectives(config, run.method, model, variables, examples)
    mask, history = pruning.prune(loss_fn, variables["params"], examples, key=key,
                                  synflow_fn=synflow_fn, mesh=mesh, probe=probe,
                                  **run.prune_arguments())
    if run.mask_shuffle is not None:
        mask = sanity.shuffle_within_layers(mask, sanity.ablation_key(config.seed),
                                            **run.mask_shuffle)
    return mask, history


def _network_objectives(config: ml_collections.ConfigDict, method: methods.Method,
                        model: nn.Module, variables: PyTree, examples: Any) -> tuple[Any, Any]:
    """The SynFlow objective and the network probe, for the methods that need them."""
    if not (method.needs_synflow or method.needs_probe):
        return None, None
    if examples is None or pruning_stream.is_stream(examples):
        image_shape = data.dataset_info(
            config.data.name, config.data.data_dir,
            validation_fraction=config.data.validation_fraction).image_shape
    else:
        image_shape = examples["image"].shape[1:]
    synflow_fn = (losses.synflow_objective(model, variables, image_shape)
                  if method.needs_synflow else None)
    probe = losses.network_probe(model, variables, image_shape) if method.needs_probe else None
    return synflow_fn, probe


def _corrupted(examples: Any, check: str, key: jax.Array, num_classes: int) -> Any:
    """The pruning pool or stream under a data check (`force_jax.core.data_checks`)."""
    if pruning_stream.is_stream(examples):
        return data_checks.corrupt_stream(examples, check, key, num_classes)
    return {k: np.asarray(v) for k, v in
            data_checks.corrupt(examples, check, key, num_classes).items()}


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


def mask_report(model: nn.Module, variables: PyTree, mask: PyTree,
                image_shape: tuple[int, ...]) -> density.SparsityReport:
    """The mask's sparsity report with its effective counts (kept weights on a path).

    Computed on this process's own copies (numpy), so it runs on one process
    of several without waiting for the others.

    Args:
      model: the Flax model.
      variables: its variables at initialisation.
      mask: the mask.
      image_shape: shape of one input image.

    Returns:
      `density.sparsity_report(mask, effective=...)`.
    """
    local_mask, local_variables = jax.tree.map(np.asarray, (mask, variables))
    on_paths = effective.effective_mask(model, local_variables, local_mask, image_shape)
    return density.sparsity_report(local_mask, effective=on_paths)


def prune_record(config: ml_collections.ConfigDict, seconds: float,
                 report: density.SparsityReport, history: Any) -> dict:
    """The JSON record of a pruning run (prune.json).

    Args:
      config: experiment config.
      seconds: wall time of the pruning.
      report: sparsity report of the mask.
      history: the `History` returned by `prune`.

    Returns:
      A JSON-ready dict: method, its options (ProsPr's, NTK-SAP's; empty for
        the others), sparsity, ablation, seconds, the data the
      mask was scored on (scoring_data: real, or a data check's), scope,
      allocation (None for the global scope), backend, the
      kernels the model used ("cpu" rewrites or "plain"), the machine
      (`compile_options.machine`: CPU model, jax versions, compiler options),
      report, history.
    """
    return {
        "method": config.prune.method,
        "method_options": recipe_lib.method_options(config.prune, validate.CONFIG_SPELLING),
        "sparsity": config.prune.sparsity,
        "ablation": config.prune.get("ablation", "none"), "seconds": seconds,
        "scoring_data": data_checks.SCORING_DATA.get(config.prune.get("ablation", "none"),
                                                     "real"),
        "scope": config.prune.get("scope", "global"),
        "allocation": validate.recipe_of(config.prune).allocation,
        # What config.model.kernels resolved to here: numerics differ between the two.
        "backend": jax.default_backend(),
        "kernels": "cpu" if models_lib.kernels.use_cpu_kernels(
            config.model.get("kernels", "auto")) else "plain",
        # The CPU and compiler behind the mask: FORCE amplifies their rounding differences.
        "machine": compile_options.machine(),
        "report": report.as_dict(),
        "history": {k: np.asarray(v).tolist() for k, v in history._asdict().items()},
    }


def final_mask_counts(config: ml_collections.ConfigDict, exp: Experiment,
                      opt_state: Any) -> dict:
    """The kept and effective counts of the mask training ended with, where it changed.

    A mask that changed during training (`train.mask_changes`) is not the one
    prune.json describes: its kept weights on an input-output path are
    counted again (about one gradient's cost, once per run). On several
    processes every process gathers the mask (a collective).

    Args:
      config: experiment config.
      exp: the run's experiment (model, variables, dataset description).
      opt_state: the final optimizer state, which holds the mask.

    Returns:
      {"final_kept", "final_effective"}; {} for a fixed mask (prune.json's
      counts hold).
    """
    if mask_changes_config.method(config) == "none":
        return {}
    mask = optim.mask_from_state(opt_state)
    if jax.process_count() > 1:  # its arrays span the processes
        mask = multihost_utils.process_allgather(mask)
    report = mask_report(exp.model, exp.variables, mask, exp.info.image_shape)
    return {"final_kept": report.kept, "final_effective": report.effective}
