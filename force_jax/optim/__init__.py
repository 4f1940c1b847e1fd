"""The masked optimizer and its optax optimizers: what trains a pruned network.

Library code (jax, optax and the core only): `masked_updates` keeps pruned
weights at zero under any optax optimizer; `changing_masked_updates` does the
same while a rule of `mask_changes` (gradual magnitude pruning, SET, RigL)
changes the mask at scheduled steps; `optimizers` holds the paper's SGD,
the named optimizers of the configs and the learning-rate schedules.
"""

from force_jax.optim import mask_changes as mask_changes
from force_jax.optim.changing import ChangingMaskState as ChangingMaskState
from force_jax.optim.changing import changing_masked_updates as changing_masked_updates
from force_jax.optim.masked import MaskedUpdatesState as MaskedUpdatesState
from force_jax.optim.masked import mask_from_state as mask_from_state
from force_jax.optim.masked import masked_updates as masked_updates
from force_jax.optim.masked import sgd_with_mask as sgd_with_mask
from force_jax.optim.optimizers import OPTIMIZERS as OPTIMIZERS
from force_jax.optim.optimizers import cosine_schedule as cosine_schedule
from force_jax.optim.optimizers import make_optimizer as make_optimizer
from force_jax.optim.optimizers import make_schedule as make_schedule
from force_jax.optim.optimizers import piecewise_constant_schedule as piecewise_constant_schedule
from force_jax.optim.optimizers import sgd as sgd

__all__ = [
    "OPTIMIZERS",
    "ChangingMaskState",
    "changing_masked_updates",
    "mask_changes",
    "MaskedUpdatesState",
    "cosine_schedule",
    "make_optimizer",
    "make_schedule",
    "mask_from_state",
    "masked_updates",
    "piecewise_constant_schedule",
    "sgd",
    "sgd_with_mask",
]
