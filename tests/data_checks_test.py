"""Data sanity checks (force_jax.core.data_checks) and their config path on real data."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_test import needs_real_data, tiny_config

from force_jax.config import pruning_run, setup
from force_jax.core import data_checks, density, sanity


def _batch(n=512):
    kx, ky = jax.random.split(jax.random.key(0))
    images = 3.0 + 2.0 * jax.random.normal(kx, (n, 4, 4, 2)) * jnp.asarray([1.0, 0.5])
    return {"image": images, "label": jax.random.randint(ky, (n,), 0, 3)}


def test_random_labels_redraws_labels_uniformly_and_keeps_images():
    batch = _batch()
    out = data_checks.random_labels(batch, jax.random.key(1), num_classes=10)
    assert out["label"].dtype == batch["label"].dtype
    assert np.array_equal(out["image"], batch["image"])
    labels = np.asarray(out["label"])
    assert labels.min() >= 0 and labels.max() <= 9 and len(set(labels.tolist())) == 10
    again = data_checks.random_labels(batch, jax.random.key(1), num_classes=10)
    assert np.array_equal(again["label"], out["label"])  # deterministic for its key


def test_random_pixels_is_noise_of_the_images_channel_mean_and_std():
    batch = _batch()
    out = data_checks.random_pixels(batch, jax.random.key(1))
    assert np.array_equal(out["label"], batch["label"])
    images, noise = np.asarray(batch["image"]), np.asarray(out["image"])
    np.testing.assert_allclose(noise.mean((0, 1, 2)), images.mean((0, 1, 2)), atol=0.1)
    np.testing.assert_allclose(noise.std((0, 1, 2)), images.std((0, 1, 2)), rtol=0.05)
    assert abs(np.corrcoef(noise.ravel(), images.ravel())[0, 1]) < 0.05


def test_a_stream_is_corrupted_batch_by_batch_with_its_own_keys():
    batches = [jax.tree.map(np.asarray, _batch(8)) for _ in range(3)]
    out = list(data_checks.corrupt_stream(iter(batches), "random_labels", jax.random.key(2), 100))
    assert len(out) == 3 and all(isinstance(b["label"], np.ndarray) for b in out)
    assert not np.array_equal(out[0]["label"], out[1]["label"])
    with pytest.raises(ValueError, match="unknown data check 'noise'"):
        data_checks.corrupt(batches[0], "noise", jax.random.key(0), 10)
    assert set(data_checks.DATA_CHECKS) <= set(sanity.ABLATIONS)


@pytest.mark.slow
@needs_real_data
def test_data_checks_and_the_layerwise_scope_from_the_config_on_fashion_mnist():
    masks_by_check, records = {}, {}
    for check in ("none", "random_labels", "random_pixels"):
        config = tiny_config(**{"prune.method": "snip", "prune.steps": 1,
                                "prune.ablation": check, "prune.scope": "layerwise",
                                "prune.allocation": "erk"})
        experiment = setup.experiment(config)
        mask, history = pruning_run.prune_at_init(config, experiment.model, experiment.variables,
                                            experiment.prune_key)
        counts = setup.check_allocation(config, experiment.variables["params"])
        assert history.layer_kept.tolist() == counts.tolist()
        masks_by_check[check] = np.concatenate(
            [np.asarray(m).ravel() for m in jax.tree.leaves(mask) if np.ndim(m)])
        records[check] = pruning_run.prune_record(config, 0.0, density.sparsity_report(mask),
                                            history)
    assert records["none"]["scoring_data"] == "real"
    assert records["random_labels"]["scoring_data"].startswith("real images, uniformly random")
    assert records["random_pixels"]["scoring_data"].startswith("Gaussian noise")
    assert records["none"]["scope"] == "layerwise" and records["none"]["allocation"] == "erk"
    for check in ("random_labels", "random_pixels"):  # the corrupted data changed the mask
        assert (masks_by_check[check] != masks_by_check["none"]).sum() > 100
