"""The sanity checks of Frankle et al. (ICLR 2021) asked of FORCE and its peers.

The claim setting (configs/claim_fashion_mnist.py: VGG-11 with BatchNorm at
width 0.25 on the real Fashion-MNIST, the paper code's scoring loss, 30
pruning steps on batches of 128 from a pool of 2,048 images, 842 SGD steps
= 2 epochs), for force, iter_snip, snip and synflow at 98, 99.5 and 99.8 %
sparsity, seeds 0 to 2, each mask trained as found and under three
ablations (force_jax.core.sanity): its kept positions shuffled within each layer,
its kept weights re-initialised, and its method's scores inverted:

    python -m force_jax.sweep --config=configs/sanity_fashion_mnist.py \
        --workdir=runs/sanity_fashion_mnist --config.data.data_dir=../shared/datasets/tfds

144 cells of about 1.5 minutes on a 2-core CPU (3.5 hours); the sweep
resumes where it stopped, seed by seed. summary.md has one row per
(method, ablation): "force+shuffle" is FORCE's mask shuffled.
"""

import ml_collections

from configs import claim_fashion_mnist


def get_config() -> ml_collections.ConfigDict:
    """The sanity sweep: the claim config with an ablation axis.

    Returns:
      The sweep config for `python -m force_jax.sweep`.
    """
    config = claim_fashion_mnist.get_config()
    config.sweep.methods = ("force", "iter_snip", "snip", "synflow")
    config.sweep.sparsities = (0.98, 0.995, 0.998)
    config.sweep.seeds = (0, 1, 2)
    config.sweep.ablations = ("none", "shuffle", "reinit", "invert")
    return config
