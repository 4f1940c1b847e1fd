"""force_jax: pruning at initialisation (FORCE, Iterative SNIP and baselines) in JAX."""

from force_jax import models as models
from force_jax import optim as optim
from force_jax.core import allocation as allocation
from force_jax.core import effective as effective
from force_jax.core import masks as masks
from force_jax.core import methods as methods
from force_jax.core import nnx_models as nnx
from force_jax.core import program as program
from force_jax.core import recipe as recipe
from force_jax.core import sanity as sanity
from force_jax.core import sharding as sharding
from force_jax.core.density import check_collapse as check_collapse
from force_jax.core.density import sparsity_report as sparsity_report
from force_jax.core.losses import classification_loss as classification_loss
from force_jax.core.losses import logits_loss as logits_loss
from force_jax.core.losses import network_probe as network_probe
from force_jax.core.losses import synflow_objective as synflow_objective
from force_jax.core.masks import apply_mask as apply_mask
from force_jax.core.masks import check_mask as check_mask
from force_jax.core.masks import init_mask as init_mask
from force_jax.core.masks import num_kept as num_kept
from force_jax.core.masks import topk_mask as topk_mask
from force_jax.core.program import Pruner as Pruner
from force_jax.core.program import PruneState as PruneState
from force_jax.core.pruning import History as History
from force_jax.core.pruning import prune as prune
from force_jax.core.schedules import keep_fractions as keep_fractions
from force_jax.optim import changing_masked_updates as changing_masked_updates
from force_jax.optim import mask_changes as mask_changes
from force_jax.optim import masked_updates as masked_updates

__all__ = [
    "History",
    "allocation",
    "changing_masked_updates",
    "effective",
    "PruneState",
    "Pruner",
    "apply_mask",
    "check_collapse",
    "check_mask",
    "classification_loss",
    "init_mask",
    "keep_fractions",
    "logits_loss",
    "masked_updates",
    "mask_changes",
    "masks",
    "methods",
    "models",
    "nnx",
    "optim",
    "network_probe",
    "num_kept",
    "program",
    "sharding",
    "prune",
    "sanity",
    "sparsity_report",
    "synflow_objective",
    "topk_mask",
]
