"""prune(): exact k, the FORCE / Iterative SNIP loop against a host-loop reference,
no recompilation, and every bad input rejected with a clear error."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import init_mlp, mlp_loss
from jax.flatten_util import ravel_pytree

import force_jax as fj
from force_jax.core import compile_options, program, sanity, schedules
from force_jax.core.gradients import mean_over_batches


def reference_topk(scores: dict, k: int) -> dict:
    """Stable-argsort top-k over the prunable leaves (w1, w2), lower index wins ties."""
    flat = np.concatenate([np.asarray(scores[n], np.float32).ravel() for n in ("w1", "w2")])
    keep = np.zeros(flat.size, bool)
    keep[np.argsort(-flat, kind="stable")[:k]] = True
    split = scores["w1"].size
    return {"w1": keep[:split].reshape(scores["w1"].shape),
            "w2": keep[split:].reshape(scores["w2"].shape)}


def reference_schedule(loss_fn, params, data, method, sparsity, steps, invert=False):
    """FORCE / Iterative SNIP as a plain host loop over the full data set (invert: keep the
    lowest scores at every step)."""
    n = sum(params[k].size for k in ("w1", "w2"))
    counts = schedules.keep_counts(schedules.keep_fractions("exp", 1 - sparsity, steps), n)
    mask = {"w1": np.ones(params["w1"].shape, bool), "w2": np.ones(params["w2"].shape, bool)}
    for k in counts:
        masked = {**params, "w1": params["w1"] * mask["w1"], "w2": params["w2"] * mask["w2"]}
        grads = jax.grad(loss_fn)(masked, data)
        s = {name: np.abs(np.asarray(params[name] * grads[name])) for name in ("w1", "w2")}
        if method == "iter_snip":
            s = {name: np.where(mask[name], s[name], -np.inf) for name in s}
        if invert:
            s = {name: np.where(np.isneginf(v), v, -v) for name, v in s.items()}
        mask = reference_topk(s, int(k))
    return mask


@pytest.mark.parametrize("method", ["force", pytest.param("iter_snip", marks=pytest.mark.slow)])
def test_progressive_methods_match_host_loop_reference(tiny, method):
    loss_fn, params, data = tiny
    # batch = whole data set, so every step sees the same examples as the reference.
    mask, history = fj.prune(loss_fn, params, data, method=method, sparsity=0.98, steps=6,
                             batch_size=256, key=jax.random.key(0))
    expected = reference_schedule(loss_fn, params, data, method, 0.98, 6)
    np.testing.assert_array_equal(mask["w1"], expected["w1"])
    np.testing.assert_array_equal(mask["w2"], expected["w2"])
    assert history.kept[-1] == int(fj.num_kept(mask)) == int(np.floor(0.02 * 2368))


@pytest.mark.parametrize("method", ["force", pytest.param("iter_snip", marks=pytest.mark.slow)])
def test_inverted_scores_keep_the_lowest_at_every_step(tiny, method):
    loss_fn, params, data = tiny
    mask, history = fj.prune(loss_fn, params, data, method=sanity.inverted(method),
                             sparsity=0.9, steps=4, batch_size=256, key=jax.random.key(0))
    expected = reference_schedule(loss_fn, params, data, method, 0.9, 4, invert=True)
    np.testing.assert_array_equal(mask["w1"], expected["w1"])
    np.testing.assert_array_equal(mask["w2"], expected["w2"])
    plain, _ = fj.prune(loss_fn, params, data, method=method, sparsity=0.9, steps=4,
                        batch_size=256, key=jax.random.key(0))
    overlap = (np.sum(plain["w1"] & mask["w1"]) + np.sum(plain["w2"] & mask["w2"]))
    assert overlap < 0.5 * history.kept[-1]  # mostly other weights than the method's own


def test_history_counts_every_layer_after_every_step(tiny):
    loss_fn, params, data = tiny
    mask, history = fj.prune(loss_fn, params, data, method="force", sparsity=0.95, steps=5,
                             batch_size=32, key=jax.random.key(3))
    assert history.layer_kept.shape == (5, 2)  # 5 steps, prunable w1 and w2
    np.testing.assert_array_equal(history.layer_kept.sum(axis=1), history.kept)
    assert list(history.layer_kept[-1]) == [int(mask["w1"].sum()), int(mask["w2"].sum())]


def test_force_revives_weights_and_iter_snip_never_does(tiny):
    loss_fn, params, data = tiny
    kwargs = dict(sparsity=0.99, steps=10, batch_size=32, key=jax.random.key(1))
    _, force_history = fj.prune(loss_fn, params, data, method="force", **kwargs)
    _, snip_history = fj.prune(loss_fn, params, data, method="iter_snip", **kwargs)
    assert force_history.revived.sum() > 0
    assert snip_history.revived.sum() == 0
    assert force_history.revived[0] == 0  # nothing is pruned before step 1


def test_step_one_of_force_and_iter_snip_equals_snip(tiny):
    loss_fn, params, data = tiny
    kwargs = dict(sparsity=0.9, steps=1, batch_size=64, key=jax.random.key(2))
    snip, _ = fj.prune(loss_fn, params, data, method="snip", **kwargs)
    for method in ("force", "iter_snip"):
        mask, _ = fj.prune(loss_fn, params, data, method=method, **kwargs)
        for name in ("w1", "w2"):
            np.testing.assert_array_equal(mask[name], snip[name])


# Each method at 0 and 99 % by default; the middle and the
# extreme sparsities in the slow tier (keep_count_test checks every count rule alone).
@pytest.mark.parametrize("method, sparsity", [
    (method, sparsity) if sparsity in (0.0, 0.99)
    else pytest.param(method, sparsity, marks=pytest.mark.slow)
    for method in ("force", "iter_snip", "snip", "grasp", "magnitude", "random")
    for sparsity in (0.0, 0.5, 0.9, 0.99, 0.999)])
def test_exact_k_and_non_prunable_leaves_untouched(tiny, method, sparsity):
    loss_fn, params, data = tiny
    steps = 5 if method in ("force", "iter_snip") else 1
    mask, history = fj.prune(loss_fn, params, data, method=method, sparsity=sparsity,
                             steps=steps, batch_size=64, key=jax.random.key(3),
                             on_collapse="ignore")
    assert int(fj.num_kept(mask)) == int(np.floor((1 - sparsity) * 2368))
    assert mask["b1"].shape == () and bool(mask["b1"]) and bool(mask["b2"])
    assert mask["w1"].dtype == jnp.bool_ and mask["w1"].shape == params["w1"].shape
    assert history.kept.shape == history.objective.shape == (steps,)
    assert np.all(np.isfinite(history.objective))


def test_synflow_and_grasp_it_run(tiny):
    loss_fn, params, data = tiny

    def objective(p, batch=None):
        from conftest import mlp_apply

        return jnp.sum(mlp_apply(p, jnp.ones((1, 64))))

    mask, history = fj.prune(loss_fn, params, data, method="synflow", synflow_fn=objective,
                             sparsity=0.95, steps=20, batch_size=64, key=jax.random.key(0))
    assert int(fj.num_kept(mask)) == int(0.05 * 2368)
    assert history.revived.sum() == 0 and np.all(np.isfinite(history.objective))
    mask, history = fj.prune(loss_fn, params, data, method="grasp_it", sparsity=0.95, steps=5,
                             batch_size=64, key=jax.random.key(0))
    assert history.revived.sum() == 0


def test_micro_batches_average_to_the_full_batch_gradient(tiny):
    loss_fn, params, data = tiny
    indices = jnp.arange(256).reshape(4, 64)
    batches = jax.tree.map(lambda x: x[indices], data)
    got = mean_over_batches(lambda b: jax.grad(loss_fn)(params, b), batches, 4, None)
    full = jax.grad(loss_fn)(params, data)
    for name in params:
        np.testing.assert_allclose(got[name], full[name], rtol=2e-5, atol=1e-7)


def test_objective_is_force_saliency_of_the_final_mask(tiny):
    loss_fn, params, data = tiny
    mask, history = fj.prune(loss_fn, params, data, method="force", sparsity=0.9, steps=3,
                             batch_size=256, key=jax.random.key(0))
    grads = jax.grad(loss_fn)(fj.apply_mask(params, mask), data)
    expected = sum(float(jnp.sum(jnp.abs(params[n] * grads[n]) * mask[n])) for n in ("w1", "w2"))
    np.testing.assert_allclose(history.objective[-1], expected, rtol=1e-4)


def test_one_compile_serves_every_sparsity_and_step(tiny):
    base_loss, params, data = tiny

    def loss_fn(p, batch):  # a loss object of its own, so no other test shares the program
        return base_loss(p, batch)

    jax.clear_caches()
    for sparsity in (0.5, 0.9, 0.99, 0.999):
        fj.prune(loss_fn, params, data, method="force", sparsity=sparsity, steps=8,
                 batch_size=32, key=jax.random.key(0))
    # prune's compile reuse is jax.jit's own cache, keyed on the static Pruner.
    assert compile_options.outer_jit(program.schedule, static_argnums=0)._cache_size() == 1


@pytest.mark.slow
def test_grasp_mask_is_the_top_k_of_theta_times_full_hessian_gradient():
    """prune()'s own Hessian-vector product against jax.hessian on a small MLP."""
    with jax.enable_x64(True):
        params = jax.tree.map(lambda p: p.astype(jnp.float64),
                              init_mlp(jax.random.key(4), d_in=6, hidden=5, classes=3))
        kx, ky = jax.random.split(jax.random.key(5))
        data = {"image": jax.random.normal(kx, (12, 6), jnp.float64),
                "label": jax.random.randint(ky, (12,), 0, 3)}
        mask, _ = fj.prune(mlp_loss, params, data, method="grasp", sparsity=0.6,
                           batch_size=12, key=jax.random.key(0))  # every step: all 12
        flat, unravel = ravel_pytree(params)
        hessian = jax.hessian(lambda f: mlp_loss(unravel(f), data))(flat)
        grads = jax.grad(mlp_loss)(params, data)
        g_prunable = {k: v if v.ndim >= 2 else jnp.zeros_like(v) for k, v in grads.items()}
        hg = unravel(hessian @ ravel_pytree(g_prunable)[0])
        scores = {n: np.asarray(params[n] * hg[n]) for n in ("w1", "w2")}
        k = int(fj.num_kept(mask))
        assert k == int(0.4 * (30 + 15))
        expected = reference_topk(scores, k)
    for name in ("w1", "w2"):
        np.testing.assert_array_equal(np.asarray(mask[name]), expected[name])


@pytest.mark.slow
def test_compiled_programs_live_in_jaxs_cache_and_clear_caches_frees_them(tiny):
    base_loss, params, data = tiny

    def loss_fn(p, batch):
        return base_loss(p, batch)

    schedule = compile_options.outer_jit(program.schedule, static_argnums=0)
    before = schedule._cache_size()
    fj.prune(loss_fn, params, data, method="force", sparsity=0.9, steps=2, batch_size=32,
             key=jax.random.key(0))
    assert schedule._cache_size() == before + 1
    fj.prune(loss_fn, params, data, method="force", sparsity=0.5, steps=2, batch_size=32,
             key=jax.random.key(1))
    assert schedule._cache_size() == before + 1  # an equal Pruner: no second compile
    jax.clear_caches()
    assert schedule._cache_size() == 0


def test_works_on_any_pytree_with_a_path_predicate(tiny):
    loss_fn, params, data = tiny
    only_first = lambda path, leaf: leaf.ndim >= 2 and "w1" in jax.tree_util.keystr(path)  # noqa: E731
    mask, _ = fj.prune(loss_fn, params, data, method="snip", sparsity=0.5, batch_size=64,
                       key=jax.random.key(0), is_prunable=only_first)
    assert mask["w2"].shape == () and int(fj.num_kept(mask)) == 1024


def test_collapse_is_reported(tiny):
    loss_fn, params, data = tiny
    params = {**params, "w2": params["w2"] * 1e-4}  # magnitude pruning will empty w2
    with pytest.warns(UserWarning, match="layer collapse.*w2"):
        fj.prune(loss_fn, params, data, method="magnitude", sparsity=0.5, key=jax.random.key(0))
    with pytest.raises(ValueError, match="layer collapse"):
        fj.prune(loss_fn, params, data, method="magnitude", sparsity=0.5, key=jax.random.key(0),
                 on_collapse="raise")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sparsity=1.0), "sparsity must be in"),
        (dict(sparsity=-0.1), "sparsity must be in"),
        (dict(sparsity=0.9, steps=0), "steps must be"),
        (dict(sparsity=0.9999), "keep count below 1"),
        (dict(sparsity=0.9, method="prune_everything"), "unknown method"),
        (dict(sparsity=0.9, schedule="cosine"), "unknown schedule"),
        (dict(sparsity=0.9, method="snip", steps=5), "one shot"),
        (dict(sparsity=0.9, batch_size=200, batches_per_step=2), "fewer than batch_size"),
        (dict(sparsity=0.9, method="synflow"), "needs synflow_fn"),
    ],
)
def test_bad_input_is_rejected(tiny, kwargs, message):
    loss_fn, params, data = tiny
    kwargs = dict(method="force", batch_size=64, key=jax.random.key(0)) | kwargs
    with pytest.raises(ValueError, match=message):
        fj.prune(loss_fn, params, data, **kwargs)


@pytest.mark.parametrize("sparsity, shown", [("0.9", "str '0.9'"),
                                               (np.array([0.9]), r"ndarray of shape \(1,\)")])
def test_sparsity_that_is_not_a_number_is_a_type_error(tiny, sparsity, shown):
    loss_fn, params, data = tiny
    with pytest.raises(TypeError, match="sparsity must be a float.*got " + shown):
        fj.prune(loss_fn, params, data, method="snip", sparsity=sparsity, batch_size=64,
                 key=jax.random.key(0))


def test_nan_scores_name_the_step(tiny):
    loss_fn, params, data = tiny

    def breaks_when_sparse(p, batch):
        # The gradient turns NaN once fewer than half of the weights are kept; the
        # keep fractions are 0.56, 0.32, 0.18, 0.1, so step 3 scores at 32 % kept.
        alive = (jnp.sum(p["w1"] != 0) + jnp.sum(p["w2"] != 0)) / 2368
        return loss_fn(p, batch) + jnp.sum(p["w1"]) * jnp.sqrt(alive - 0.5)

    with pytest.raises(ValueError, match="NaN or inf at step 3"):
        fj.prune(breaks_when_sparse, params, data, method="force", sparsity=0.9, steps=4,
                 batch_size=64, key=jax.random.key(0))


def test_mask_structure_mismatch_is_named(tiny):
    _, params, _ = tiny
    mask = fj.init_mask(params)
    with pytest.raises(ValueError, match="only in params \\['b2'\\]"):
        fj.check_mask(params, {k: v for k, v in mask.items() if k != "b2"})
    with pytest.raises(ValueError, match="mask leaf w1 has shape"):
        fj.check_mask(params, {**mask, "w1": jnp.ones((3, 3), bool)})


def test_apply_mask_refuses_a_mask_that_would_broadcast(tiny):
    _, params, _ = tiny
    params = {**params, "w1": jnp.ones((64, 32))}
    mask = {**fj.init_mask(params), "w1": jnp.zeros((1, 32), bool)}
    # jnp.where would broadcast this (1, 32) row and zero all 2,048 weights of w1.
    with pytest.raises(ValueError, match=r"mask leaf w1 has shape \(1, 32\), params leaf has "
                                         r"shape \(64, 32\)"):
        fj.apply_mask(params, mask)
    with pytest.raises(ValueError, match="mask leaf w1"):  # at trace time, under jit too
        jax.jit(fj.apply_mask)(params, mask)
    traced = jax.jit(fj.apply_mask).trace(params, fj.init_mask(params))
    assert "where" in str(traced.jaxpr) and "assert" not in str(traced.jaxpr)  # no runtime check


@pytest.mark.parametrize("key", [0, None, np.int32(3)])
def test_a_key_that_is_not_a_prng_key_says_how_to_make_one(tiny, key):
    loss_fn, params, data = tiny
    with pytest.raises(TypeError, match=r"key must be a PRNG key, e.g. jax.random.key\(seed\); "
                                        r"got (int|NoneType|int32\[\])"):
        fj.prune(loss_fn, params, data, method="snip", sparsity=0.9, batch_size=64, key=key)
    legacy = jax.random.PRNGKey(0)  # the raw uint32[2] form still works
    mask, _ = fj.prune(loss_fn, params, data, method="snip", sparsity=0.9, batch_size=64,
                       key=legacy)
    assert int(fj.num_kept(mask)) == int(0.1 * (64 * 32 + 32 * 10))


def test_prune_inside_a_users_jit_points_to_the_composable_schedule(tiny):
    loss_fn, params, data = tiny

    @jax.jit
    def inside(p):
        return fj.prune(loss_fn, p, data, method="snip", sparsity=0.9, batch_size=64,
                        key=jax.random.key(0))

    with pytest.raises(TypeError, match=r"Compose fj.program.schedule there instead"):
        inside(params)


def _int_leaf_problem():
    k = jax.random.split(jax.random.key(0), 3)
    params = {"w1": jax.random.normal(k[0], (8, 16)), "w2": jax.random.normal(k[1], (16, 4)),
              "table": jnp.arange(12, dtype=jnp.int32).reshape(4, 3)}

    def loss_fn(p, b):
        h = jnp.tanh(b["x"] @ p["w1"]) @ p["w2"] + p["table"][0, 1].astype(jnp.float32)
        return jnp.mean((h - b["y"]) ** 2)

    return loss_fn, params, {"x": jax.random.normal(k[2], (64, 8)), "y": jnp.zeros((64, 4))}


@pytest.mark.parametrize("method", ["force", "snip", "magnitude", *(
    pytest.param(m, marks=pytest.mark.slow) for m in ("iter_snip", "grasp"))])
def test_an_integer_leaf_is_no_weight_and_every_method_prunes_around_it(method):
    loss_fn, params, data = _int_leaf_problem()
    steps = 3 if method in ("force", "iter_snip") else 1
    mask, history = fj.prune(loss_fn, params, data, method=method, sparsity=0.5, steps=steps,
                             batch_size=32, key=jax.random.key(1))
    assert mask["table"].shape == () and bool(mask["table"])  # never prunable by default
    assert int(mask["w1"].sum() + mask["w2"].sum()) == 96 and history.layer_kept.shape[1] == 2


@pytest.mark.parametrize("loss", ["constant", "ignores_params"])
def test_a_loss_without_gradient_is_refused_naming_it(loss):
    _, params, data = _int_leaf_problem()

    def constant(p, b):
        return jnp.float32(1.0)

    def ignores_params(p, b):
        return jnp.mean(b["x"] ** 2)

    loss_fn = {"constant": constant, "ignores_params": ignores_params}[loss]
    with pytest.raises(ValueError, match=f"all zero at step 1: the loss \\({loss}\\) has no "
                                         "gradient"):
        fj.prune(loss_fn, params, data, method="force", sparsity=0.5, steps=3, batch_size=32,
                 key=jax.random.key(1))
