r"""Prune at initialisation, then train and evaluate a sparse classifier.

usage: python -m force_jax.train --config=configs/default.py --workdir=DIR
           [--config.KEY=VALUE ...]

Prunes the config's model at initialisation (config.prune), trains the sparse
network (config.train) and evaluates it, writing into DIR its checkpoints,
prune.json, metrics.jsonl, metrics.json and TensorBoard events; rerunning the
same command on DIR resumes from its last checkpoint (the code:
force_jax.commands.train.train_and_evaluate). For example:

    python -m force_jax.train --config=configs/default.py --workdir=/tmp/run \
        --config.data.data_dir=../shared/datasets/tfds --config.prune.sparsity=0.98
"""

if __name__ == "__main__":  # the command: TensorFlow's start-up lines off, before it loads
    import os

    from force_jax.commands import startup

    startup.quiet_library_logs(os.environ, startup.startup_environment())

from force_jax.commands.train import main, train_and_evaluate  # noqa: E402

__all__ = ["main", "train_and_evaluate"]

if __name__ == "__main__":
    main()
