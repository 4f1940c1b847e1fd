r"""A grid of prune-then-train runs (methods x sparsities x seeds) and its reports.

usage: python -m force_jax.sweep --config=configs/claim_fashion_mnist.py --workdir=DIR
           [--report_only] [--config.KEY=VALUE ...]

Runs every cell of the config's grid (config.sweep.methods, sparsities, seeds
and ablations) in DIR/cells/, and after each cell rewrites DIR/results.csv,
DIR/summary.md (test accuracy, mean ± std over seeds) and the figures;
rerunning the same command on DIR skips the finished cells and resumes the
interrupted one. The command exits with status 1 when some cell failed, each
named on stderr (the code: force_jax.commands.sweep.run_sweep). With
--report_only it runs no cell and rewrites the reports from the folder's
finished and failed cells (cells copied in, or a partial grid's reports),
and exits with status 0 whatever those cells' outcome. For example:

    python -m force_jax.sweep --config=configs/claim_fashion_mnist.py \
        --workdir=/tmp/claim --config.data.data_dir=../shared/datasets/tfds
"""

if __name__ == "__main__":  # the command: TensorFlow's start-up lines off, before it loads
    import os

    from force_jax.commands import startup

    startup.quiet_library_logs(os.environ, startup.startup_environment())

from force_jax.commands.sweep import main, run_sweep  # noqa: E402

__all__ = ["main", "run_sweep"]

if __name__ == "__main__":
    main()
