"""`python -m force_jax.sweep`: a grid of training runs and its reports (see
`force_jax.experiments.sweep`, where `run_sweep` lives)."""

from force_jax.experiments.sweep import main, run_sweep

__all__ = ["main", "run_sweep"]

if __name__ == "__main__":
    main()
