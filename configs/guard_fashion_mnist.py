"""FORCE with and without a per-layer floor, where it disconnects most: VGG-11 x0.25 at 99.9 %.

At 99.9 % on VGG-11 x0.25 (577 of 577,424 weights kept), 4 of 5 FORCE masks
of the scale sweep ended disconnected (S(m) = 0, chance accuracy), each right
after conv_6 or conv_7 had thinned to 2 to 8 weights
(docs/scale_fashion_mnist). This sweep measures the guard
`force_jax.core.guards.layer_floor` against the unguarded method on the same
machine. The config argument is the floor (0: the paper's algorithm), one
sweep folder per floor:

    for floor in 0 16; do
      python -m force_jax.sweep --config=configs/guard_fashion_mnist.py:$floor \
          --workdir=runs/guard_fashion_mnist/floor$floor \
          --config.data.data_dir=../shared/datasets/tfds
    done
    python -m force_jax.reports.sweep_compare --out=docs/scale_fashion_mnist/guard \
        --runs=no_floor=runs/guard_fashion_mnist/floor0,floor_16=runs/guard_fashion_mnist/floor16

Everything else is the scale sweep's protocol at width 0.25
(configs/scale_fashion_mnist.py): 30 exp pruning steps on fresh batches of
128, the paper code's scoring loss, 1 epoch of training, seeds 0 to 4.
A floor of 16 reserves 144 of the 577 kept weights (16 in each of the 9
prunable layers); the rest go to the global top-k as before.
"""

import ml_collections

from configs import scale_fashion_mnist


def get_config(floor: str = "16") -> ml_collections.ConfigDict:
    """The guard sweep at one floor.

    Args:
      floor: weights each prunable layer keeps at every step (the config
        argument), an integer >= 0.

    Returns:
      The sweep config for `python -m force_jax.sweep`.

    Raises:
      ValueError: for a floor that is not an integer >= 0.
    """
    if not floor.isdigit():
        raise ValueError("configs/guard_fashion_mnist.py takes a floor, an integer >= 0 "
                         f"(configs/guard_fashion_mnist.py:16), not {floor!r}")
    config = scale_fashion_mnist.get_config("0.25")
    config.prune.layer_floor = int(floor)
    config.sweep.methods = ("force",)
    config.sweep.sparsities = (0.999,)
    return config
