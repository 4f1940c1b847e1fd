"""NTK-SAP: its scores against a PyTorch twin written from the official code's equations
(YiteWang/NTK-SAP, `Pruners/pruners.py`), its probe, and its schedule.

The twin is a VGG-11 x1/8 with BatchNorm. For each sample it takes the same fresh weights,
perturbation and noise as force_jax (`NtkSapScore.draws`), calibrates BatchNorm as the
official code does (running statistics reset, momentum 1, one train-mode pass on the noise
without gradient), then runs the unperturbed and the perturbed network in eval mode with those
statistics and differentiates sum ||f - f'||^2 with respect to a mask shared by both.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from torch_twins import copy_vgg_params, images_to_torch, to_flax_layout, torch_vgg11

import force_jax as fj
from force_jax.core import masks as masks_lib
from force_jax.core import methods, ntk_sap, program

pytestmark = pytest.mark.xdist_group("fidelity")

SHAPE = (16, 16, 3)


@pytest.fixture(scope="module")
def problem():
    """VGG-11 x1/8 at initialisation and a 50 % mask (NTK-SAP scores from a given mask)."""
    model = fj.models.VGG(depth=11, num_classes=10, width_multiplier=0.125)
    variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, *SHAPE)), train=False))(
        jax.random.key(5))
    leaves, treedef = jax.tree.flatten(variables["params"])
    keys = jax.random.split(jax.random.key(6), len(leaves))
    mask = treedef.unflatten([jax.random.uniform(k, p.shape) < 0.5 if p.ndim >= 2
                              else jnp.ones((), bool) for k, p in zip(keys, leaves)])
    return model, variables, mask


def twin_mask_gradient(problem, score: ntk_sap.NtkSapScore, key):
    """sum over samples of d/dc sum ||f(x; c w) - f(x; c (w + delta))||^2, in PyTorch."""
    torch = pytest.importorskip("torch")
    from torch.func import functional_call

    model, variables, mask = problem
    probe = fj.network_probe(model, variables, SHAPE)
    net = torch_vgg11(0.125)
    names = copy_vgg_params(net, variables["params"])
    flax_names = [fj.masks.path_name(p) for p, _ in
                  jax.tree_util.tree_flatten_with_path(variables["params"])[0]]
    kernels = [n for n in names if names[n].endswith("kernel")]
    masks_by_name = {fj.masks.path_name(p): np.asarray(m) for p, m in
                     jax.tree_util.tree_flatten_with_path(mask)[0]}
    c = {n: torch.from_numpy(np.ascontiguousarray(
        np.moveaxis(masks_by_name[names[n]], -1, 0) if masks_by_name[names[n]].ndim == 2
        else masks_by_name[names[n]].transpose(3, 2, 0, 1)).astype(np.float32)).requires_grad_()
        for n in kernels}
    total = {n: torch.zeros_like(c[n]) for n in kernels}
    for r in range(score.samples):
        drawn, deltas, noise = score.draws(probe, variables["params"], mask,
                                           jax.random.fold_in(key, r))
        by_flax = dict(zip(flax_names, drawn))
        delta_by_flax = dict(zip(flax_names, deltas))

        def torch_weight(n, tree, by=by_flax):
            a = np.array(tree[names[n]])
            return torch.from_numpy(np.ascontiguousarray(
                a.transpose(3, 2, 0, 1) if a.ndim == 4 else (a.T if a.ndim == 2 else a)))

        w = {n: torch_weight(n, by_flax) for n in names}
        d = {n: torch_weight(n, delta_by_flax) for n in kernels}
        x = images_to_torch(noise)
        orig = {n: w[n] * c[n] if n in c else w[n] for n in names}
        pert = {n: (w[n] + d[n]) * c[n] if n in c else w[n] for n in names}
        # Calibration of the masked network: statistics reset, momentum 1, a train-mode pass
        # without gradient.
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = 1.0
        net.train()
        with torch.no_grad():
            functional_call(net, {**orig, **dict(net.named_buffers())}, (x,))
        net.eval()
        buffers = dict(net.named_buffers())
        y = functional_call(net, {**orig, **buffers}, (x,))
        y2 = functional_call(net, {**pert, **buffers}, (x,))
        gap = ((y - y2) ** 2).sum()
        grads = torch.autograd.grad(gap, [c[n] for n in kernels])
        for n, g in zip(kernels, grads):
            total[n] += g
    return {names[n]: to_flax_layout(total[n].numpy()) for n in kernels}


def test_mask_gradients_match_a_pytorch_twin_of_the_official_equations(problem):
    model, variables, mask = problem
    score = ntk_sap.NtkSapScore(samples=2, noise_batch=20)
    probe = fj.network_probe(model, variables, SHAPE)
    key = jax.random.key(11)
    ours = jax.jit(lambda p, m, k: score.mask_gradient(probe, p, m, k))(
        variables["params"], mask, key)
    names = [fj.masks.path_name(p) for p, m in jax.tree_util.tree_flatten_with_path(mask)[0]
             if masks_lib.is_prunable_leaf(m)]
    twin = twin_mask_gradient(problem, score, key)
    a = np.concatenate([np.asarray(g).ravel() for g in ours])
    b = np.concatenate([twin[n].ravel() for n in names])
    scale = np.max(np.abs(b))
    assert scale > 0
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-3 * scale)
    # One step's selection from the mask: the top kept scores, as the official threshold does.
    kept = np.concatenate([np.asarray(m).ravel() for p, m in
                           jax.tree_util.tree_flatten_with_path(mask)[0]
                           if masks_lib.is_prunable_leaf(m)])
    k = int(0.1 * a.size)
    top = lambda s: set(np.argsort(-np.where(kept, np.abs(s), -1), kind="stable")[:k])  # noqa: E731
    assert len(top(a) & top(b)) / len(top(a) | top(b)) >= 0.99


def test_the_probe_holds_batch_norm_fixed_at_the_unperturbed_statistics(problem):
    model, variables, _ = problem
    probe = fj.network_probe(model, variables, SHAPE)
    noise = jax.random.normal(jax.random.key(0), (8, *SHAPE))
    params = variables["params"]
    assert float(probe.gap(params, params, noise)) == 0.0
    # Scaling every kernel by 2 changes nothing under batch statistics; with the statistics
    # of the unperturbed network held fixed it changes the output.
    doubled = jax.tree.map(lambda p: 2 * p if p.ndim >= 2 else p, params)
    assert float(probe.gap(params, doubled, noise)) > 1.0
    assert probe.layer_order[:2] == ("conv_0/kernel", "bn_0/bias")
    assert probe.layer_order[-2:] == ("classifier/bias", "classifier/kernel")


@pytest.mark.slow
def test_prune_is_exact_and_pruned_weights_never_return(problem):
    model, variables, _ = problem
    probe = fj.network_probe(model, variables, SHAPE)
    method = methods.get("ntk_sap", samples=1, noise_batch=8)
    mask, history = fj.prune(None, variables["params"], method=method, sparsity=0.9, steps=3,
                             key=jax.random.key(2), probe=probe)
    assert history.kept.tolist() == program.schedule_counts(
        variables["params"], sparsity=0.9, steps=3).tolist()
    assert int(fj.num_kept(mask)) == history.kept[-1]
    assert history.revived.tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="needs a probe of the network"):
        fj.prune(None, variables["params"], method=method, sparsity=0.9, steps=3,
                 key=jax.random.key(2))


@pytest.mark.parametrize("options, message", [
    ({"epsilon": 0.0}, "epsilon=0.0"),
    ({"samples": 0}, "samples=0"),
    ({"noise_batch": 0}, "noise_batch=0"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(ValueError, match=message):
        methods.get("ntk_sap", **options)
