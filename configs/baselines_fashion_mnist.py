"""The baselines a pruning-at-initialisation paper needs: allocations, data checks, random.

Three questions, on VGG-11 x0.5 (2,306,848 prunable weights) at 99, 99.5 and
99.8 % sparsity, seeds 0 to 2:

- Frankle et al. (ICLR 2021): does FORCE beat random pruning with its own
  per-layer densities? Random pruning with the global (uniform over all
  weights), uniform-per-layer and ERK densities, against FORCE and SNIP as
  found, their masks shuffled within each layer (the same densities, random
  positions: "random with FORCE's densities"), and scored layer-wise under ERK.
- Su et al. (NeurIPS 2020): does FORCE use its data? FORCE and SNIP scoring
  batches with random labels, and with random pixels.
- Which method is best at each sparsity, and by more than the seeds' spread?
  Every method of the library, each with its official code's settings.

The config argument picks the group of cells (one sweep folder per group, as
the grid is a product and random pruning reads no data):

    python -m force_jax.sweep --config=configs/baselines_fashion_mnist.py:random \\
        --workdir=runs/baselines_fashion_mnist/random --config.data.data_dir=../shared/datasets/tfds
    python -m force_jax.sweep --config=configs/baselines_fashion_mnist.py:scored \\
        --workdir=runs/baselines_fashion_mnist/scored --config.data.data_dir=../shared/datasets/tfds

random: method random, variants none (global), uniform, erk: 27 cells.
scored: methods force and snip, variants none, shuffle, erk, random_labels,
random_pixels: 90 cells.
methods: the other methods of the comparison (Iterative SNIP, GraSP, SynFlow,
ProsPr, NTK-SAP, PHEW, magnitude): 63 cells.
seeds: seeds 3 and 4 at 99.5 % for FORCE, Iterative SNIP, ProsPr and NTK-SAP:
8 cells.
Every cell records its nominal and effective sparsity (results.csv: kept,
effective).

Protocol: the scale sweep's (configs/scale_fashion_mnist.py: the claim's
BatchNorm VGG-11, the paper code's scoring loss, 30 exp pruning steps on
fresh batches of 128 from a pool of 2,048 training images, 421 SGD steps =
1 epoch, evaluated after 211 and 421 steps). About 5 to 15 minutes a cell on
2 cores: the grid takes many hours; the sweep resumes where it stopped.
Results: docs/baselines_fashion_mnist/README.md.
"""

import ml_collections

from configs import scale_fashion_mnist

GROUPS = {
    "random": (("random",), ("none", "uniform", "erk")),
    "scored": (("force", "snip"), ("none", "shuffle", "erk", "random_labels", "random_pixels")),
    "methods": (("iter_snip", "grasp", "synflow", "prospr", "ntk_sap", "phew", "magnitude"),
                ("none",)),
    "seeds": (("force", "iter_snip", "prospr", "ntk_sap"), ("none",)),
}
# Each method as its official code runs it: GraSP and ProsPr score with cross-entropy (GraSP
# at temperature 200), SynFlow takes its 100 steps and NTK-SAP its 20 (the CIFAR-10 recipe).
METHOD_SETTINGS = {
    "grasp": {"prune": {"scoring_loss": "cross_entropy", "temperature": 200.0}},
    "prospr": {"prune": {"scoring_loss": "cross_entropy"}},
    "synflow": {"prune": {"steps": None}},
    "ntk_sap": {"prune": {"steps": None}},
}


def get_config(group: str = "scored") -> ml_collections.ConfigDict:
    """One group of the baselines sweep.

    Args:
      group: "random" or "scored" (the config argument).

    Returns:
      The sweep config for `python -m force_jax.sweep`.

    Raises:
      ValueError: for another group.
    """
    if group not in GROUPS:
        raise ValueError(f"configs/baselines_fashion_mnist.py takes a group of "
                         f"{', '.join(GROUPS)} (configs/baselines_fashion_mnist.py:scored), "
                         f"not {group!r}")
    config = scale_fashion_mnist.get_config("0.5")
    config.sweep.methods, config.sweep.ablations = GROUPS[group]
    config.sweep.sparsities = (0.99, 0.995, 0.998)
    config.sweep.seeds = (0, 1, 2)
    if group == "seeds":  # 5 seeds at 99.5 % for the methods whose masks vary most
        config.sweep.sparsities, config.sweep.seeds = (0.995,), (3, 4)
    config.sweep.method_settings = ml_collections.ConfigDict(METHOD_SETTINGS)
    return config
