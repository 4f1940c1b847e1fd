"""`python -m force_jax.prune`: compute and save a mask only (see
`force_jax.experiments.prune_command`).

Only a command: `force_jax.prune` is the pruning function
(`force_jax.core.pruning.prune`), and importing this file would replace that
attribute of the package with a module, so an import is refused.
"""

if __name__ != "__main__":
    raise ImportError("force_jax.prune is the command line (python -m force_jax.prune); the "
                      "function is `from force_jax import prune`, its module "
                      "force_jax.core.pruning, the command's code force_jax.experiments."
                      "prune_command")

from force_jax.experiments import prune_command  # noqa: E402

prune_command.main()
