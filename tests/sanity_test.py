"""The sanity-check ablations (force_jax.core.sanity) on hand-checkable cases."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from force_jax.core import masks, sanity


def example_mask():
    """Two prunable layers with known counts, and a non-prunable bias."""
    k1, k2 = jax.random.split(jax.random.key(0))
    return {"w1": jax.random.uniform(k1, (20, 30)) < 0.1,
            "w2": jax.random.uniform(k2, (3, 3, 8, 16)) < 0.3,
            "b": jnp.ones((), bool)}


def counts(mask):
    return [int(np.sum(mask[name])) for name in ("w1", "w2")]


def test_shuffle_keeps_every_layer_count_and_moves_positions():
    mask = example_mask()
    shuffled = sanity.shuffle_within_layers(mask, jax.random.key(1))
    assert counts(shuffled) == counts(mask)
    assert shuffled["b"].shape == () and bool(shuffled["b"])
    for name in ("w1", "w2"):
        assert shuffled[name].shape == mask[name].shape and shuffled[name].dtype == bool
        same = int(np.sum(shuffled[name] & mask[name]))
        assert same < 0.5 * int(np.sum(mask[name]))  # a random draw rarely overlaps much
    again = sanity.shuffle_within_layers(mask, jax.random.key(1))
    other = sanity.shuffle_within_layers(mask, jax.random.key(2))
    assert all(np.array_equal(again[n], shuffled[n]) for n in ("w1", "w2"))
    assert not np.array_equal(other["w1"], shuffled["w1"])
    jitted = jax.jit(sanity.shuffle_within_layers)(mask, jax.random.key(1))
    assert all(np.array_equal(jitted[n], shuffled[n]) for n in ("w1", "w2"))
    baseline = sanity.random_with_densities_of(mask, jax.random.key(1))
    assert all(np.array_equal(baseline[n], shuffled[n]) for n in ("w1", "w2"))


def test_shuffle_per_output_channel_keeps_every_channel_count():
    mask = example_mask()
    shuffled = sanity.shuffle_within_layers(mask, jax.random.key(3), per_output_channel=True)
    for name in ("w1", "w2"):
        np.testing.assert_array_equal(
            np.sum(shuffled[name].reshape(-1, mask[name].shape[-1]), axis=0),
            np.sum(mask[name].reshape(-1, mask[name].shape[-1]), axis=0))
        assert not np.array_equal(shuffled[name], mask[name])


def test_shuffle_per_tap_keeps_every_tap_count():
    mask = example_mask()
    shuffled = sanity.shuffle_within_layers(mask, jax.random.key(4), per_tap=True)
    assert counts(shuffled) == counts(mask)
    # w2 is a 3x3 conv kernel: the count at each of its 9 taps is kept, positions move.
    np.testing.assert_array_equal(np.sum(shuffled["w2"], axis=(2, 3)),
                                  np.sum(mask["w2"], axis=(2, 3)))
    assert int(np.sum(shuffled["w2"] & mask["w2"])) < 0.5 * int(np.sum(mask["w2"]))
    # Output channels are not kept apart unless asked...
    assert not np.array_equal(np.sum(shuffled["w2"], axis=2), np.sum(mask["w2"], axis=2))
    both = sanity.shuffle_within_layers(mask, jax.random.key(4), per_tap=True,
                                        per_output_channel=True)
    np.testing.assert_array_equal(np.sum(both["w2"], axis=2), np.sum(mask["w2"], axis=2))
    assert not np.array_equal(both["w2"], mask["w2"])
    # ...and a dense kernel has a single tap: its shuffle is the layer-wise one.
    layer = sanity.shuffle_within_layers(mask, jax.random.key(4))
    np.testing.assert_array_equal(shuffled["w1"], layer["w1"])
    jitted = jax.jit(lambda m, k: sanity.shuffle_within_layers(m, k, per_tap=True))(
        mask, jax.random.key(4))
    np.testing.assert_array_equal(jitted["w2"], shuffled["w2"])


def test_per_tap_positions_are_uniform_within_each_tap():
    # A (2, 1, 2, 2) kernel: tap 0 keeps 1 of its 4 weights, tap 1 keeps 3 of its 4. Over
    # 4,000 draws every weight of tap 0 is kept a quarter of the time, every one of tap 1
    # three quarters of the time; a layer-wise shuffle would give one half to all eight.
    kernel = np.zeros((2, 1, 2, 2), bool)
    kernel[0, 0, 0, 0] = True
    kernel[1, 0] = [[True, True], [True, False]]
    keys = jax.random.split(jax.random.key(8), 4000)
    draws = jax.vmap(lambda k: sanity.shuffle_within_layers(
        {"w": jnp.asarray(kernel)}, k, per_tap=True)["w"])(keys)
    np.testing.assert_array_equal(np.sum(draws, axis=(2, 3, 4)), np.tile([1, 3], (4000, 1)))
    frequency = np.asarray(np.mean(draws, axis=0)).reshape(2, 4)
    # Binomial(4000, 1/4) and (4000, 3/4): std 0.0068 of a frequency; 4 sigma is 0.0275.
    np.testing.assert_allclose(frequency[0], 0.25, atol=0.0275)
    np.testing.assert_allclose(frequency[1], 0.75, atol=0.0275)


def test_shuffled_positions_are_uniform():
    # One kept weight among 4: over 4,000 draws each position should hold it about 1,000 times.
    mask = {"w": jnp.array([[True, False], [False, False]])}
    keys = jax.random.split(jax.random.key(7), 4000)
    draws = jax.vmap(lambda k: sanity.shuffle_within_layers(mask, k)["w"])(keys)
    assert np.all(np.sum(draws, axis=(1, 2)) == 1)
    frequency = np.asarray(np.mean(draws, axis=0)).ravel()
    # Binomial(4000, 1/4): std 27, so 1,000 +- 110 is a 4-sigma band.
    np.testing.assert_allclose(frequency, 0.25, atol=0.0275)


class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.BatchNorm(use_running_average=True)(nn.Dense(400)(x))
        return nn.Dense(10)(nn.relu(x))


def test_reinitialize_draws_new_weights_from_the_models_initialiser_under_the_same_mask():
    model = Net()
    x = jnp.zeros((1, 256))

    def init(key):
        return model.init(key, x)

    original = init(jax.random.key(0))
    mask = masks.init_mask(original["params"])
    keep = jax.random.uniform(jax.random.key(1), (256, 400)) < 0.2
    mask["Dense_0"]["kernel"] = keep
    fresh = sanity.reinitialize(init, jax.random.key(5), mask)
    kernel = np.asarray(fresh["params"]["Dense_0"]["kernel"])
    old = np.asarray(original["params"]["Dense_0"]["kernel"])
    assert np.all(kernel[~np.asarray(keep)] == 0)
    assert np.all(kernel[np.asarray(keep)] != old[np.asarray(keep)])
    # Flax's default kernel init, lecun_normal: std sqrt(1 / fan_in) = 1/16 (truncated normal
    # rescaled to that variance); ~20,000 kept values pin the std within a few per cent.
    assert abs(np.std(kernel[np.asarray(keep)]) - 1 / 16) < 0.003
    assert abs(np.mean(kernel[np.asarray(keep)])) < 0.002
    assert jax.tree.map(np.shape, fresh["batch_stats"]) == jax.tree.map(
        np.shape, original["batch_stats"])
    # A params pytree alone works as well.
    only = sanity.reinitialize(lambda k: init(k)["params"], jax.random.key(5), mask)
    np.testing.assert_array_equal(only["Dense_0"]["kernel"], kernel)


def test_invert_scores_makes_top_k_the_bottom_k():
    scores = {"w": jnp.array([[3.0, 1.0], [-jnp.inf, 2.0]]), "b": jnp.zeros(())}
    mask_like = {"w": jnp.ones((2, 2), bool), "b": jnp.ones((), bool)}
    kept = masks.topk_mask(sanity.invert_scores(scores), mask_like, 2)
    # The lowest two finite scores (1 and 2); -inf is never chosen while others remain.
    np.testing.assert_array_equal(kept["w"], [[False, True], [False, True]])
    assert float(sanity.invert_scores(scores)["w"][1, 0]) == -np.inf


def test_ablation_key_is_not_a_key_of_initialisation_or_pruning():
    key = sanity.ablation_key(0)
    init_key, prune_key = jax.random.split(jax.random.key(0))
    data = [jax.random.key_data(k).tolist() for k in (key, init_key, prune_key)]
    assert len({str(d) for d in data}) == 3
    assert jax.random.key_data(sanity.ablation_key(0)).tolist() == data[0]
    assert sanity.ABLATIONS == ("none", "shuffle", "reinit", "invert", "shuffle_taps",
                                "random_labels", "random_pixels")
    assert set(sanity.MASK_SHUFFLES) == {"shuffle", "shuffle_taps"}


@pytest.mark.parametrize("per_tap", [False, True])
@pytest.mark.parametrize("per_output_channel", [False, True])
def test_shuffle_of_an_empty_or_full_layer_is_itself(per_output_channel, per_tap):
    mask = {"empty": jnp.zeros((4, 3), bool), "full": jnp.ones((2, 5), bool),
            "empty_conv": jnp.zeros((3, 3, 2, 4), bool), "full_conv": jnp.ones((1, 3, 2, 2), bool)}
    shuffled = sanity.shuffle_within_layers(mask, jax.random.key(0), per_tap=per_tap,
                                            per_output_channel=per_output_channel)
    assert not np.any(shuffled["empty_conv"]) and np.all(shuffled["full_conv"])
    assert not np.any(shuffled["empty"]) and np.all(shuffled["full"])
