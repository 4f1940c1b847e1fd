"""What a researcher plots about masks: density trajectories and overlaps.

Pure functions of a `prune.History`, of masks, or of their reports:

- `layer_density_trajectory`: per-layer density after every step of a
  progressive schedule (a history's ``layer_kept`` over each layer's size);
- `consecutive_iou`: the intersection over union of the masks of steps t-1
  and t, from the history's kept and revived counts alone;
- `layer_iou`: for two masks, the IoU of every prunable layer and of the
  whole;
- `path_network` and `input_output_paths`: whether any path from input to
  output survives a mask (SynFlow's objective on the mask's 0/1 network);
- `center_tap_fraction`: per conv layer, the share of kept weights on the
  kernel's centre tap, the only tap a 3x3 conv on a 1x1 map ever uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from force_jax.core import density
from force_jax.core import masks as masks_lib

PyTree = Any


def layer_density_trajectory(layer_kept: Any,
                             report: density.SparsityReport) -> dict[str, np.ndarray]:
    """Per-layer density after every pruning step.

    Args:
      layer_kept: (T, L) weights kept per prunable layer after each step:
        ``history.layer_kept`` of a `prune.History` (or its list form in
        prune.json).
      report: the sparsity report of a mask of the same model (gives the
        names and sizes of the L prunable layers, in the same order).

    Returns:
      {layer name: float array of length T}, density after step 1..T.

    Raises:
      ValueError: when layer_kept and the report count different layers.
    """
    kept = np.asarray(layer_kept)
    if kept.ndim != 2 or kept.shape[1] != len(report.layers):
        raise ValueError(f"layer_kept has shape {kept.shape}; the report has "
                         f"{len(report.layers)} prunable layers")
    return {layer.name: kept[:, i] / layer.total for i, layer in enumerate(report.layers)}


def consecutive_iou(history: Any, start_kept: int) -> np.ndarray:
    """IoU of the masks of consecutive steps, from kept and revived counts.

    With k_t weights kept after step t, of which r_t were pruned at step t-1,
    the masks m_{t-1} and m_t share k_t - r_t weights and cover
    k_{t-1} + r_t, so IoU_t = (k_t - r_t) / (k_{t-1} + r_t).

    Args:
      history: a `prune.History` (uses ``kept`` and ``revived``).
      start_kept: weights kept by the mask the schedule started from (the
        number of prunable weights for a dense start).

    Returns:
      Float array of length T: IoU of (m_{t-1}, m_t) for t = 1..T.
    """
    kept = np.asarray(history.kept, np.float64)
    revived = np.asarray(history.revived, np.float64)
    before = np.concatenate([[float(start_kept)], kept[:-1]])
    return (kept - revived) / (before + revived)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 1.0


def layer_iou(mask_a: PyTree, mask_b: PyTree) -> dict[str, float]:
    """Intersection over union of two masks, per prunable layer and overall.

    Two empty layers count as identical (IoU 1).

    Args:
      mask_a, mask_b: masks of the same params.

    Returns:
      {layer name: IoU} in tree order, then "global": the IoU over all
      prunable weights.

    Raises:
      ValueError: when the masks differ in structure or prunable shapes.
    """
    flat_a, def_a = jax.tree_util.tree_flatten_with_path(mask_a)
    flat_b, def_b = jax.tree_util.tree_flatten_with_path(mask_b)
    if def_a != def_b:
        raise ValueError(f"the masks have different tree structures: {def_a} vs {def_b}")
    result, all_a, all_b = {}, [], []
    for (path, a), (_, b) in zip(flat_a, flat_b):
        if not masks_lib.is_prunable_leaf(a):
            continue
        a, b = np.asarray(a, bool), np.asarray(b, bool)
        if a.shape != b.shape:
            raise ValueError(f"layer {masks_lib.path_name(path)}: shapes {a.shape} and {b.shape}")
        result[masks_lib.path_name(path)] = _iou(a, b)
        all_a.append(a.ravel())
        all_b.append(b.ravel())
    result["global"] = _iou(np.concatenate(all_a), np.concatenate(all_b))
    return result


def path_network(params: PyTree, mask: PyTree) -> PyTree:
    """The network whose input-output paths are exactly the mask's.

    Each prunable weight becomes 1 if kept and 0 if pruned; every other leaf
    becomes its absolute value. With the non-prunable leaves at their
    initial values (zero biases, BatchNorm scale 1 with statistics 0 and 1),
    every layer is then linear with nonnegative weights, ReLU passes its
    input through and max pooling keeps a positive value positive, so the
    output on an all-ones input is positive exactly when some path of kept
    weights joins the input to the output.

    Args:
      params: the parameters at initialisation.
      mask: a mask of them.

    Returns:
      A pytree of float arrays with the structure of `params`.
    """
    return jax.tree.map(
        lambda p, m: m.astype(p.dtype) * jnp.ones_like(p) if masks_lib.is_prunable_leaf(m)
        else jnp.abs(p), params, mask)


def input_output_paths(objective: Callable[[PyTree], jax.Array], params: PyTree,
                       mask: PyTree) -> float:
    """SynFlow's objective on the mask's path network: 0 when the mask disconnects.

    Args:
      objective: fn(params) -> the sum of the model's outputs on an all-ones
        input, e.g. ``losses.synflow_objective(model, variables, shape)``
        (BatchNorm in inference mode with its initial statistics).
      params: the parameters at initialisation (zero biases).
      mask: a mask of them.

    Returns:
      The objective, >= 0; it is 0 exactly when no path of kept weights
      joins the input to the output (the network then ignores its input).
      For linear layers and average pooling it counts the paths; max pooling
      keeps one path per window, so read a positive value as "connected".
    """
    return float(objective(path_network(params, mask)))


def center_tap_fraction(mask: PyTree) -> dict[str, float]:
    """Per 2-d conv layer, the fraction of kept weights on the kernel's centre tap.

    On a 1x1 feature map a SAME-padded 3x3 conv multiplies its 8 outer taps by
    padding zeros only, so only centre-tap weights can carry signal there.
    A mask with positions drawn uniformly puts 1/9 of them at the centre.

    Args:
      mask: a mask; conv kernels are prunable leaves of shape (h, w, in, out)
        with odd h and w.

    Returns:
      {layer name: fraction} for every such layer with kept weights, in tree
      order (layers with none kept are left out).
    """
    result = {}
    for path, m in jax.tree_util.tree_flatten_with_path(mask)[0]:
        if not masks_lib.is_prunable_leaf(m) or np.ndim(m) != 4:
            continue
        m = np.asarray(m, bool)
        h, w = m.shape[:2]
        if h % 2 == 0 or w % 2 == 0 or not m.any():
            continue
        result[masks_lib.path_name(path)] = float(
            np.count_nonzero(m[h // 2, w // 2]) / np.count_nonzero(m))
    return result
