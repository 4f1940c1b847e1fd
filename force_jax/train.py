"""`python -m force_jax.train`: prune at initialisation, then train (see
`force_jax.experiments.train`, where `train_and_evaluate` lives)."""

from force_jax.experiments.train import main, train_and_evaluate

__all__ = ["main", "train_and_evaluate"]

if __name__ == "__main__":
    main()
