"""What every command builds from a config: model, variables, pruning examples, loss, mask.

`python -m force_jax.train` and `python -m force_jax.prune` both start with
`experiment(config)` (dataset description, model, initial variables and the
pruning key, all from config.seed) and `prune_at_init` (pruning examples,
scoring loss, the method's run and its sanity ablation), so the two commands
cannot drift apart.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from force_jax import models as models_lib
from force_jax.config import validate
from force_jax.core import (
    compile_options,
    data_checks,
    density,
    effective,
    losses,
    masks,
    methods,
    program,
    pruning,
    pruning_stream,
    sanity,
)
from force_jax.core import recipe as recipe_lib
from force_jax.errors import ConfigError
from force_jax.training import data

PyTree = Any


class Experiment(NamedTuple):
    """The start of every run of a config.

    Attributes:
      info: the dataset's description (sizes after the validation hold-out).
      model: the Flax model.
      variables: its variables at initialisation.
      prune_key: PRNG key of the pruning schedule.
    """

    info: data.DatasetInfo
    model: nn.Module
    variables: PyTree
    prune_key: jax.Array


def experiment(config: ml_collections.ConfigDict) -> Experiment:
    """Reads the dataset's description and builds the model and its initial variables.

    Args:
      config: a validated experiment config (see `force_jax.config.validate`).

    Returns:
      An `Experiment`; the initialisation and pruning keys both come from config.seed.

    Raises:
      ConfigError: for a dataset that is missing or too small for the batches, or
        a sparsity that keeps no weight of the model, or layer floors it cannot
        keep (`validate.recipe_of`), or an allocation that does not fit it.
    """
    info = data.dataset_info(config.data.name, config.data.data_dir,
                             validation_fraction=config.data.validation_fraction,
                             download=config.data.download)
    validate.check_data_sizes(config, info)
    model = build_model(config, info.num_classes)
    params = abstract_params(model, info.image_shape)
    check_allocation(config, params)
    init_key, prune_key = jax.random.split(jax.random.key(config.seed))
    return Experiment(info, model, init_variables(model, info.image_shape, init_key), prune_key)


def build_model(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
    """The configured Flax model.

    Args:
      config: experiment config (uses config.model).
      num_classes: classifier width.

    Returns:
      A Flax Linen module.

    Raises:
      ConfigError: naming a config.model key the model does not take.
    """
    kwargs = {k: v for k, v in config.model.items() if k != "name"}
    try:
        return models_lib.get_model(config.model.name, num_classes, **kwargs)
    except TypeError as e:
        unknown = [k for k in kwargs if f"'{k}'" in str(e)]
        if not unknown:
            raise
        raise ConfigError(f"config.model.{unknown[0]}={kwargs[unknown[0]]!r} is not a setting "
                          f"of {config.model.name}: remove it or choose another model.name"
                          ) from None


def abstract_params(model: nn.Module, image_shape: tuple[int, ...]) -> PyTree:
    """The model's params as shapes only (`jax.eval_shape` of the initialisation).

    Nothing is computed or allocated, and no data is read.

    Args:
      model: the Flax model.
      image_shape: shape of one input image.

    Returns:
      A pytree of `jax.ShapeDtypeStruct`.
    """
    return jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                          jax.ShapeDtypeStruct((1, *image_shape), jnp.float32))["params"]


def prunable_sizes(params: PyTree) -> list[int]:
    """The weights of each prunable leaf of params (arrays or shapes, `abstract_params`).

    Prunable leaves are those of `masks.prunable_flags`, as in `force_jax.prune`.

    Args:
      params: the parameter pytree.

    Returns:
      One size per prunable leaf, in leaf order.
    """
    flags = masks.prunable_flags(params)
    return [int(np.prod(leaf.shape)) for leaf, flag in zip(jax.tree.leaves(params), flags)
            if flag]


def num_prunable_weights(params: PyTree) -> int:
    """N, the prunable weights of params (arrays or shapes, `abstract_params`).

    Args:
      params: the parameter pytree.

    Returns:
      The number of prunable weights.
    """
    return sum(prunable_sizes(params))


def recipe(config: ml_collections.ConfigDict, params: PyTree) -> recipe_lib.Recipe:
    """The pruning recipe of config.prune for this model, checked against its layers.

    Args:
      config: a validated experiment config.
      params: the model's params (arrays or `abstract_params`).

    Returns:
      The `force_jax.core.recipe.Recipe`.

    Raises:
      ConfigError: for a sparsity that keeps no weight of the model, or layer
        floors that do not fit in what it keeps.
    """
    return validate.recipe_of(config.prune, layer_sizes=prunable_sizes(params),
                              model_name=config.model.name)


def check_allocation(config: ml_collections.ConfigDict, params: PyTree) -> np.ndarray | None:
    """The per-layer counts the configured allocation gives, checked before any work.

    Args:
      config: a validated experiment config (config.prune.scope, allocation,
        sparsity, steps, schedule).
      params: the model's params (arrays or `abstract_params`).

    Returns:
      (T, L) counts for the layer-wise scope, None for the global scope.

    Raises:
      ConfigError: for a sparsity or floors the model cannot keep
        (`recipe`), and naming config.prune.allocation for a map whose layers
        are not the model's prunable ones, or counts that cannot reach the total.
    """
    run = recipe(config, params)
    if run.allocation is None:
        return None
    try:
        return program.schedule_counts(params, sparsity=run.sparsity, steps=run.steps,
                                       schedule=run.schedule, allocation=run.allocation)
    except ValueError as error:
        raise ConfigError(f"config.prune.allocation={config.prune.allocation!r}: "
                          f"{error}") from None


def init_variables(model: nn.Module, image_shape: tuple[int, ...], key: jax.Array) -> PyTree:
    """Initialises the model's variables on a dummy batch of one.

    Args:
      model: the Flax model.
      image_shape: shape of one input image.
      key: PRNG key of the initialisation.

    Returns:
      The variables ({"params", and "batch_stats" for BatchNorm models}).
    """
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
    check_allocation(config, variables["params"])  # before any data is read
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
