"""The default run (configs/default.py) over seeds 0 to 4: the figure the README states.

    python -m force_jax.sweep --config=configs/default_seeds.py \
        --workdir=runs/default_seeds --config.data.data_dir=../shared/datasets/tfds

Every key of configs/default.py can be overridden as usual; the sweep runs
the default method at the default sparsity for each seed and writes
results.csv and summary.md (mean ± std of the test accuracy over the seeds).
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    """configs/default.py plus a sweep over five seeds.

    Returns:
      The sweep config for `python -m force_jax.sweep`.
    """
    config = default.get_config()
    config.sweep = ml_collections.ConfigDict()
    config.sweep.methods = (config.prune.method,)
    config.sweep.sparsities = (config.prune.sparsity,)
    config.sweep.seeds = (0, 1, 2, 3, 4)
    return config
