"""Effective sparsity (force_jax.core.effective) on masks whose answer is known by hand."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import force_jax as fj
from force_jax.core import effective


def _setup(model, shape):
    variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, *shape)), train=False))(
        jax.random.key(0))
    return variables, fj.init_mask(variables["params"])


def _counts(model, variables, mask, shape):
    return dict(zip([n for n, _ in fj.allocation.prunable_layers(mask)],
                    effective.effective_counts(model, variables, mask, shape)))


@pytest.fixture(scope="module")
def vgg():
    model = fj.models.VGG(depth=11, num_classes=10, width_multiplier=0.125)
    return (model, *_setup(model, (32, 32, 3)))


def test_a_dense_mask_is_wholly_effective(vgg):
    model, variables, mask = vgg
    counts = _counts(model, variables, mask, (32, 32, 3))
    assert counts == {n: int(np.prod(s)) for n, s in fj.allocation.prunable_layers(mask)}


def test_a_dead_end_channel_and_an_unfed_channel_lose_their_weights(vgg):
    model, variables, mask = vgg
    mask = jax.tree.map(lambda m: m, mask)
    # Channel 3 of conv_1's output feeds nothing: conv_2 drops every weight reading it.
    mask["conv_2"]["kernel"] = mask["conv_2"]["kernel"].at[:, :, 3, :].set(False)
    # Channel 5 of conv_0's output is fed by nothing: its outgoing weights in conv_1 are idle.
    mask["conv_0"]["kernel"] = mask["conv_0"]["kernel"].at[..., 5].set(False)
    counts = _counts(model, variables, mask, (32, 32, 3))
    full = {n: int(np.prod(s)) for n, s in fj.allocation.prunable_layers(mask)}
    kept = dict(zip(full, [int(np.sum(m)) for m in jax.tree.leaves(mask) if np.ndim(m)]))
    per_channel_1 = 3 * 3 * 8  # conv_1's kernel: 3x3, 8 inputs, per output channel
    per_input_1 = 3 * 3 * 16  # conv_1's weights that read one input channel
    assert counts["conv_0/kernel"] == kept["conv_0/kernel"]
    assert counts["conv_1/kernel"] == full["conv_1/kernel"] - per_channel_1 - per_input_1 + 9
    assert counts["conv_2/kernel"] == kept["conv_2/kernel"]
    for name in ("conv_3/kernel", "conv_7/kernel", "classifier/kernel"):
        assert counts[name] == full[name]


def test_an_emptied_layer_leaves_nothing_effective(vgg):
    model, variables, mask = vgg
    mask = jax.tree.map(lambda m: m, mask)
    mask["conv_4"]["kernel"] = jnp.zeros_like(mask["conv_4"]["kernel"])
    assert sum(_counts(model, variables, mask, (32, 32, 3)).values()) == 0


def test_a_residual_bypass_keeps_what_follows_an_emptied_block_conv():
    model = fj.models.get_model("resnet18", 10, width_multiplier=0.125)
    variables, mask = _setup(model, (32, 32, 3))
    block = "stage1_block0"
    mask = jax.tree.map(lambda m: m, mask)
    mask[block]["conv_1"]["kernel"] = jnp.zeros_like(mask[block]["conv_1"]["kernel"])
    counts = _counts(model, variables, mask, (32, 32, 3))
    full = {n: int(np.prod(s)) for n, s in fj.allocation.prunable_layers(mask)}
    assert counts[f"{block}/conv_0/kernel"] == 0  # feeds only the emptied conv
    assert counts[f"{block}/conv_1/kernel"] == 0
    others = [n for n in full if not n.startswith(f"{block}/")]
    assert all(counts[n] == full[n] for n in others)  # the shortcut carries the rest


def test_sparsity_report_shows_effective_counts_next_to_nominal(vgg):
    model, variables, mask = vgg
    mask = jax.tree.map(lambda m: m, mask)
    mask["conv_4"]["kernel"] = jnp.zeros_like(mask["conv_4"]["kernel"])
    eff = effective.effective_mask(model, variables, mask, (32, 32, 3))
    report = fj.sparsity_report(mask, effective=eff)
    assert report.effective == 0 and report.kept > 0
    assert report.as_dict()["effective"] == 0
    assert "effective" in str(report).splitlines()[0]
    assert fj.sparsity_report(mask).effective is None

