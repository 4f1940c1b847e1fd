"""Mask analysis: density trajectories, consecutive-step IoU and per-layer IoU by hand."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.colors
import numpy as np
import pytest
from conftest import init_mlp, mlp_loss

import force_jax as fj
from force_jax.core import mask_analysis, schedules
from force_jax.reports import plots


def test_layer_iou_by_hand():
    a = {"w1": jnp.array([[True, True], [False, False]]), "w2": jnp.array([True, False, True]),
         "b": jnp.ones((), bool)}
    b = {"w1": jnp.array([[True, False], [True, False]]), "w2": jnp.array([True, False, True]),
         "b": jnp.ones((), bool)}
    iou = mask_analysis.layer_iou(a, b)
    # w1: 1 shared of 3 covered; w2: identical; overall: 3 shared of 5 covered.
    assert iou == {"w1": pytest.approx(1 / 3), "w2": 1.0, "global": pytest.approx(3 / 5)}
    empty = {"w": jnp.zeros((2,), bool)}
    assert mask_analysis.layer_iou(empty, empty) == {"w": 1.0, "global": 1.0}
    with pytest.raises(ValueError, match="shapes"):
        mask_analysis.layer_iou({"w": jnp.ones((2,), bool)}, {"w": jnp.ones((3,), bool)})


def test_consecutive_iou_from_counts_by_hand():
    # 10 -> 6 kept (none revived): IoU 6/10; 6 -> 4 kept, 1 of them revived: 3 shared of 7.
    history = fj.History(keep_fraction=np.array([0.6, 0.4]), kept=np.array([6, 4]),
                         objective=np.array([1.0, 1.0]), revived=np.array([0, 1]),
                         layer_kept=np.array([[6], [4]]))
    np.testing.assert_allclose(mask_analysis.consecutive_iou(history, 10), [0.6, 3 / 7])


def host_force_masks(params, data, sparsity, steps):
    """Every step's mask of FORCE on the whole data set, as a plain host loop."""
    n = params["w1"].size + params["w2"].size
    counts = schedules.keep_counts(schedules.keep_fractions("exp", 1 - sparsity, steps), n)
    mask, found = {"w1": np.ones(params["w1"].shape, bool), "w2": np.ones(params["w2"].shape,
                                                                         bool)}, []
    for k in counts:
        masked = {**params, "w1": params["w1"] * mask["w1"], "w2": params["w2"] * mask["w2"]}
        grads = jax.grad(mlp_loss)(masked, data)
        flat = np.concatenate([np.abs(np.asarray(params[w] * grads[w])).ravel()
                               for w in ("w1", "w2")])
        keep = np.zeros(flat.size, bool)
        keep[np.argsort(-flat, kind="stable")[:int(k)]] = True
        mask = {"w1": keep[:params["w1"].size].reshape(params["w1"].shape),
                "w2": keep[params["w1"].size:].reshape(params["w2"].shape)}
        found.append(mask)
    return found


def test_trajectory_and_consecutive_iou_agree_with_the_masks_of_every_step():
    params = init_mlp(jax.random.key(0))
    kx, ky = jax.random.split(jax.random.key(1))
    data = {"image": jax.random.normal(kx, (64, 64)), "label": jax.random.randint(ky, (64,), 0, 10)}
    final, history = fj.prune(mlp_loss, params, data, method="force", sparsity=0.95, steps=4,
                              batch_size=64, key=jax.random.key(2))  # a batch = the whole data
    steps = host_force_masks(params, data, 0.95, 4)
    np.testing.assert_array_equal(steps[-1]["w1"], final["w1"])  # the same schedule
    report = fj.sparsity_report(final)
    trajectory = mask_analysis.layer_density_trajectory(history.layer_kept, report)
    assert list(trajectory) == ["w1", "w2"]
    for name, size in (("w1", 64 * 32), ("w2", 32 * 10)):
        np.testing.assert_allclose(trajectory[name], [m[name].sum() / size for m in steps])
    dense = {"w1": np.ones((64, 32), bool), "w2": np.ones((32, 10), bool)}
    expected = [mask_analysis.layer_iou(a, b)["global"] for a, b in zip([dense] + steps, steps)]
    np.testing.assert_allclose(mask_analysis.consecutive_iou(history, report.total), expected)
    assert history.revived.sum() > 0  # FORCE revived weights: the IoU is not just k_t / k_t-1
    with pytest.raises(ValueError, match="prunable layers"):
        mask_analysis.layer_density_trajectory(history.layer_kept[:, :1], report)


def _pixels_of(image: np.ndarray, colour: str) -> np.ndarray:
    """(row, column) of the pixels of an RGBA image (floats in [0, 1]) drawn in `colour`."""
    rgb = np.asarray(matplotlib.colors.to_rgb(colour))
    return np.argwhere(np.abs(image[..., :3] - rgb).max(axis=-1) < 0.02)


def _end_row(image: np.ndarray, colour: str) -> float:
    """The image row of a curve's last point: its rightmost pixels (row 0 is the top)."""
    pixels = _pixels_of(image, colour)
    return float(pixels[pixels[:, 1] == pixels[:, 1].max(), 0].mean())


def test_density_trajectory_plot_is_a_png_of_the_data(tmp_path):
    import matplotlib.image

    images = {}
    for name, last in (("steep", 0.02), ("shallow", 0.2)):
        path = tmp_path / f"{name}.png"
        plots.plot_density_trajectory({"conv/kernel": [0.5, last], "dense/kernel": [0.4, 0.1]},
                                      [0.45, 0.15], str(path))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        images[name] = matplotlib.image.imread(str(path))  # decodes, or raises
    for image in images.values():
        # A 7.0 x 4.4 in figure at 120 dpi (840 x 528), cropped to its drawing.
        height, width, channels = image.shape
        assert 0.85 * 840 <= width <= 840 and 0.85 * 528 <= height <= 528 and channels == 4
        assert 0.01 < (image[..., :3].min(axis=-1) < 0.9).mean() < 0.5  # drawn on, not blank
        # Both layers' curves (C0, C1) and the schedule's black dashes are drawn.
        assert min(len(_pixels_of(image, c)) for c in ("C0", "C1", "black")) > 100
    # conv's last density, 2 % rather than 20 %, puts its curve's end lower in the image.
    assert _end_row(images["steep"], "C0") > _end_row(images["shallow"], "C0") + 50


def two_layer_relu(params, batch=None):
    """All-ones input of 3 features -> 2 hidden ReLU units -> 2 outputs, summed."""
    del batch
    hidden = jax.nn.relu(jnp.ones((1, 3)) @ params["w1"] + params["b1"])
    return jnp.sum(hidden @ params["w2"])


def test_input_output_paths_by_hand():
    params = {"w1": jnp.full((3, 2), -0.7), "b1": jnp.zeros(2), "w2": jnp.full((2, 2), 0.3)}
    # Input 0 -> hidden 0 -> output 1 and input 2 -> hidden 0 -> output 0: 2 paths.
    connected = {"w1": jnp.array([[True, False], [False, False], [True, False]]),
                 "b1": jnp.ones((), bool), "w2": jnp.array([[True, True], [False, False]])}
    assert mask_analysis.input_output_paths(two_layer_relu, params, connected) == 4.0
    # Every layer keeps weights, but layer 1 reaches hidden 1 and layer 2 leaves only hidden 0.
    cut = {"w1": jnp.array([[False, True], [False, True], [False, False]]),
           "b1": jnp.ones((), bool), "w2": jnp.array([[True, True], [False, False]])}
    assert mask_analysis.input_output_paths(two_layer_relu, params, cut) == 0.0
    net = mask_analysis.path_network(params, connected)
    np.testing.assert_array_equal(net["w1"], np.asarray(connected["w1"], np.float32))
    np.testing.assert_array_equal(net["b1"], np.zeros(2))


def test_a_3x3_conv_on_a_1x1_map_uses_only_its_centre_tap():
    from flax import linen as nn

    from force_jax.core import losses

    model = nn.Sequential([nn.Conv(4, (3, 3), padding="SAME"), nn.relu,
                           lambda x: x.reshape(x.shape[0], -1), nn.Dense(2)])
    variables = model.init(jax.random.key(0), jnp.ones((1, 1, 1, 2)))
    objective = losses.synflow_objective(_ignore_train(model), variables, (1, 1, 2))
    params = variables["params"]
    mask = fj.init_mask(params)
    corners = np.zeros((3, 3, 2, 4), bool)
    corners[0, 0] = corners[2, 2] = True
    only_corners = jax.tree.map(lambda m: m, mask)
    only_corners["layers_0"]["kernel"] = jnp.asarray(corners)
    assert mask_analysis.input_output_paths(objective, params, only_corners) == 0.0
    centre = corners.copy()
    centre[1, 1, 0, 0] = True
    with_centre = dict(only_corners, layers_0=dict(only_corners["layers_0"],
                                                  kernel=jnp.asarray(centre)))
    assert mask_analysis.input_output_paths(objective, params, with_centre) > 0
    # 1 of the 17 kept conv weights is on the centre tap; Dense kernels are not convs.
    assert mask_analysis.center_tap_fraction(with_centre) == {
        "layers_0/kernel": pytest.approx(1 / 17)}


def _ignore_train(module):
    """The module behind the `model.apply(..., train=False)` call of synflow_objective."""
    class Wrapped:
        def apply(self, variables, x, train=False):
            del train
            return module.apply(variables, x)
    return Wrapped()


@pytest.mark.slow
def test_per_layer_tables_read_layer_numbers_as_numbers():
    model = fj.models.VGG(depth=19, num_classes=10, width_multiplier=0.0625)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    mask = fj.init_mask(variables["params"])
    lines = str(fj.sparsity_report(mask)).splitlines()[1:-1]
    names = [line.split()[0] for line in lines]
    assert names == ["classifier/kernel", *(f"conv_{i}/kernel" for i in range(16))]
