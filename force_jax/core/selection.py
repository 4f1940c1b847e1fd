"""The exact top-k selection behind every mask: one seam, one implementation per backend.

`top_k_masks(scores, k)` keeps the k highest scores over all arrays together,
with ties going to the lower global index (array order in the list, then
row-major order), NaN below -inf and -0.0 equal to +0.0. On CPU it runs
`force_jax.core.topk`, which counts instead of sorting because XLA:CPU sorts
millions of floats slowly. Elsewhere it runs `sorted_masks`, a stable sort of
the same keys, which accelerators do natively. Both keep exactly the same
set (tests/topk_test.py checks them against each other and against numpy), so
the choice changes the time of a step, never a mask; the accelerator suite's
`selection` part times both on a device (benchmarks/accelerator_suite.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from force_jax.core import topk

Selection = Callable[[Sequence[jax.Array], jax.Array | int], list[jax.Array]]


def sorted_masks(scores: Sequence[jax.Array], k: jax.Array | int) -> list[jax.Array]:
    """The k highest scores by one stable sort of their keys: the reference selection.

    Args:
      scores: arrays of float scores (cast to float32).
      k: how many to keep in total (a traced value is fine), clipped to [0, N].

    Returns:
      One bool array per score array, of its shape, with exactly k True in all.
    """
    scores = [jnp.asarray(s) for s in scores]
    if not scores:
        return []
    keys = jnp.concatenate([topk.ordered_key(s).reshape(-1) for s in scores])
    # Ascending on the complemented key is descending on the key; stable keeps ties in
    # index order, so the rank of each score is its place in the selection.
    order = jnp.argsort(~keys, stable=True)
    rank = jnp.zeros(keys.shape, jnp.int32).at[order].set(jnp.arange(keys.size, dtype=jnp.int32))
    keep = rank < jnp.clip(jnp.asarray(k, jnp.int32), 0, keys.size)
    masks, start = [], 0
    for s in scores:
        masks.append(keep[start:start + s.size].reshape(s.shape))
        start += s.size
    return masks


def for_backend(backend: str) -> Selection:
    """The selection a backend runs: the counting kernel on CPU, the sort elsewhere.

    Args:
      backend: a JAX backend name ("cpu", "gpu", "tpu", ...).

    Returns:
      `topk.topk_masks` for "cpu", `sorted_masks` for any other.
    """
    return topk.topk_masks if backend == "cpu" else sorted_masks


def top_k_masks(scores: Sequence[jax.Array], k: jax.Array | int) -> list[jax.Array]:
    """The k highest scores over all arrays together, exactly, by this backend's selection.

    Args:
      scores: arrays of float scores.
      k: how many to keep in total (a traced value is fine).

    Returns:
      One bool array per score array, with exactly k True in all, ties to the
      lower global index.
    """
    return for_backend(jax.default_backend())(scores, k)
