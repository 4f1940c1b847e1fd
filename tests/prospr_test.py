"""ProsPr: its meta-gradient scores against a PyTorch twin written from the official code's
equations (mil-ad/prospr, `prospr/prospr.py`), and its options.

The twin is a VGG-11 x1/8 with BatchNorm (batch statistics) and the weights of force_jax's
network copied in. It multiplies the conv and linear weights by a mask of ones once, takes M
steps of SGD on every parameter with `torch.autograd.grad` (create_graph for the full
meta-gradient), and differentiates the loss after them with respect to the mask.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from torch_twins import copy_vgg_params, images_to_torch, to_flax_layout, torch_vgg11

import force_jax as fj
from force_jax.core import masks as masks_lib
from force_jax.core import methods, program, prospr, scores

pytestmark = pytest.mark.xdist_group("fidelity")

BATCH = 16


@pytest.fixture(scope="module")
def problem():
    """VGG-11 x1/8 on 4 micro-batches of random 16x16 images."""
    model = fj.models.VGG(depth=11, num_classes=10, width_multiplier=0.125)
    kx, ky, kp = jax.random.split(jax.random.key(3), 3)
    batches = {"image": jax.random.normal(kx, (4, BATCH, 16, 16, 3)),
               "label": jax.random.randint(ky, (4, BATCH), 0, 10)}
    variables = jax.jit(lambda k, x: model.init(k, x, train=False))(kp, batches["image"][0, :2])
    return model, variables, batches


_computed: dict = {}


def our_scores(problem, score: prospr.ProsPrScore):
    """force_jax's ProsPr scores by layer name (computed once per options)."""
    if score not in _computed:
        _computed[score] = _our_scores(problem, score)
    return _computed[score]


def _our_scores(problem, score: prospr.ProsPrScore):
    model, variables, batches = problem
    loss = fj.classification_loss(model, variables, loss="cross_entropy")

    @jax.jit
    def run(params, batches):
        inputs = scores.StepInputs(
            params, fj.init_mask(params), None, None, None, jax.random.key(0), loss=loss,
            batch=lambda i: jax.tree.map(lambda x: x[i], batches))
        return score(inputs)[0]

    out = run(variables["params"], batches)
    return {fj.masks.path_name(path): np.asarray(s) for path, s in
            jax.tree_util.tree_flatten_with_path(out)[0] if np.ndim(s) >= 2}


def twin_scores(problem, score: prospr.ProsPrScore):
    """The official equations in PyTorch: |d L(theta_M) / d mask| at a mask of ones."""
    torch = pytest.importorskip("torch")
    from torch.func import functional_call

    model, variables, batches = problem
    net = torch_vgg11(0.125).train()
    names = copy_vgg_params(net, variables["params"])
    weights = {n: p.detach() for n, p in net.named_parameters()}
    masked = [n for n in weights if names[n].endswith("kernel")]
    mask = {n: torch.ones_like(weights[n], requires_grad=True) for n in masked}
    theta = {n: weights[n] * mask[n] if n in mask else weights[n].clone().requires_grad_()
             for n in weights}
    buffers = {n: b.clone() for n, b in net.named_buffers()}
    xs = images_to_torch(np.asarray(batches["image"]).reshape(-1, 16, 16, 3)).reshape(
        4, BATCH, 3, 16, 16)
    ys = torch.from_numpy(np.asarray(batches["label"]).astype(np.int64))

    def loss(params, k):
        out = functional_call(net, (params, buffers), (xs[k],))
        return torch.nn.functional.cross_entropy(out, ys[k])

    velocity = None
    for k in range(score.inner_steps):
        current = loss(theta, k if score.new_data else 0)
        grads = torch.autograd.grad(current, list(theta.values()),
                                    create_graph=not score.first_order)
        if velocity is None or score.inner_momentum == 0:
            velocity = list(grads)
        else:
            velocity = [score.inner_momentum * v + g for v, g in zip(velocity, grads)]
        theta = {n: t - score.inner_lr * v for (n, t), v in zip(theta.items(), velocity)}
    meta = loss(theta, score.inner_steps if score.new_data else 0)
    if score.first_order:
        grads = torch.autograd.grad(meta, [theta[n] for n in masked])
        out = [(weights[n] * g).abs() for n, g in zip(masked, grads)]
    else:
        out = [g.abs() for g in torch.autograd.grad(meta, [mask[n] for n in masked])]
    return {names[n]: to_flax_layout(s.detach().numpy()) for n, s in zip(masked, out)}


def flat(scores_by_name):
    return np.concatenate([scores_by_name[n].ravel() for n in sorted(scores_by_name)])


@pytest.mark.parametrize("options", [
    {},  # the official defaults: 3 full steps, lr 0.1, no momentum, new data
    pytest.param({"first_order": True}, marks=pytest.mark.slow),
    pytest.param({"inner_momentum": 0.9, "inner_lr": 0.05, "new_data": False},
                 marks=pytest.mark.slow),  # the options' own path: full's above
], ids=["full", "first_order", "momentum_same_batch"])
def test_scores_match_a_pytorch_twin_of_the_official_equations(problem, options):
    score = prospr.ProsPrScore(**options)
    ours, twin = our_scores(problem, score), twin_scores(problem, score)
    assert ours.keys() == twin.keys()
    a, b = flat(ours), flat(twin)
    scale = np.max(np.abs(b))
    assert scale > 0
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-3 * scale)
    # The one-shot mask at 95 %: the top 5 % of each, as the official top-k keeps them.
    k = int(0.05 * a.size)
    top = lambda s: set(np.argsort(-s, kind="stable")[:k])  # noqa: E731
    assert len(top(a) & top(b)) / len(top(a) | top(b)) >= 0.99


def test_the_options_change_the_scores(problem):
    full = flat(our_scores(problem, prospr.ProsPrScore()))
    first = flat(our_scores(problem, prospr.ProsPrScore(first_order=True)))
    other = flat(our_scores(problem, prospr.ProsPrScore(inner_momentum=0.9, inner_lr=0.05,
                                                        new_data=False)))
    assert not np.allclose(full, first, rtol=1e-3)
    assert not np.allclose(full, other, rtol=1e-3)


def test_an_inner_step_of_vanishing_lr_is_snip(tiny):
    # With eta -> 0 the trajectory stays at theta_0: the score is SNIP's |theta * g|.
    loss, params, data = tiny
    batch = jax.tree.map(lambda x: x[:32], data)
    score = prospr.ProsPrScore(inner_steps=1, inner_lr=1e-12, new_data=False)
    got, _ = score(scores.StepInputs(params, fj.init_mask(params), None, None, None,
                                     jax.random.key(0), loss=loss, batch=lambda i: batch))
    snip = scores.saliency(params, jax.grad(loss)(params, batch))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(snip)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * float(np.max(b)))


def test_prune_keeps_the_exact_count_and_uses_its_micro_batches(tiny):
    loss, params, data = tiny
    mask, history = fj.prune(loss, params, data, method="prospr", sparsity=0.9, batch_size=32,
                             key=jax.random.key(1))
    n = masks_lib.num_prunable(mask)
    assert int(fj.num_kept(mask)) == int(history.kept[-1]) == int(0.1 * n)
    # ProsPr takes inner_steps + 1 micro-batches a step, one by one: another count is refused.
    with pytest.raises(ValueError, match="uses 4 micro-batches per step"):
        fj.prune(loss, params, data, method="prospr", sparsity=0.9, batch_size=32,
                 batches_per_step=2, key=jax.random.key(1))


@pytest.mark.slow  # program_test vmaps the shared schedule; this adds ProsPr's inner loop
def test_the_schedule_runs_under_vmap_over_keys(tiny):
    loss, params, data = tiny
    pruner = program.Pruner(methods.get("prospr", inner_steps=1), loss, batch_size=32,
                            batches_per_step=2)
    counts = program.schedule_counts(params, sparsity=0.9, steps=1)
    run = jax.jit(jax.vmap(lambda k: program.schedule(pruner, params, data, counts, k,
                                                      fj.init_mask(params))[0]))
    masks_out = run(jax.random.split(jax.random.key(0), 2))
    kept = [int(masks_lib.num_kept(jax.tree.map(lambda m, i=i: m[i] if jnp.ndim(m) else m,
                                                masks_out))) for i in range(2)]
    assert kept == [int(counts[-1])] * 2
    # The two keys draw other batches: other masks.
    first, second = (np.concatenate([np.asarray(m[i]).ravel() for m in jax.tree.leaves(masks_out)
                                     if np.ndim(m) > 1]) for i in range(2))
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("options, message", [
    ({"inner_lr": 0.0}, "inner_lr=0.0"),
    ({"inner_lr": -0.1}, "inner_lr=-0.1"),
    ({"inner_steps": 0}, "inner_steps=0"),
    ({"inner_momentum": 1.0}, "inner_momentum=1.0"),
    ({"inner_step": 3}, "has no option 'inner_step'"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(ValueError, match=message):
        methods.get("prospr", **options)


def test_options_on_a_method_without_them_are_refused():
    with pytest.raises(ValueError, match="'force' takes no options"):
        methods.get("force", inner_steps=3)
