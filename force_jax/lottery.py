r"""Lottery tickets: iterative magnitude pruning after training, rewound to an early step.

usage: python -m force_jax.lottery --config=configs/default.py --workdir=DIR
           --config.lottery.rounds=R [--config.KEY=VALUE ...]

Trains the dense network (DIR/round_0), then R rounds that each prune the
smallest trained weights among those kept, rewind the rest to their values at
config.lottery.rewind_step and train again, reaching config.prune.sparsity at
round R (the code: force_jax.commands.lottery). Rerunning resumes by rounds.
For example:

    python -m force_jax.lottery --config=configs/default.py --workdir=/tmp/lottery \
        --config.data.data_dir=../shared/datasets/tfds --config.lottery.rounds=2 \
        --config.prune.sparsity=0.9
"""

if __name__ == "__main__":  # the command: TensorFlow's start-up lines off, before it loads
    import os

    from force_jax.commands import startup

    startup.quiet_library_logs(os.environ, startup.startup_environment())

from force_jax.commands.lottery import main, run_lottery  # noqa: E402

__all__ = ["main", "run_lottery"]

if __name__ == "__main__":
    main()
