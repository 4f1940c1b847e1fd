"""The paper's central claim at CPU scale: a sweep over methods, sparsities and seeds.

Claim (de Jorge et al., ICLR 2021): beyond about 95 % sparsity SNIP and GraSP
degrade (sometimes below random pruning) while FORCE and Iterative SNIP stay
trainable. Here: VGG-11 (BatchNorm, CIFAR form) at width x0.25 (577,424
prunable weights in 8 conv layers and the classifier: deep enough for layer
collapse; 99.8 % sparsity keeps 1,154 of them) on the real Fashion-MNIST;
methods force, iter_snip, snip, grasp, synflow, random; sparsities 0.9,
0.995 and 0.998; seeds 0, 1, 2: 54 cells.

    python -m force_jax.sweep --config=configs/claim_fashion_mnist.py \
        --workdir=runs/claim_fashion_mnist --config.data.data_dir=../shared/datasets/tfds

Budget per cell: 30 pruning steps for FORCE and Iterative SNIP (SynFlow keeps
its default of 100 data-free steps), each on one batch of 128 drawn from a pool
of 2,048 training images and scored with the paper code's loss (nll_loss on
raw logits); GraSP with cross-entropy at temperature 200 as in the official
GraSP code; then 842 SGD steps of batch 128 (2 epochs, cosine learning rate
from 0.05 to 0), evaluated on the whole validation (6,000) and test (10,000)
splits after each epoch, so that summary.md shows whether the ranking of
methods still changes with training.

Measured (2026-11, 2-core CPU): about 90 s per cell when the machine is idle.
Rerunning the command resumes (finished cells are skipped). The measured
table, and where it disagrees with the paper, is in docs/claim.md and
docs/claim_fashion_mnist/.

Outputs in the workdir: results.csv, accuracy_by_step.csv, summary.md,
accuracy_vs_sparsity.png, objective_vs_sparsity.png, layer_density_0.998.png,
density_trajectory_<method>_0.998.png and cells/<cell>/.
"""

import ml_collections

from configs import default


def _default_config() -> ml_collections.ConfigDict:
    return default.get_config()


def get_config() -> ml_collections.ConfigDict:
    """The claim sweep: configs/default.py keys plus config.sweep.

    Returns:
      The sweep config for `python -m force_jax.sweep`.
    """
    config = _default_config()
    config.data.name = "fashion_mnist:3.0.1"

    config.model.name = "vgg11"
    config.model.width_multiplier = 0.25

    config.prune.steps = 30  # FORCE and Iterative SNIP; one-shot methods use 1
    config.prune.scoring_loss = "nll_on_logits"  # the paper code's loss
    config.prune.batch_size = 128
    config.prune.pool_size = 2048
    config.prune.on_collapse = "ignore"  # collapse is a result here, counted in results.csv

    config.train.batch_size = 128
    config.train.num_steps = 842  # 2 epochs; the cosine learning rate decays to zero over them
    config.eval_every_steps = -1  # once per epoch: after 421 and 842 steps

    config.sweep = ml_collections.ConfigDict()
    config.sweep.methods = ("force", "iter_snip", "snip", "grasp", "synflow", "random")
    config.sweep.sparsities = (0.9, 0.995, 0.998)
    config.sweep.seeds = (0, 1, 2)
    config.sweep.synflow_steps = ml_collections.config_dict.placeholder(int)  # None: 100
    config.sweep.grasp_temperature = 200.0  # as the official GraSP code
    config.sweep.grasp_scoring_loss = "cross_entropy"  # as the official GraSP code
    return config
