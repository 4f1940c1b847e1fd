"""force_jax: pruning at initialisation (FORCE, Iterative SNIP and baselines) in JAX."""

from force_jax import masks as masks
from force_jax import models as models
from force_jax import parallel as parallel
from force_jax.losses import classification_loss as classification_loss
from force_jax.losses import logits_loss as logits_loss
from force_jax.losses import synflow_objective as synflow_objective
from force_jax.masks import apply_mask as apply_mask
from force_jax.masks import check_collapse as check_collapse
from force_jax.masks import check_mask as check_mask
from force_jax.masks import init_mask as init_mask
from force_jax.masks import num_kept as num_kept
from force_jax.masks import sparsity_report as sparsity_report
from force_jax.masks import topk_mask as topk_mask
from force_jax.prune import History as History
from force_jax.prune import prune as prune
from force_jax.schedules import keep_fractions as keep_fractions

__all__ = [
    "History",
    "apply_mask",
    "check_collapse",
    "check_mask",
    "classification_loss",
    "init_mask",
    "keep_fractions",
    "logits_loss",
    "masks",
    "models",
    "num_kept",
    "parallel",
    "prune",
    "sparsity_report",
    "synflow_objective",
    "topk_mask",
]
