"""Shared fixtures: a tiny plain-function classifier and synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

# Eight fake CPU devices for the sharding tests; set before jax is imported.
# Single-device computations still run on device 0, unslowed.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

# gs:// tests (gcs_test.py) reach a local GCS server through gcsfs, which reads this flag
# when imported; etils.epath (orbax's paths) picks gcsfs over tf.io.gfile once, at first use.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
os.environ.setdefault("EPATH_USE_TF", "false")
os.environ.setdefault("GOOGLE_AUTH_TOKEN_FOR_TESTING", "fake")  # tensorstore: no credentials

# No persistent compilation cache, even where the environment names one: loading a cached
# CPU executable crashed test workers with a segmentation fault, with and without JAX's
# file lock around the cache. Every process (and test subprocess) compiles its own programs.
os.environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"

import jax  # noqa: E402
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds

# The prepared TFDS folder that sits beside the repository.
SHARED_TFDS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "tfds"


def write_metadata(data_dir: Path, name: str, split_sizes: dict[str, int]) -> None:
    """Writes the metadata of a prepared dataset (no records), for tfds.testing.mock_data.

    Without it mock_data falls back to the builder's code, whose split sizes are unknown (and
    the pip package ships no metadata), so exact split slicing could not be computed.
    """
    builder = tfds.builder(name, data_dir=str(data_dir))
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=split, shard_lengths=[size], num_bytes=0)
        for split, size in split_sizes.items()]))
    builder.data_path.mkdir(parents=True)
    builder.info.write_to_directory(builder.data_path)


def mlp_apply(params, images):
    """Two-layer ReLU network as a plain function (no Flax)."""
    x = images.reshape(images.shape[0], -1)
    h = jax.nn.relu(x @ params["w1"] + params["b1"])
    return h @ params["w2"] + params["b2"]


def mlp_loss(params, batch):
    """Softmax cross-entropy of `mlp_apply`."""
    logits = mlp_apply(params, batch["image"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()


def init_mlp(key, d_in=64, hidden=32, classes=10):
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (d_in, hidden)) * np.sqrt(2.0 / d_in),
        "b1": jnp.zeros((hidden,)),
        "w2": jax.random.normal(k2, (hidden, classes)) * np.sqrt(2.0 / hidden),
        "b2": jnp.zeros((classes,)),
    }


@pytest.fixture
def tiny():
    """(loss_fn, params, data) of a 64-32-10 MLP on 256 random examples."""
    key = jax.random.key(0)
    kp, kx, ky = jax.random.split(key, 3)
    params = init_mlp(kp)
    data = {
        "image": jax.random.normal(kx, (256, 8, 8, 1)),
        "label": jax.random.randint(ky, (256,), 0, 10),
    }
    return mlp_loss, params, data
