"""The tap-preserving shuffle, asked where the layer-wise shuffle failed.

configs/sanity_fashion_mnist.py found every method's masks ruined by a
shuffle within layers from 99.5 % sparsity, and every method keeping all of
conv_6's and conv_7's weights on the centre tap (the only tap of a 3×3
kernel that sees data on their 1×1 feature maps). This sweep shuffles the
same masks again, keeping each layer's count at every spatial tap
(`prune.ablation="shuffle_taps"`), so what the layer-wise shuffle destroys
splits into the taps a method uses and the weights it picks within them.
Its cells share setting, seeds and ablation key with the sanity sweep's, so
they compare with its "none" and "shuffle" cells:

    python -m force_jax.sweep --config=configs/sanity_taps_fashion_mnist.py \\
        --workdir=runs/sanity_taps_fashion_mnist --config.data.data_dir=../shared/datasets/tfds

24 cells of about 1.5 minutes on a 2-core CPU.
"""

import ml_collections

from configs import sanity_fashion_mnist


def get_config() -> ml_collections.ConfigDict:
    """The sanity sweep at 99.5 and 99.8 % with the tap-preserving shuffle only.

    Returns:
      The sweep config for `python -m force_jax.sweep`.
    """
    config = sanity_fashion_mnist.get_config()
    config.sweep.sparsities = (0.995, 0.998)
    config.sweep.ablations = ("shuffle_taps",)
    return config
