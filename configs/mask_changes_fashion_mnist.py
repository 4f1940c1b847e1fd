"""FORCE against pruning after training and sparse training, on the baselines' protocol.

The references of Frankle et al. (ICLR 2021) and of the sparse-training
literature, beside FORCE, on VGG-11 x0.5 (2,306,848 prunable weights),
Fashion-MNIST, at 99 and 99.5 % sparsity, seeds 0 to 2:

    python -m force_jax.sweep --config=configs/mask_changes_fashion_mnist.py \\
        --workdir=runs/mask_changes_fashion_mnist --config.data.data_dir=../shared/datasets/tfds

Each arm of the sweep (config.sweep.arms) is one reference:

- force: FORCE's mask, fixed for training (the paper's setting).
- rigl_erk: RigL from random masks with ERK densities, its usual baseline.
- rigl_force: RigL from FORCE's mask.
- gmp: gradual magnitude pruning from dense (Zhu and Gupta's cubic schedule).
- one_shot: magnitude pruning after training: train dense, keep the largest
  trained weights, retrain from them (one lottery round, no rewinding).
- lottery: a lottery ticket: 6 rounds of iterative magnitude pruning, each
  rewound to step 20.

The protocol is the baselines' (configs/scale_fashion_mnist.py: the claim's
BatchNorm VGG-11, 421 SGD steps = 1 epoch, evaluated after 211 and 421 steps).
Schedules for a run that short: RigL rewires every 25 steps (its paper's 100
would change the mask 3 times in 421 steps) with its drop fraction of 0.3 on
a cosine, until 3/4 of the run (step 300); gradual pruning prunes every 25
steps from step 25 to step 300, then trains 121 steps at the final sparsity.
Training budgets: force, rigl_*, gmp: 421 steps; one_shot: 421 dense + 421
sparse; lottery: 421 dense + 6 x 401 sparse (rewound to step 20). A cell of
the lottery takes about 7 trainings: the sweep resumes by rounds. FORCE's
cells are the baselines sweep's (runs/baselines_fashion_mnist/scored, ablation
none): copy those cell folders into this sweep's cells/ to skip them.
Results: docs/mask_changes_fashion_mnist/README.md.
"""

import ml_collections

from configs import scale_fashion_mnist

EVERY = 25  # steps between mask changes (RigL, SET and gradual pruning)

ARMS = {
    "rigl_erk": {"prune": {"method": "random", "scope": "layerwise", "allocation": "erk"},
                 "train": {"mask_changes": {"method": "rigl", "every": EVERY}}},
    "rigl_force": {"prune": {"method": "force"},
                   "train": {"mask_changes": {"method": "rigl", "every": EVERY}}},
    # From dense: the cell's sparsity is the one gradual pruning reaches.
    "gmp": {"prune": {"method": "random", "sparsity": 0.0},
            "train": {"mask_changes": {"method": "gmp", "every": EVERY, "start": EVERY}}},
    "one_shot": {"prune": {"method": "magnitude"},
                 "lottery": {"rounds": 1, "rewind_step": -1}},
    "lottery": {"prune": {"method": "magnitude"},
                "lottery": {"rounds": 6, "rewind_step": 20}},
}


def get_config() -> ml_collections.ConfigDict:
    """The comparison sweep of FORCE with pruning after training and sparse training.

    Returns:
      The sweep config for `python -m force_jax.sweep`.
    """
    config = scale_fashion_mnist.get_config("0.5")
    config.sweep.methods = ("force", *ARMS)
    config.sweep.arms = ml_collections.ConfigDict(ARMS)
    config.sweep.ablations = ("none",)
    config.sweep.sparsities = (0.99, 0.995)
    config.sweep.seeds = (0, 1, 2)
    return config
