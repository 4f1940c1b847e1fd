"""FORCE vs Iterative SNIP at extreme sparsity: the base of the fidelity ablation.

The claim setting (configs/claim_fashion_mnist.py: VGG-11 with BatchNorm at
width 0.25 on the real Fashion-MNIST, pruning batches of 128 drawn from a
pool of 2,048 training images, 30 pruning steps, 150 SGD steps of batch 128
with a cosine learning rate from 0.05 to 0) with the paper code's scoring
loss, for FORCE and Iterative SNIP at 99, 99.5 and 99.8 % sparsity, seeds 0
to 2. One factor at a time is varied from this base by overrides;
docs/ablation_fashion_mnist/README.md lists the exact commands and their
results:

    python -m force_jax.sweep --config=configs/ablation_fashion_mnist.py \
        --workdir=runs/ablation/base --config.data.data_dir=../shared/datasets/tfds
    ... --config.prune.scoring_loss=cross_entropy   # the loss
    ... --config.train.num_steps=842                 # the budget: 2 epochs (also 421: 1 epoch)
    ... --config.prune.steps=60                      # the pruning steps
    ... --config.prune.pool_size=54000               # the pool: the whole training split
"""

import ml_collections

from configs import claim_fashion_mnist


def get_config() -> ml_collections.ConfigDict:
    """The ablation's base: the claim config with the paper loss, FORCE and Iterative SNIP.

    Returns:
      The sweep config for `python -m force_jax.sweep`.
    """
    config = claim_fashion_mnist.get_config()
    config.prune.scoring_loss = "nll_on_logits"
    config.train.num_steps = 150  # 0.36 epoch: the budget the other variants start from
    config.eval_every_steps = -1  # a single evaluation, at the end
    config.sweep.methods = ("force", "iter_snip")
    config.sweep.sparsities = (0.99, 0.995, 0.998)
    config.sweep.seeds = (0, 1, 2)
    return config
