import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax.training import train_state

from force_jax import optim
from force_jax.core.masks import apply_mask


def make_problem(seed=0, keep=0.3):
    """Small MLP params (two kernels, two biases) and a random mask of the kernels."""
    keys = jax.random.split(jax.random.key(seed), 4)
    params = {
        "w1": jax.random.normal(keys[0], (8, 16)),
        "b1": jax.random.normal(keys[1], (16,)),
        "w2": jax.random.normal(keys[2], (16, 4)),
        "b2": jnp.zeros((4,)),
    }
    mask = {
        "w1": jax.random.uniform(keys[3], (8, 16)) < keep,
        "b1": jnp.ones((), bool),
        "w2": jax.random.uniform(jax.random.fold_in(keys[3], 1), (16, 4)) < keep,
        "b2": jnp.ones((), bool),
    }
    return apply_mask(params, mask), mask


def loss_fn(params, x):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return jnp.mean((h @ params["w2"] + params["b2"]) ** 2)


def noisy_grad(params, key):
    """True gradient plus noise that is dense, pruned entries included."""
    x = jax.random.normal(key, (32, 8))
    grads = jax.grad(loss_fn)(params, x)
    noise_keys = jax.random.split(jax.random.fold_in(key, 7), 4)
    leaves, treedef = jax.tree.flatten(grads)
    return treedef.unflatten(
        [g + jax.random.normal(k, g.shape) for g, k in zip(leaves, noise_keys)]
    )


def make_step(tx):
    @jax.jit
    def step(params, opt_state, key):
        updates, opt_state = tx.update(noisy_grad(params, key), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return step


def trace_buffers(opt_state):
    found = [
        s
        for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, optax.TraceState))
        if isinstance(s, optax.TraceState)
    ]
    assert len(found) == 1
    return found[0].trace


@pytest.mark.parametrize("nesterov", [False, True])
def test_pruned_weights_stay_exactly_zero(nesterov):
    params0, mask = make_problem()
    tx = optim.sgd_with_mask(
        mask=mask, learning_rate=0.05, momentum=0.9, weight_decay=5e-4, nesterov=nesterov
    )
    step = make_step(tx)
    params, opt_state = params0, tx.init(params0)
    for i in range(200):
        params, opt_state = step(params, opt_state, jax.random.key(i))
    assert step._cache_size() == 1
    buffers = trace_buffers(opt_state)
    for name in ("w1", "w2"):
        m = np.asarray(mask[name])
        p = np.asarray(params[name])
        assert np.all(p[~m] == 0.0)
        assert np.all(np.asarray(buffers[name])[~m] == 0.0)
        assert np.all(p[m] != np.asarray(params0[name])[m])
    for name in ("b1", "b2"):  # non-prunable leaves train normally
        assert not np.array_equal(params[name], params0[name])


def test_masked_updates_with_decoupled_weight_decay():
    params0, mask = make_problem(seed=1)
    tx = optim.masked_updates(optax.adamw(1e-2, weight_decay=0.1), mask)
    step = make_step(tx)
    params, opt_state = params0, tx.init(params0)
    for i in range(50):
        params, opt_state = step(params, opt_state, jax.random.key(i))
    for name in ("w1", "w2"):
        m = np.asarray(mask[name])
        assert np.all(np.asarray(params[name])[~m] == 0.0)
        assert np.all(np.asarray(params[name])[m] != np.asarray(params0[name])[m])


def torch_sgd_reference(params, grads_seq, mask, lrs, momentum, weight_decay, nesterov):
    """numpy float64 loop of torch.optim.SGD (dampening 0) on masked gradients."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    buf = {k: np.zeros_like(v) for k, v in p.items()}
    for grads, lr in zip(grads_seq, lrs):
        for k in p:
            g = np.where(np.asarray(mask[k]), np.asarray(grads[k], np.float64), 0.0)
            g = g + weight_decay * p[k]
            buf[k] = momentum * buf[k] + g
            d = g + momentum * buf[k] if nesterov else buf[k]
            p[k] = p[k] - lr * d
    return p


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("scheduled", [False, True])
def test_matches_torch_sgd_reference(nesterov, scheduled):
    params0, mask = make_problem(seed=2, keep=0.5)
    schedule = optim.piecewise_constant_schedule(
        base_lr=0.1, boundaries_epochs=(1, 1.5), factor=0.1, steps_per_epoch=8
    )
    learning_rate = schedule if scheduled else 0.1
    lrs = [float(schedule(t)) if scheduled else 0.1 for t in range(20)]
    tx = optim.sgd_with_mask(
        mask=mask, learning_rate=learning_rate, momentum=0.9, weight_decay=5e-2, nesterov=nesterov
    )
    grads_seq = [
        jax.tree.map(lambda p, i=i: jax.random.normal(jax.random.key(i), p.shape), params0)
        for i in range(20)
    ]
    update = jax.jit(tx.update)
    params, opt_state = params0, tx.init(params0)
    for grads in grads_seq:
        updates, opt_state = update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    assert update._cache_size() == 1
    expected = torch_sgd_reference(params0, grads_seq, mask, lrs, 0.9, 5e-2, nesterov)
    for k in params:
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-5, atol=1e-5)


def test_mask_recoverable_from_state_after_jit():
    params0, mask = make_problem(seed=3)
    tx = optim.sgd_with_mask(mask=mask, learning_rate=optax.constant_schedule(0.1))
    opt_state = tx.init(params0)
    update = jax.jit(tx.update)
    params = params0
    for i in range(3):
        grads = jax.tree.map(lambda p, i=i: jax.random.normal(jax.random.key(i), p.shape), params)
        updates, opt_state = update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    assert update._cache_size() == 1
    recovered = optim.mask_from_state(opt_state)
    assert jax.tree.structure(recovered) == jax.tree.structure(mask)
    for got, want in zip(jax.tree.leaves(recovered), jax.tree.leaves(mask)):
        assert got.dtype == jnp.bool_
        np.testing.assert_array_equal(got, want)


def test_state_can_be_donated():
    # One scalar True object shared by every non-prunable leaf (as masks.topk_mask
    # builds them), and the mask copied into the state: the state must still
    # hold distinct buffers, or donating it fails with "donate the same buffer twice".
    params0, mask = make_problem(seed=4)
    shared_true = jnp.ones((), bool)
    mask = dict(mask, b1=shared_true, b2=shared_true)
    tx = optim.sgd_with_mask(mask=mask, learning_rate=0.1)

    @jax.jit
    def step(params, opt_state, key):
        updates, opt_state = tx.update(noisy_grad(params, key), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    donating = jax.jit(step, donate_argnums=(0, 1))
    params, opt_state = params0, tx.init(params0)
    for i in range(3):
        params, opt_state = donating(params, opt_state, jax.random.key(i))
    assert donating._cache_size() == 1
    np.testing.assert_array_equal(optim.mask_from_state(opt_state)["w1"], mask["w1"])


def test_mask_from_state_without_mask_raises():
    params0, _ = make_problem()
    with pytest.raises(ValueError, match="MaskedUpdatesState"):
        optim.mask_from_state(optax.sgd(0.1).init(params0))


def test_masked_updates_rejects_mismatched_mask():
    params0, mask = make_problem()
    del mask["b2"]
    with pytest.raises(ValueError, match="tree structures"):
        optim.masked_updates(optax.sgd(0.1), mask).init(params0)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_any_inner_optimizer_keeps_pruned_weights_exactly_zero(name):
    """sgd with momentum and weight decay, adamw, lamb: 300 steps of dense noisy gradients."""
    params0, mask = make_problem(seed=5)
    inner = optim.make_optimizer(name, learning_rate=optax.cosine_decay_schedule(0.05, 300),
                                 momentum=0.9, weight_decay=0.05)
    tx = optim.masked_updates(inner, mask)
    step = make_step(tx)
    params, opt_state = params0, tx.init(params0)
    for i in range(300):
        params, opt_state = step(params, opt_state, jax.random.key(i))
    assert step._cache_size() == 1
    assert isinstance(opt_state, optim.MaskedUpdatesState)
    for name_ in ("w1", "w2"):
        m = np.asarray(mask[name_])
        assert np.all(np.asarray(params[name_])[~m] == 0.0)
        assert np.all(np.asarray(params[name_])[m] != np.asarray(params0[name_])[m])
        # The inner optimizer's statistics of pruned weights stay zero too.
        for leaf in jax.tree.leaves(opt_state.inner_state):
            if getattr(leaf, "shape", None) == m.shape:
                assert np.all(np.asarray(leaf)[~m] == 0.0)


def test_masked_sgd_equals_the_unmasked_optimizer_on_kept_weights_when_all_are_kept():
    params0, mask = make_problem(seed=6, keep=1.1)  # every weight kept
    masked = optim.sgd_with_mask(mask=mask, learning_rate=0.05, weight_decay=5e-4)
    plain = optim.sgd(learning_rate=0.05, weight_decay=5e-4)
    a = b = params0
    sa, sb = masked.init(a), plain.init(b)
    for i in range(5):
        grads = noisy_grad(a, jax.random.key(i))
        ua, sa = masked.update(grads, sa, a)
        ub, sb = plain.update(grads, sb, b)
        a, b = optax.apply_updates(a, ua), optax.apply_updates(b, ub)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_make_optimizer_rejects_unknown_names():
    with pytest.raises(ValueError, match="sgd, adamw, lamb"):
        optim.make_optimizer("adagrad", learning_rate=0.1)


def test_invalid_hyperparameters():
    params0, mask = make_problem()
    with pytest.raises(ValueError, match="nesterov"):
        optim.sgd_with_mask(mask=mask, learning_rate=0.1, momentum=0.0, nesterov=True)
    with pytest.raises(ValueError, match=">= 0"):
        optim.sgd_with_mask(mask=mask, learning_rate=0.1, weight_decay=-1.0)


class TinyMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.relu(nn.Dense(16)(x)))


def test_flax_train_state():
    model = TinyMLP()
    x = jax.random.normal(jax.random.key(0), (8, 5))
    variables = model.init(jax.random.key(1), x)
    mask = jax.tree.map(
        lambda p: (
            (jnp.arange(p.size).reshape(p.shape) % 3 == 0) if p.ndim >= 2 else jnp.ones((), bool)
        ),
        variables["params"],
    )
    params = apply_mask(variables["params"], mask)
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=params, tx=optim.sgd_with_mask(mask=mask, learning_rate=0.1)
    )

    @jax.jit
    def train_step(state):
        grads = jax.grad(lambda p: jnp.mean(state.apply_fn({"params": p}, x) ** 2))(state.params)
        return state.apply_gradients(grads=grads)

    # TrainState.create sets step to the Python int 0, which jit keys apart from
    # the int32 array every later step holds: make it an array up front.
    state = state.replace(step=jnp.zeros((), jnp.int32))
    for _ in range(5):
        state = train_step(state)
    assert int(state.step) == 5
    assert train_step._cache_size() == 1
    for p, m in zip(jax.tree.leaves(state.params), jax.tree.leaves(mask)):
        assert np.all(np.asarray(p)[~np.broadcast_to(np.asarray(m), p.shape)] == 0.0)
    recovered = optim.mask_from_state(state.opt_state)
    for got, want in zip(jax.tree.leaves(recovered), jax.tree.leaves(mask)):
        np.testing.assert_array_equal(got, want)


def test_piecewise_constant_paper_boundaries():
    schedule = optim.piecewise_constant_schedule(
        base_lr=0.1, boundaries_epochs=(150, 250), factor=0.1, steps_per_epoch=10
    )
    expected = {0: 0.1, 1499: 0.1, 1500: 0.01, 2499: 0.01, 2500: 0.001, 3499: 0.001}
    for step, lr in expected.items():
        np.testing.assert_allclose(schedule(step), lr, rtol=1e-6)
        np.testing.assert_allclose(jax.jit(schedule)(jnp.asarray(step)), lr, rtol=1e-6)


def test_piecewise_constant_imagenet_boundaries():
    schedule = optim.piecewise_constant_schedule(
        base_lr=0.1, boundaries_epochs=(30, 60, 80), factor=0.1, steps_per_epoch=5
    )
    values = [float(schedule(s)) for s in (149, 150, 299, 300, 399, 400, 449)]
    np.testing.assert_allclose(values, [0.1, 0.01, 0.01, 1e-3, 1e-3, 1e-4, 1e-4], rtol=1e-6)


def test_cosine_endpoints_and_midpoint():
    schedule = optim.cosine_schedule(base_lr=0.4, total_steps=1000)
    np.testing.assert_allclose(schedule(0), 0.4, rtol=1e-6)
    np.testing.assert_allclose(schedule(500), 0.2, rtol=1e-5)
    np.testing.assert_allclose(schedule(1000), 0.0, atol=1e-7)


def test_cosine_warmup():
    schedule = optim.cosine_schedule(base_lr=0.4, total_steps=1100, warmup_steps=100)
    np.testing.assert_allclose(schedule(0), 0.0, atol=1e-7)
    np.testing.assert_allclose(schedule(50), 0.2, rtol=1e-5)
    np.testing.assert_allclose(schedule(100), 0.4, rtol=1e-6)
    np.testing.assert_allclose(schedule(600), 0.2, rtol=1e-5)
    np.testing.assert_allclose(schedule(1100), 0.0, atol=1e-7)
    with pytest.raises(ValueError, match="warmup_steps"):
        optim.cosine_schedule(base_lr=0.1, total_steps=10, warmup_steps=10)


@pytest.mark.parametrize("as_config_dict", [False, True])
def test_make_schedule(as_config_dict):
    wrap = ml_collections.ConfigDict if as_config_dict else dict
    step = optim.make_schedule(
        wrap({"name": "step", "base_lr": 0.1, "boundaries": (150, 250), "factor": 0.1}),
        total_steps=3500, steps_per_epoch=10,
    )
    np.testing.assert_allclose([step(1499), step(1500)], [0.1, 0.01], rtol=1e-6)
    cosine = optim.make_schedule(
        wrap({"name": "cosine", "base_lr": 0.1, "warmup_epochs": 5}),
        total_steps=900, steps_per_epoch=10,
    )
    np.testing.assert_allclose([cosine(0), cosine(50), cosine(900)], [0.0, 0.1, 0.0], atol=1e-7)


def test_make_schedule_errors():
    with pytest.raises(ValueError, match="'linear_warm'"):
        optim.make_schedule({"name": "linear_warm", "base_lr": 0.1}, total_steps=10,
                            steps_per_epoch=10)
    with pytest.raises(ValueError, match="warmup_epochs"):
        optim.make_schedule(
            {"name": "step", "base_lr": 0.1, "boundaries": (1,), "warmup_epochs": 1},
            total_steps=10, steps_per_epoch=10,
        )


@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_momentum_is_adams_b1(name):
    """train.momentum is not ignored by Adam-type optimizers: it sets b1."""
    params0, _ = make_problem(seed=7)

    def two_steps(tx):  # different gradients: with a constant one, Adam's step ignores b1
        state, params = tx.init(params0), params0
        for i in range(2):
            updates, state = tx.update(noisy_grad(params0, jax.random.key(i)), state, params)
            params = optax.apply_updates(params, updates)
        return params

    ours = two_steps(optim.make_optimizer(name, learning_rate=0.01, momentum=0.5,
                                          weight_decay=0.01))
    ref_fn = optax.adamw if name == "adamw" else optax.lamb
    ref = two_steps(ref_fn(0.01, b1=0.5, eps=1e-8, weight_decay=0.01))
    default = two_steps(optim.make_optimizer(name, learning_rate=0.01, weight_decay=0.01))
    for k in ours:
        np.testing.assert_allclose(ours[k], ref[k], rtol=1e-6)
    assert any(not np.allclose(ours[k], default[k]) for k in ours)


def test_adam_hyperparameters_are_checked():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        optim.make_optimizer("adamw", learning_rate=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="lamb has no Nesterov"):
        optim.make_optimizer("lamb", learning_rate=0.1, nesterov=True)
    optim.make_optimizer("adamw", learning_rate=0.1, nesterov=True)
