r"""Compute and save a pruning mask only (no training).

usage: python -m force_jax.prune --config=configs/default.py --workdir=DIR
           [--config.KEY=VALUE ...]

Prunes the config's model at initialisation (config.prune), writes into DIR
the mask (an orbax checkpoint), prune.json (per-layer table, schedule history,
timing) and layer_density.png, and prints the per-layer density table (the
code: force_jax.commands.prune_command). For example:

    python -m force_jax.prune --config=configs/default.py --workdir=/tmp/mask \
        --config.data.data_dir=../shared/datasets/tfds \
        --config.prune.method=snip --config.prune.steps=1
"""

# Only a command: `force_jax.prune` is the pruning function (force_jax.core.pruning.prune),
# and importing this file would replace that attribute of the package with a module.
if __name__ != "__main__":
    raise ImportError("force_jax.prune is the command line (python -m force_jax.prune); the "
                      "function is `from force_jax import prune`, its module "
                      "force_jax.core.pruning, the command's code "
                      "force_jax.commands.prune_command")

import os  # noqa: E402

from force_jax.commands import startup  # noqa: E402

# Before TensorFlow loads: its start-up lines off.
startup.quiet_library_logs(os.environ, startup.startup_environment())

from force_jax.commands import prune_command  # noqa: E402

prune_command.main()
