"""What every command builds from a config first: the model, its variables, the recipe.

`python -m force_jax.train`, `prune`, `sweep` and `lottery` all start with
`experiment(config)` (dataset description, model, initial variables and the
pruning key, all from config.seed), checked against the pruning `recipe`,
then prune with `force_jax.config.pruning_run.prune_at_init`, so the
commands cannot drift apart.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from force_jax import models as models_lib
from force_jax.config import validate
from force_jax.core import (
    masks,
    program,
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


def check_allocation(config: ml_collections.ConfigDict, params: PyTree,
                     run: recipe_lib.Recipe | None = None) -> np.ndarray | None:
    """The per-layer counts the configured allocation gives, checked before any work.

    Args:
      config: a validated experiment config (config.prune.scope, allocation,
        sparsity, steps, schedule).
      params: the model's params (arrays or `abstract_params`).
      run: the config's `recipe` for this model, where the caller has it.

    Returns:
      (T, L) counts for the layer-wise scope, None for the global scope.

    Raises:
      ConfigError: for a sparsity or floors the model cannot keep
        (`recipe`), and naming config.prune.allocation for a map whose layers
        are not the model's prunable ones, or counts that cannot reach the total.
    """
    run = recipe(config, params) if run is None else run
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


