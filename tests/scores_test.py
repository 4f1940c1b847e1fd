"""Each method's scores against hand-computed values or finite differences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import init_mlp, mlp_loss
from jax.flatten_util import ravel_pytree

from force_jax.core import masks, methods, scores


def linear_probe(d_in):
    """The probe of a linear model f(x) = x w (NTK-SAP's output gap on it is known)."""
    return scores.Probe(
        gap=lambda w, v, x: jnp.sum(jnp.square(x @ w["w"] - x @ v["w"])),
        init=lambda key: {"w": jax.random.normal(key, (d_in, 2))}, input_shape=(d_in,),
        layer_order=("w",))


def step_inputs(loss_fn, params, mask, batch, synflow_fn=None, key=None):
    """StepInputs over one batch, built independently of prune()."""

    def hessian_vector(p, v):
        return jax.jvp(lambda q: jax.grad(loss_fn)(q, batch), (p,), (v,))[1]

    return scores.StepInputs(
        params=params,
        mask=mask,
        gradient=lambda p: jax.grad(loss_fn)(p, batch),
        hessian_vector=hessian_vector,
        synflow_gradient=jax.grad(synflow_fn) if synflow_fn else None,
        key=key if key is not None else jax.random.key(0),
        loss=loss_fn,
        batch=lambda i: batch,
        count=jnp.int32(3),
        probe=linear_probe(jax.tree.leaves(params)[0].shape[0]),
    )


def least_squares_problem(seed=0):
    """L(w) = 0.5 mean((X w - y)^2): its gradient X^T (X w - y) / n is known."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(8, 5))
    y = rng.normal(size=(8, 2))
    w = rng.normal(size=(5, 2))

    def loss_fn(params, batch):
        r = batch["x"] @ params["w"] - batch["y"]
        return 0.5 * jnp.mean(jnp.sum(r**2, axis=1))

    batch = {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.float32)}
    return loss_fn, {"w": jnp.asarray(w, jnp.float32)}, batch, (x, y, w)


def hand_gradient(x, y, w):
    return x.T @ (x @ w - y) / x.shape[0]


def test_snip_and_force_match_hand_computed_gradient():
    loss_fn, params, batch, (x, y, w) = least_squares_problem()
    mask = {"w": jnp.asarray(np.arange(10).reshape(5, 2) % 3 != 0)}
    got, _ = scores.snip(step_inputs(loss_fn, params, masks.init_mask(params), batch))
    np.testing.assert_allclose(got["w"], np.abs(w * hand_gradient(x, y, w)), rtol=1e-5)
    # FORCE: gradient at the masked weights, score on every weight (pruned ones too).
    m = np.asarray(mask["w"])
    got, _ = scores.force(step_inputs(loss_fn, params, mask, batch))
    expected = np.abs(w * hand_gradient(x, y, w * m))
    np.testing.assert_allclose(got["w"], expected, rtol=1e-5)
    assert np.all(np.asarray(got["w"])[~m] > 0), "pruned weights must be scored by FORCE"
    # Iterative SNIP: same on kept weights, -inf on pruned ones.
    got, _ = scores.iter_snip(step_inputs(loss_fn, params, mask, batch))
    np.testing.assert_allclose(np.asarray(got["w"])[m], expected[m], rtol=1e-5)
    assert np.all(np.asarray(got["w"])[~m] == -np.inf)
    # GraSP-it: squared gradient at the masked weights.
    got, _ = scores.grasp_it(step_inputs(loss_fn, params, mask, batch))
    np.testing.assert_allclose(
        np.asarray(got["w"])[m], hand_gradient(x, y, w * m)[m] ** 2, rtol=1e-5
    )


def test_saliency_is_derivative_wrt_mask_by_finite_differences():
    """|theta0 * g(theta0 * c)| equals |dL(c * theta0)/dc| (SNIP's definition)."""
    with jax.enable_x64(True):
        params = jax.tree.map(lambda p: p.astype(jnp.float64), init_mlp(jax.random.key(1)))
        kx, ky = jax.random.split(jax.random.key(2))
        batch = {
            "image": jax.random.normal(kx, (16, 64), jnp.float64),
            "label": jax.random.randint(ky, (16,), 0, 10),
        }
        mask = masks.init_mask(params)
        mask["w1"] = jax.random.bernoulli(jax.random.key(3), 0.7, params["w1"].shape)
        got, _ = scores.force(step_inputs(mlp_loss, params, mask, batch))

        def loss_of_c(c):
            return mlp_loss({**params, "w1": params["w1"] * c}, batch)

        c0 = mask["w1"].astype(jnp.float64)
        eps = 1e-6
        for i, j in [(0, 0), (3, 7), (10, 31), (63, 5), (20, 20)]:
            e = jnp.zeros_like(c0).at[i, j].set(eps)
            fd = (loss_of_c(c0 + e) - loss_of_c(c0 - e)) / (2 * eps)
            np.testing.assert_allclose(got["w1"][i, j], abs(fd), rtol=1e-5, atol=1e-12)


def test_grasp_hessian_gradient_product_matches_full_hessian():
    with jax.enable_x64(True):
        small = init_mlp(jax.random.key(4), d_in=6, hidden=5, classes=3)
        params = jax.tree.map(lambda p: p.astype(jnp.float64), small)
        kx, ky = jax.random.split(jax.random.key(5))
        batch = {
            "image": jax.random.normal(kx, (12, 6), jnp.float64),
            "label": jax.random.randint(ky, (12,), 0, 3),
        }
        mask = masks.init_mask(params)
        got, _ = scores.grasp(step_inputs(mlp_loss, params, mask, batch))

        flat, unravel = ravel_pytree(params)
        hessian = jax.hessian(lambda f: mlp_loss(unravel(f), batch))(flat)
        grads = jax.grad(mlp_loss)(params, batch)
        # Scores are float32 (the ranking dtype), hence rtol=1e-6 below.
        # GraSP's g lives on the prunable weights only (biases get a zero tangent).
        g_prunable = {k: v if v.ndim >= 2 else jnp.zeros_like(v) for k, v in grads.items()}
        hg = unravel(hessian @ ravel_pytree(g_prunable)[0])
        for name in ("w1", "w2"):
            np.testing.assert_allclose(got[name], params[name] * hg[name], rtol=1e-6, atol=1e-9)


def test_synflow_matches_hand_computed_two_layer_linear_network():
    """R = 1^T |W2|^T |W1|^T 1 for a linear net: dR/dW1[i, j] = sum_k |W2[j, k]|."""
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(4, 3)), rng.normal(size=(3, 2))
    params = {"w1": jnp.asarray(w1, jnp.float32), "w2": jnp.asarray(w2, jnp.float32)}

    def objective(p, batch=None):
        return jnp.sum(jnp.ones((1, 4)) @ p["w1"] @ p["w2"])

    mask = {"w1": jnp.ones((4, 3), bool), "w2": jnp.asarray([[1, 0], [1, 1], [0, 1]], bool)}
    got, _ = scores.synflow(step_inputs(None, params, mask, None, synflow_fn=objective))
    a1, a2 = np.abs(w1), np.abs(w2) * np.asarray(mask["w2"])
    expected_w1 = a1 * a2.sum(axis=1)[None, :]
    expected_w2 = a2 * a1.sum(axis=0)[:, None]
    np.testing.assert_allclose(got["w1"], expected_w1, rtol=1e-6)
    m2 = np.asarray(mask["w2"])
    np.testing.assert_allclose(np.asarray(got["w2"])[m2], expected_w2[m2], rtol=1e-6)
    assert np.all(np.asarray(got["w2"])[~m2] == -np.inf)


def test_magnitude_and_random():
    params = init_mlp(jax.random.key(0))
    mask = masks.init_mask(params)
    got, _ = scores.magnitude(step_inputs(None, params, mask, None))
    np.testing.assert_array_equal(got["w1"], np.abs(params["w1"]))
    a, _ = scores.random(step_inputs(None, params, mask, None, key=jax.random.key(1)))
    b, _ = scores.random(step_inputs(None, params, mask, None, key=jax.random.key(2)))
    assert 0.0 <= float(a["w1"].min()) and float(a["w1"].max()) < 1.0
    assert not np.array_equal(a["w1"], b["w1"])


@pytest.mark.parametrize("method", sorted(methods.METHODS))
def test_every_method_scores_every_leaf(method):
    loss_fn, params, batch, _ = least_squares_problem()
    inputs = step_inputs(
        loss_fn, params, masks.init_mask(params), batch,
        synflow_fn=lambda p, b=None: jnp.sum(p["w"]),
    )
    got, _ = methods.METHODS[method].score(inputs)
    assert jax.tree.structure(got) == jax.tree.structure(params)
    assert got["w"].shape == params["w"].shape and got["w"].dtype == jnp.float32


@pytest.mark.parametrize("first_order", [False, True])
def test_prospr_matches_hand_computed_meta_gradient(first_order):
    # One SGD step on L(w) = 0.5 mean ||X w - y||^2 (gradient G(w) = X^T (X w - y) / n,
    # Hessian H = X^T X / n): w1 = w - eta G(w). Full: dL(w1)/dw = (I - eta H) G(w1);
    # first order: G(w1). The score is |w * that|.
    loss_fn, params, batch, (x, y, w) = least_squares_problem()
    eta = 0.3
    score = methods.get("prospr", inner_steps=1, inner_lr=eta, new_data=False,
                        first_order=first_order).score
    got, _ = score(step_inputs(loss_fn, params, masks.init_mask(params), batch))
    w1 = w - eta * hand_gradient(x, y, w)
    meta = hand_gradient(x, y, w1)
    if not first_order:
        meta = (np.eye(5) - eta * x.T @ x / x.shape[0]) @ meta
    np.testing.assert_allclose(got["w"], np.abs(w * meta), rtol=1e-4)


def test_ntk_sap_matches_hand_computed_mask_gradient():
    # For f(x) = x (c * w), J(c) = sum_n ||x_n (c * delta)||^2 whatever w is, so at c = 1:
    # dJ/dc = 2 delta * (X^T X delta), one term per sample, summed.
    loss_fn, params, batch, _ = least_squares_problem()
    score = methods.get("ntk_sap", samples=2, noise_batch=6, epsilon=0.1).score
    inputs = step_inputs(loss_fn, params, masks.init_mask(params), batch, key=jax.random.key(4))
    got, _ = score(inputs)
    expected = 0.0
    for r in range(2):
        _, (delta,), noise = score.draws(inputs.probe, params, inputs.mask,
                                         jax.random.fold_in(inputs.key, r))
        delta, noise = np.asarray(delta, np.float64), np.asarray(noise, np.float64)
        expected = expected + 2 * delta * (noise.T @ noise @ delta)
    np.testing.assert_allclose(got["w"], np.abs(expected), rtol=1e-4)
