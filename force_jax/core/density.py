"""The densities of a mask, layer by layer: `sparsity_report`, and `check_collapse`.

A report needs nothing but the mask (a prunable leaf is a full-shape bool
array, any other a scalar True), and the kept weights on an input-output path
where `force_jax.core.effective` measured them.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from typing import Any

import jax
import numpy as np

from force_jax.core.masks import PyTree, is_prunable_leaf, path_name


def natural_key(name: str) -> list[Any]:
    """Sort key that reads numbers as numbers: conv_2 before conv_10.

    Args:
      name: a layer name.

    Returns:
      The name split into text and integers.
    """
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


@dataclasses.dataclass(frozen=True)
class LayerDensity:
    """Kept and total weights of one prunable leaf, and the kept ones on a path.

    `effective` counts the kept weights on an input-output path
    (`force_jax.core.effective`); None where it was not computed.
    """

    name: str
    kept: int
    total: int
    effective: int | None = None

    @property
    def density(self) -> float:
        return self.kept / self.total


@dataclasses.dataclass(frozen=True)
class SparsityReport:
    """Per-layer and global density of a mask; `str()` gives a table."""

    layers: tuple[LayerDensity, ...]

    @property
    def kept(self) -> int:
        return sum(layer.kept for layer in self.layers)

    @property
    def total(self) -> int:
        return sum(layer.total for layer in self.layers)

    @property
    def density(self) -> float:
        return self.kept / self.total

    @property
    def effective(self) -> int | None:
        """Kept weights on an input-output path, or None where not computed."""
        if any(layer.effective is None for layer in self.layers):
            return None
        return sum(layer.effective for layer in self.layers)

    @property
    def collapsed(self) -> tuple[str, ...]:
        """Names of prunable layers left with zero weights."""
        return tuple(layer.name for layer in self.layers if layer.kept == 0)

    def as_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "layers": [dataclasses.asdict(x) | {"density": x.density} for x in self.layers],
            "kept": self.kept,
            "total": self.total,
            "density": self.density,
            "effective": self.effective,
            "collapsed": list(self.collapsed),
        }

    def __str__(self) -> str:
        width = max([len(x.name) for x in self.layers] + [len("global")])
        with_effective = self.effective is not None
        header = f"{'layer':<{width}} {'kept':>11} {'total':>11} {'density':>9}"
        lines = [header + (f" {'effective':>11}" if with_effective else "")]
        total = LayerDensity("global", self.kept, self.total, self.effective)
        for x in (*sorted(self.layers, key=lambda layer: natural_key(layer.name)), total):
            line = f"{x.name:<{width}} {x.kept:>11,} {x.total:>11,} {x.density:>9.3%}"
            lines.append(line + (f" {x.effective:>11,}" if with_effective else ""))
        return "\n".join(lines)


def sparsity_report(mask: PyTree, effective: PyTree | None = None) -> SparsityReport:
    """Per-layer kept/total/density of the prunable leaves, and the global figures.

    Args:
      mask: mask pytree.
      effective: optionally the mask's kept weights on an input-output path
        (`force_jax.core.effective.effective_mask`), counted per layer too.

    Returns:
      A SparsityReport; print it for a table.
    """
    flat, _ = jax.tree_util.tree_flatten_with_path(mask)
    on_paths = (jax.tree.leaves(effective) if effective is not None
                else [None] * len(flat))
    layers = tuple(
        LayerDensity(path_name(path), int(np.sum(np.asarray(m))), int(np.size(m)),
                     None if e is None else int(np.sum(np.asarray(e))))
        for (path, m), e in zip(flat, on_paths)
        if is_prunable_leaf(m)
    )
    return SparsityReport(layers)


def check_collapse(mask: PyTree, on_collapse: str = "warn") -> tuple[str, ...]:
    """Reports every prunable layer left with zero weights (layer collapse).

    Args:
      mask: mask pytree.
      on_collapse: "warn" (default), "raise" or "ignore".

    Returns:
      Names of the collapsed layers.

    Raises:
      ValueError: if on_collapse is "raise" and a layer collapsed, or if
        on_collapse is not one of the three values.
    """
    if on_collapse not in ("warn", "raise", "ignore"):
        raise ValueError(f"on_collapse must be 'warn', 'raise' or 'ignore', got {on_collapse!r}")
    collapsed = sparsity_report(mask).collapsed
    if collapsed and on_collapse != "ignore":
        message = f"layer collapse: {len(collapsed)} prunable layer(s) kept no weight: {collapsed}"
        if on_collapse == "raise":
            raise ValueError(message)
        warnings.warn(message, stacklevel=2)
    return collapsed
