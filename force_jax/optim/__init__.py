"""The masked optimizer and its optax optimizers: what trains a pruned network.

Library code (jax, optax and the core only): `masked_updates` keeps pruned
weights at zero under any optax optimizer; `optimizers` holds the paper's SGD,
the named optimizers of the configs and the learning-rate schedules.
"""

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
