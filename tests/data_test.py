"""Tests of force_jax.training.data: real Fashion-MNIST offline; CIFAR, ImageNet mocked."""

from __future__ import annotations

import collections
import itertools
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import write_metadata

from force_jax.training import data, images

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "tfds"
FASHION = "fashion_mnist:3.0.1"
MEAN, STD = images.NORMALISATION["fashion_mnist"]
needs_real_data = pytest.mark.skipif(not DATA_DIR.is_dir(), reason=f"no datasets at {DATA_DIR}")


@pytest.fixture(scope="module")
def raw():
    """The whole Fashion-MNIST as uint8 arrays, read by TFDS itself."""
    return {split: tfds.as_numpy(tfds.load(FASHION, split=split, data_dir=str(DATA_DIR),
                                           batch_size=-1, download=False))
            for split in ("train", "test")}


def normalise(images):
    return ((images / 255.0 - MEAN[0]) / STD[0]).astype(np.float32)


def pixel_hashes(images):
    """Hashes of the uint8 images behind normalised (unaugmented) float images."""
    pixels = np.round((images * STD[0] + MEAN[0]) * 255).astype(np.uint8)
    return collections.Counter(image.tobytes() for image in pixels)


def take(iterator, count):
    return list(itertools.islice(iterator, count))


@needs_real_data
def test_dataset_info_split_sizes():
    info = data.dataset_info(FASHION, str(DATA_DIR))
    assert (info.name, info.num_classes, info.image_shape) == ("fashion_mnist", 10, (28, 28, 1))
    assert (info.num_train, info.num_validation, info.num_test) == (54_000, 6_000, 10_000)
    info = data.dataset_info(FASHION, str(DATA_DIR), validation_fraction=0.0)
    assert (info.num_train, info.num_validation, info.num_test) == (60_000, 0, 10_000)


@needs_real_data
def test_train_batches_shapes_labels_and_normalisation():
    batches = take(data.train_iterator(FASHION, batch_size=256, seed=0, data_dir=str(DATA_DIR),
                                       shuffle_buffer=5_000), 4)
    for batch in batches:
        assert set(batch) == {"image", "label"}
        assert batch["image"].shape == (256, 28, 28, 1) and batch["image"].dtype == np.float32
        assert batch["label"].shape == (256,) and batch["label"].dtype == np.int32
        assert 0 <= batch["label"].min() and batch["label"].max() < 10
    images = np.concatenate([b["image"] for b in batches])
    assert abs(images.mean()) < 0.05 and abs(images.std() - 1.0) < 0.05


@needs_real_data
def test_split_is_exact_and_disjoint(raw):
    # One training epoch (54 batches of 1000, no augmentation) is a permutation of records
    # [0, 54000) and validation is records [54000, 60000) in order: disjoint and exhaustive.
    epoch = take(data.train_iterator(FASHION, batch_size=1000, seed=0, data_dir=str(DATA_DIR),
                                     augment=False), 54)
    train_images = np.concatenate([b["image"] for b in epoch])
    assert pixel_hashes(train_images) == pixel_hashes(normalise(raw["train"]["image"][:54_000]))
    validation = list(data.eval_iterator(FASHION, "validation", batch_size=1000,
                                         data_dir=str(DATA_DIR)))
    assert len(validation) == 6 and all(b["mask"].all() for b in validation)
    np.testing.assert_allclose(np.concatenate([b["image"] for b in validation]),
                               normalise(raw["train"]["image"][54_000:]), atol=1e-5)
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in validation]),
                                  raw["train"]["label"][54_000:])


@needs_real_data
def test_eval_covers_test_split_once_with_padding_mask(raw):
    batches = list(data.eval_iterator(FASHION, "test", batch_size=384, data_dir=str(DATA_DIR)))
    assert len(batches) == 27  # 10000 = 26 * 384 + 16.
    assert all(b["image"].shape == (384, 28, 28, 1) and b["mask"].shape == (384,)
               for b in batches)
    last = batches[-1]
    np.testing.assert_array_equal(last["mask"], np.arange(384) < 16)
    assert not last["image"][16:].any() and not last["label"][16:].any()
    mask = np.concatenate([b["mask"] for b in batches]).astype(bool)
    assert mask.sum() == 10_000
    images = np.concatenate([b["image"] for b in batches])[mask]
    np.testing.assert_allclose(images, normalise(raw["test"]["image"]), atol=1e-5)
    labels = np.concatenate([b["label"] for b in batches])[mask]
    np.testing.assert_array_equal(labels, raw["test"]["label"])


def small_train(seed, **kwargs):
    # validation_fraction=0.99 leaves 600 training records: epochs are cheap to cross.
    return data.train_iterator(FASHION, batch_size=64, seed=seed, data_dir=str(DATA_DIR),
                               validation_fraction=0.99, augment=True, **kwargs)


@needs_real_data
def test_train_iterator_is_deterministic_per_seed():
    first, again, other = (take(small_train(seed), 3) for seed in (0, 0, 1))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    assert not np.array_equal(first[0]["image"], other[0]["image"])


@needs_real_data
def test_resume_from_start_step_equals_continuing():
    # 600 / 64 = 9.4 batches per epoch: batch 9 straddles the first epoch boundary.
    continued = take(small_train(seed=3), 12)
    resumed = take(small_train(seed=3, start_step=7), 5)
    for a, b in zip(continued[7:], resumed, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])


@needs_real_data
def test_processes_partition_the_split(raw):
    whole = list(data.eval_iterator(FASHION, "validation", batch_size=500, data_dir=str(DATA_DIR)))
    # 6000 / 7 processes: shares of 857 or 858, yet every process yields 2 batches.
    shares = [list(data.eval_iterator(FASHION, "validation", batch_size=500,
                                      data_dir=str(DATA_DIR), process_index=i, process_count=7))
              for i in range(7)]
    assert {len(share) for share in shares} == {2}
    real = [b["label"][b["mask"] > 0] for share in shares for b in share]
    assert sum(len(r) for r in real) == 6_000
    np.testing.assert_array_equal(np.concatenate(real),
                                  np.concatenate([b["label"] for b in whole]))
    # Training streams of 2 processes: one epoch each (300 of the 600 records), disjoint.
    streams = [take(data.train_iterator(FASHION, batch_size=100, seed=0, data_dir=str(DATA_DIR),
                                        validation_fraction=0.99, process_index=i,
                                        process_count=2), 3) for i in range(2)]
    hashes = [pixel_hashes(np.concatenate([b["image"] for b in s])) for s in streams]
    assert hashes[0] + hashes[1] == pixel_hashes(normalise(raw["train"]["image"][:600]))


@needs_real_data
def test_load_examples_is_a_seeded_unaugmented_pool(raw):
    def load(seed):  # From a 600-record training split, as in small_train.
        return data.load_examples(FASHION, "train", 256, str(DATA_DIR), seed=seed,
                                  validation_fraction=0.99)

    pool, same, other = load(0), load(0), load(1)
    assert pool["image"].shape == (256, 28, 28, 1) and pool["image"].dtype == np.float32
    assert pool["label"].shape == (256,) and pool["label"].dtype == np.int32
    np.testing.assert_array_equal(pool["image"], same["image"])
    assert not np.array_equal(pool["image"], other["image"])
    hashes = pixel_hashes(pool["image"])
    assert len(hashes) == 256  # Distinct records ...
    train_part = pixel_hashes(normalise(raw["train"]["image"][:600]))
    assert all(h in train_part for h in hashes)  # ... of the training part, not augmented.


@needs_real_data
def test_no_validation_split_when_fraction_is_zero():
    with pytest.raises(ValueError, match="empty"):
        data.eval_iterator(FASHION, "validation", batch_size=8, data_dir=str(DATA_DIR),
                           validation_fraction=0.0)


@pytest.mark.parametrize("name, num_classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_under_mock_data(tmp_path, name, num_classes):
    write_metadata(tmp_path, name, {"train": 50_000, "test": 10_000})
    with tfds.testing.mock_data(num_examples=20, data_dir=str(tmp_path)):
        info = data.dataset_info(name, str(tmp_path))
        assert (info.num_classes, info.image_shape) == (num_classes, (32, 32, 3))
        assert (info.num_train, info.num_validation, info.num_test) == (45_000, 5_000, 10_000)
        augmented = next(data.train_iterator(name, batch_size=8, seed=0, data_dir=str(tmp_path)))
        plain = next(data.train_iterator(name, batch_size=8, seed=0, data_dir=str(tmp_path),
                                         augment=False))
        assert augmented["image"].shape == (8, 32, 32, 3) and augmented["image"].dtype == np.float32
        np.testing.assert_array_equal(augmented["label"], plain["label"])  # Same order,
        assert not np.array_equal(augmented["image"], plain["image"])  # other pixels.
        batches = list(data.eval_iterator(name, "test", batch_size=8, data_dir=str(tmp_path)))
        assert [b["mask"].sum() for b in batches] == [8, 8, 4]
        pool = data.load_examples(name, "train", 16, str(tmp_path))
        assert pool["image"].shape == (16, 32, 32, 3)


def test_imagenet_under_mock_data(tmp_path):
    write_metadata(tmp_path, "imagenet2012", {"train": 1_281_167, "validation": 50_000})
    with tfds.testing.mock_data(num_examples=10, data_dir=str(tmp_path)):
        info = data.dataset_info("imagenet2012", str(tmp_path))
        assert (info.num_classes, info.image_shape, info.num_test) == (1000, (224, 224, 3), 50_000)
        batch = next(data.train_iterator("imagenet2012", batch_size=4, seed=0,
                                         data_dir=str(tmp_path)))
        assert batch["image"].shape == (4, 224, 224, 3) and np.isfinite(batch["image"]).all()
        batches = list(data.eval_iterator("imagenet2012", "test", batch_size=4,
                                          data_dir=str(tmp_path)))
        assert [b["image"].shape for b in batches] == [(4, 224, 224, 3)] * 3
        assert [b["mask"].sum() for b in batches] == [4, 4, 2]


def test_missing_dataset_fails_fast_with_a_clear_error(tmp_path, monkeypatch):
    # An empty data_dir: without the check TFDS would retry the download for minutes.
    with pytest.raises(data.DatasetNotFoundError) as error:
        data.check_prepared("cifar10", str(tmp_path), download=False)
    assert isinstance(error.value, ValueError)
    assert "cifar10" in str(error.value) and str(tmp_path) in str(error.value)
    assert "tfds build" in str(error.value)
    with pytest.raises(data.DatasetNotFoundError):
        data.train_iterator("cifar10", batch_size=8, seed=0, data_dir=str(tmp_path))
    monkeypatch.setattr(data, "_online", lambda: False)  # Never really download in a test.
    with pytest.raises(data.DatasetNotFoundError, match="offline"):
        data.check_prepared("cifar10", str(tmp_path), download=True)
