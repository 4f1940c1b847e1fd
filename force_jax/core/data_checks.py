"""Data sanity checks: score with corrupted data (Su et al., NeurIPS 2020).

"Sanity-checking pruning methods: random tickets can win the jackpot" prunes
with data that carries no information about the task. A data-reading method
that finds as good a mask from noise does not use its data. Two corruptions,
each a pure function of a batch (or a pool) and a key:

- **random_labels**: every label redrawn uniformly from the classes;
- **random_pixels**: every image replaced by Gaussian noise with the
  per-channel mean and standard deviation of the images it replaces.

They are ablations next to those of `force_jax.core.sanity` (config key
``prune.ablation``, a sweep axis): the mask is found on corrupted batches,
then trained on the real data as usual.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

DATA_CHECKS = ("random_labels", "random_pixels")
# What a record says the mask was scored on.
SCORING_DATA = {"none": "real", "random_labels": "real images, uniformly random labels",
                "random_pixels": "Gaussian noise of the images' per-channel mean and std, "
                                 "real labels"}


def random_labels(batch: Mapping[str, jax.Array], key: jax.Array,
                  num_classes: int) -> dict[str, jax.Array]:
    """The batch with every label drawn uniformly from [0, num_classes).

    Args:
      batch: {"image", "label", ...} with a leading example axis.
      key: PRNG key.
      num_classes: the number of classes.

    Returns:
      A new dict; the images (and any other entry) unchanged.
    """
    labels = jnp.asarray(batch["label"])
    drawn = jax.random.randint(key, labels.shape, 0, num_classes, dtype=labels.dtype)
    return {**batch, "label": drawn}


def random_pixels(batch: Mapping[str, jax.Array], key: jax.Array) -> dict[str, jax.Array]:
    """The batch with its images replaced by noise of their per-channel mean and std.

    Args:
      batch: {"image", "label", ...}; images (N, ..., C).
      key: PRNG key.

    Returns:
      A new dict; labels (and any other entry) unchanged.
    """
    images = jnp.asarray(batch["image"], jnp.float32)
    axes = tuple(range(images.ndim - 1))
    mean, std = jnp.mean(images, axis=axes), jnp.std(images, axis=axes)
    noise = mean + std * jax.random.normal(key, images.shape, jnp.float32)
    return {**batch, "image": noise.astype(jnp.asarray(batch["image"]).dtype)}


def corrupt(batch: Mapping[str, jax.Array], check: str, key: jax.Array,
            num_classes: int) -> dict[str, jax.Array]:
    """One batch (or a whole pool) under the data check `check`.

    Args:
      batch: {"image", "label"} arrays with a leading example axis.
      check: one of `DATA_CHECKS`.
      key: PRNG key.
      num_classes: the number of classes (random_labels).

    Returns:
      The corrupted batch.

    Raises:
      ValueError: for an unknown check.
    """
    if check == "random_labels":
        return random_labels(batch, key, num_classes)
    if check == "random_pixels":
        return random_pixels(batch, key)
    raise ValueError(f"unknown data check {check!r}; expected one of {', '.join(DATA_CHECKS)}")


def corrupt_stream(batches: Iterator[Any], check: str, key: jax.Array,
                   num_classes: int) -> Iterator[dict[str, Any]]:
    """A stream of batches, each corrupted with its own key (fold_in of its index).

    Args:
      batches: an iterator of {"image", "label"} batches (numpy or jax).
      check: one of `DATA_CHECKS`.
      key: PRNG key.
      num_classes: the number of classes.

    Yields:
      The corrupted batches, as numpy arrays where the input was numpy.
    """
    for index, batch in enumerate(batches):
        out = corrupt(batch, check, jax.random.fold_in(key, index), num_classes)
        yield {k: np.asarray(v) if isinstance(batch[k], np.ndarray) else v
               for k, v in out.items()}
