"""PHEW: its walks against a numpy twin written from the official code's equations
(ShreyasMalakarjunPatil/PHEW, `Prune/phew_utils.py`), fed the same uniform draws.

The twin builds the official probabilities in float64 (forward: a kernel's summed |w|
normalised over the output units of its input unit; backward: over the input units of its
output unit; then a tap of the kernel by |w|), walks forward and backward in turn from the
input channels and the output units in rotation, crosses a flatten at a uniform position,
and stops after the walk that reaches the count. force_jax keeps the first T weights the
walks reached; the official code keeps the last walk's excess too, so the twin's mask,
trimmed to its first T, must equal force_jax's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import force_jax as fj
from force_jax.core import masks as masks_lib
from force_jax.core import methods, phew, sanity


def inverse_cdf(probabilities: np.ndarray, u: float) -> int:
    """numpy.random.choice's draw for a uniform u: searchsorted on the normalised CDF."""
    cdf = np.cumsum(probabilities)
    cdf /= cdf[-1]
    return int(min(np.searchsorted(cdf, u, side="right"), len(probabilities) - 1))


def twin_first_visits(kernels: list[np.ndarray], count: int, key, walks_per_chunk: int):
    """The official walks in float64 on Flax-layout kernels; (layer, flat index) by first visit."""
    layers = [np.abs(k.astype(np.float64)).reshape(-1, k.shape[-2], k.shape[-1])
              for k in kernels]
    summed = [a.sum(axis=0) for a in layers]  # A[i, o]
    positions = [1] + [kernels[n].shape[-2] // kernels[n - 1].shape[-1]
                       if kernels[n - 1].ndim > 2 and kernels[n].ndim == 2 else 1
                       for n in range(1, len(kernels))]
    order, seen = [], set()
    chunk = 0
    while True:
        u = np.asarray(phew.walk_uniforms(key, chunk, len(layers), walks_per_chunk))
        for j in range(walks_per_chunk):
            pair = chunk * walks_per_chunk + j
            unit = pair % layers[0].shape[1]
            for n, (a, s) in enumerate(zip(layers, summed)):  # forward
                if positions[n] > 1:
                    position = min(int(u[0, n, 2, j] * positions[n]), positions[n] - 1)
                    unit = position * (a.shape[1] // positions[n]) + unit
                out = inverse_cdf(s[unit] / s[unit].sum(), u[0, n, 0, j])
                tap = inverse_cdf(a[:, unit, out] / s[unit, out], u[0, n, 1, j])
                visit = (n, np.ravel_multi_index((tap, unit, out), a.shape))
                if visit not in seen:
                    seen.add(visit)
                    order.append(visit)
                unit = out
            if len(order) >= count:
                return order[:count]
            unit = pair % layers[-1].shape[2]
            for n in reversed(range(len(layers))):  # backward
                a, s = layers[n], summed[n]
                inp = inverse_cdf(s[:, unit] / s[:, unit].sum(), u[1, n, 0, j])
                tap = inverse_cdf(a[:, inp, unit] / s[inp, unit], u[1, n, 1, j])
                visit = (n, np.ravel_multi_index((tap, inp, unit), a.shape))
                if visit not in seen:
                    seen.add(visit)
                    order.append(visit)
                unit = inp % (a.shape[1] // positions[n])
            if len(order) >= count:
                return order[:count]
        chunk += 1


@pytest.fixture(scope="module", params=["lenet5", "vgg11"])
def network(request):
    if request.param == "lenet5":  # a conv-to-dense flatten of 16 positions per channel
        model, shape = fj.models.get_model("lenet5", 10), (28, 28, 1)
    else:
        model, shape = fj.models.VGG(depth=11, num_classes=10, width_multiplier=0.125), (16, 16, 3)
    variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, *shape)), train=False))(
        jax.random.key(4))
    return model, variables, fj.network_probe(model, variables, shape)


def test_masks_equal_the_official_walks_under_shared_draws(network):
    model, variables, probe = network
    params = variables["params"]
    score = phew.PhewScore(walks_per_chunk=16)
    key = jax.random.key(9)
    count = int(0.02 * masks_lib.num_prunable(fj.init_mask(params)))
    layers = phew.chain(params, fj.init_mask(params), probe.layer_order)
    times = jax.jit(lambda p: score.first_visits(p, fj.init_mask(p), count, key,
                                                 probe.layer_order))(params)
    leaves = jax.tree.leaves(params)
    kernels = [np.asarray(leaves[layer.leaf]) for layer in layers]
    twin = twin_first_visits(kernels, count, key, 16)
    ours = []
    for n, t in enumerate(times):
        flat = np.asarray(t).ravel()
        ours += [(int(flat[i]), n, i) for i in np.flatnonzero(flat != np.iinfo(np.int32).max)]
    ours = [(n, i) for _, n, i in sorted(ours)][:count]
    assert ours == twin


@pytest.fixture(scope="module")
def lenet():
    model = fj.models.get_model("lenet5", 10)
    variables = model.init(jax.random.key(4), jnp.zeros((1, 28, 28, 1)), train=False)
    return model, variables, fj.network_probe(model, variables, (28, 28, 1))


def test_prune_keeps_exactly_the_first_weights_the_walks_reach(lenet):
    model, variables, probe = lenet
    params = variables["params"]
    mask, history = fj.prune(None, params, method="phew", sparsity=0.98, key=jax.random.key(1),
                             probe=probe)
    n = masks_lib.num_prunable(mask)
    assert int(fj.num_kept(mask)) == int(history.kept[-1]) == int(0.02 * n)
    # A kept weight lies on a walk from the input to the output, except the tail of the walk
    # cut at the count (LeNet-5's VALID convolutions have no tap that sees only padding).
    effective = fj.effective.effective_mask(model, variables, mask, probe.input_shape)
    assert int(fj.num_kept(effective)) >= int(fj.num_kept(mask)) - len(probe.layer_order)
    # Another key walks elsewhere.
    other, _ = fj.prune(None, params, method="phew", sparsity=0.98, key=jax.random.key(2),
                        probe=probe)
    assert int(fj.num_kept(jax.tree.map(lambda a, b: a & b, mask, other))) < int(0.9 * 0.02 * n)


def test_layerwise_counts_are_exact(lenet):
    model, variables, probe = lenet
    params = variables["params"]
    mask, _ = fj.prune(None, params, method="phew", sparsity=0.95, key=jax.random.key(1),
                       probe=probe, scope="layerwise", allocation="uniform")
    counts = fj.program.schedule_counts(params, sparsity=0.95, steps=1,
                                        allocation="uniform")[-1]
    kept = [int(np.sum(m)) for m in jax.tree.leaves(mask) if masks_lib.is_prunable_leaf(m)]
    assert kept == counts.tolist()


@pytest.mark.slow
def test_invert_walks_towards_the_smallest_weights(lenet):
    model, variables, probe = lenet
    params = variables["params"]
    inverted = sanity.inverted("phew")
    assert inverted.score == phew.PhewScore(weighting="inverse")
    kept = {}
    for name, method in (("phew", "phew"), ("inverse", inverted)):
        mask, _ = fj.prune(None, params, method=method, sparsity=0.98, key=jax.random.key(1),
                           probe=probe)
        kept[name] = np.mean(np.concatenate([
            np.abs(np.asarray(p))[np.asarray(m)] for p, m in
            zip(jax.tree.leaves(params), jax.tree.leaves(mask)) if masks_lib.is_prunable_leaf(m)]))
    assert kept["inverse"] < kept["phew"]


def test_a_network_that_is_not_a_chain_is_refused():
    params = {"a": {"kernel": jnp.ones((4, 8))}, "b": {"kernel": jnp.ones((6, 3))}}
    with pytest.raises(ValueError, match="b/kernel \\(6, 3\\) does not take the outputs of "
                                         "a/kernel \\(4, 8\\)"):
        phew.chain(params, fj.init_mask(params), ("a/kernel", "b/kernel"))
    resnet = fj.models.get_model("resnet18", 10, width_multiplier=0.125)
    variables = resnet.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False)
    probe = fj.network_probe(resnet, variables, (8, 8, 3))
    with pytest.raises(ValueError, match="projection shortcuts"):
        fj.prune(None, variables["params"], method="phew", sparsity=0.9,
                 key=jax.random.key(0), probe=probe)


def test_options_are_checked():
    with pytest.raises(ValueError, match="weighting='squared'"):
        methods.get("phew", weighting="squared")
