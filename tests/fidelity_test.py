"""One FORCE or Iterative SNIP step of `prune`, from a given mask, selects what the paper's
equations select, computed independently: on a VGG with BatchNorm (batch statistics), with
the paper code's loss (nll_loss on raw logits) and with cross-entropy, against a reference
written here with plain JAX (lax convolutions, numpy selection) and, when torch is
installed, against a PyTorch twin of the network with the weights copied.

Progressive schedules amplify float rounding (see docs/fidelity.md), so whole schedules cannot be
compared across implementations; single steps from the same mask can, on a problem that lies
far from the kinks of its gradient (ReLU inputs near zero, pooling near-ties), where rounding
cannot switch a branch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from kink_margin import masked, vgg_kink_margin
from torch_twins import torch_vgg11

import force_jax as fj

pytestmark = pytest.mark.xdist_group("fidelity")  # one worker: the fixture is made once

SPARSITY_AFTER_STEP = 0.98  # one step from a 50 %-dense mask down to 2 %
# The problem's distance from the kinks of its gradient (tests/kink_margin.py), checked
# below: with a ReLU input or a pooling near-tie closer to its kink than this, float
# rounding alone (another CPU's kernels, a compiler option) can flip the branch and move
# scores by percents, which no selection test can tell from an error. 1e-5 is ten times
# the rounding of a ReLU input measured here (f32 against f64 on this network).
MIN_KINK_MARGIN = 1e-5


# Session scope: made once per worker, also when xdist runs another module in between.
@pytest.fixture(scope="session")
def problem():
    """VGG-11 (BatchNorm) at width 1/8, 32 random 16x16 images, a 50 % mask, kink-free."""
    model = fj.models.VGG(depth=11, num_classes=10, width_multiplier=0.125)
    kx, ky, kp, km = jax.random.split(jax.random.key(8), 4)
    batch = {"image": jax.random.normal(kx, (32, 16, 16, 3)),
             "label": jax.random.randint(ky, (32,), 0, 10)}
    variables = jax.jit(lambda k, x: model.init(k, x, train=False))(kp, batch["image"][:2])
    keys = jax.random.split(km, len(jax.tree.leaves(variables["params"])))
    leaves, treedef = jax.tree.flatten(variables["params"])
    start = treedef.unflatten([
        jax.random.uniform(k, p.shape) < 0.5 if p.ndim >= 2 else jnp.ones((), bool)
        for k, p in zip(keys, leaves)])
    margin = vgg_kink_margin(model, variables, masked(variables["params"], start),
                             batch["image"])
    assert margin >= MIN_KINK_MARGIN, f"the problem lies {margin:.1e} from a kink: reseed it"
    return model, variables, batch, start


def prunable(tree):
    """The prunable leaves (kernels) of a params-shaped tree, flattened and concatenated."""
    return np.concatenate([np.asarray(x).ravel() for x in jax.tree.leaves(tree)
                           if np.ndim(x) >= 2])


def paper_selection(scores: np.ndarray, mask: np.ndarray, method: str, k: int) -> np.ndarray:
    """The official code's selection: the k-th largest score by sort, keep every score >= it.

    Iterative SNIP first sets the scores of pruned weights to the global minimum.
    """
    scores = scores.copy()
    if method == "iter_snip":
        scores[~mask] = scores.min()
    threshold = np.sort(scores)[-k]
    return scores >= threshold


def step_of_prune(problem, method, loss):
    model, variables, batch, start = problem
    loss_fn = fj.classification_loss(model, variables, loss=loss)
    mask, history = fj.prune(loss_fn, variables["params"], batch, method=method,
                             sparsity=SPARSITY_AFTER_STEP, steps=1, batch_size=32,
                             key=jax.random.key(0), initial_mask=start)
    return prunable(mask), int(history.kept[0])


def jax_reference_scores(problem, loss):
    """|theta0 * dL/dw| at w = theta0 * m, with plain lax convs and the loss written out."""
    model, variables, batch, start = problem
    plain = fj.models.VGG(depth=11, num_classes=10, width_multiplier=0.125,
                          ops=fj.models.make_ops(forward_mode=True))
    labels = batch["label"]

    def objective(params):
        logits, _ = plain.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                batch["image"], train=True, mutable=["batch_stats"])
        true_logit = logits[jnp.arange(labels.shape[0]), labels]
        if loss == "nll_on_logits":
            return -jnp.mean(true_logit)
        return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - true_logit)

    params = variables["params"]
    masked = jax.tree.map(lambda p, m: p * m, params, start)
    grads = jax.jit(jax.grad(objective))(masked)
    return np.abs(prunable(params) * prunable(grads)), prunable(start)


def assert_same_selection(ours, reference, scores, k):
    """Equal, except where a score is within float rounding of the k-th largest."""
    assert ours.sum() == k
    threshold = np.sort(scores)[-k]
    differ = ours != reference
    assert np.all(np.abs(scores[differ] - threshold) <= 1e-4 * threshold), differ.sum()
    iou = (ours & reference).sum() / (ours | reference).sum()
    assert iou >= 0.99, iou


@pytest.mark.parametrize("method, loss", [
    ("force", "nll_on_logits"),
    pytest.param("force", "cross_entropy", marks=pytest.mark.slow),
    pytest.param("iter_snip", "nll_on_logits", marks=pytest.mark.slow),
    pytest.param("iter_snip", "cross_entropy", marks=pytest.mark.slow),
])
def test_one_step_selects_what_the_papers_equations_select(problem, method, loss):
    ours, k = step_of_prune(problem, method, loss)
    scores, start = jax_reference_scores(problem, loss)
    reference = paper_selection(scores, start, method, k)
    if method == "iter_snip":
        assert not np.any(ours & ~start)  # pruned weights never come back
        scores = np.where(start, scores, -np.inf)
    else:
        assert np.any(ours & ~start)  # FORCE revives weights pruned at the previous step
    assert_same_selection(ours, reference, scores, k)


@pytest.mark.parametrize("method", ["force", pytest.param("iter_snip", marks=pytest.mark.slow)])
def test_one_step_matches_a_pytorch_twin_with_copied_weights(problem, method):
    torch = pytest.importorskip("torch")
    model, variables, batch, start = problem
    params = variables["params"]
    net = torch_vgg11(0.125).train()
    convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
    kernels = [params[f"conv_{i}"]["kernel"] for i in range(len(convs))]
    conv_masks = [start[f"conv_{i}"]["kernel"] for i in range(len(convs))]
    linear = net[-1]
    with torch.no_grad():
        # Weights theta0 * m: Flax HWIO -> torch OIHW, Flax (in, out) -> torch (out, in).
        for conv, kernel, m in zip(convs, kernels, conv_masks):
            conv.weight.copy_(torch.from_numpy(np.asarray(kernel * m).transpose(3, 2, 0, 1)))
        dense = params["classifier"]
        linear.weight.copy_(torch.from_numpy(
            np.asarray(dense["kernel"] * start["classifier"]["kernel"]).T.copy()))
        linear.bias.copy_(torch.from_numpy(np.asarray(dense["bias"])))
    x = torch.from_numpy(np.asarray(batch["image"]).transpose(0, 3, 1, 2).copy())
    y = torch.from_numpy(np.asarray(batch["label"]).astype(np.int64))
    torch.nn.functional.nll_loss(net(x), y).backward()  # the official code's loss
    grads = [c.weight.grad.numpy().transpose(2, 3, 1, 0) for c in convs]
    grads.append(linear.weight.grad.numpy().T)
    thetas = [np.asarray(k) for k in kernels] + [np.asarray(params["classifier"]["kernel"])]
    # Flatten in force_jax's leaf order (alphabetical: classifier, conv_0, conv_1, ...).
    order = [len(convs)] + list(range(len(convs)))
    scores = np.concatenate([np.abs(thetas[i] * grads[i]).ravel() for i in order])
    ours, k = step_of_prune(problem, method, "nll_on_logits")
    reference = paper_selection(scores, prunable(start), method, k)
    if method == "iter_snip":
        scores = np.where(prunable(start), scores, -np.inf)
    assert_same_selection(ours, reference, scores, k)
