"""TFDS input pipelines: train/validation/test splits, augmentation, normalisation.

Splits: "train" is the first (1 - validation_fraction) of the TFDS train split, "validation" the
rest (exact sizes, from the metadata), "test" the TFDS test split (imagenet2012: validation).
Each of process_count processes reads its own contiguous slice; batch sizes are per process.
Images: decoded to [0, 1], augmented (training only), normalised by the published per-channel
training mean/std (0.5/0.5 for other datasets: no hidden pass over the data). Augmentation of
fixed-size images: zero-pad side // 8 (4 px at 32x32), random crop, flip if colour (off by
default for grayscale). Variable-size images (imagenet2012) -> 224x224: random-resized crop +
flip in training, else short side to 256 + centre crop.

Common arguments: name is a TFDS name, version pinnable ("fashion_mnist:3.0.1"); data_dir the
TFDS data directory (None: TFDS default); validation_fraction the share of the train split held
out; process_index in [0, process_count); download whether a missing dataset may be downloaded
(every entry point first calls check_prepared, which fails fast where TFDS would retry).
"""

from __future__ import annotations

import contextlib
import difflib
import itertools
import os
import socket
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from force_jax.errors import ConfigError
from force_jax.training import images, record_files

# TF must never take accelerator memory from JAX. RuntimeError: TF already set its devices up.
with contextlib.suppress(RuntimeError):
    tf.config.set_visible_devices([], "GPU")

MAX_SHUFFLE_BUFFER = 50_000
Batch = dict[str, np.ndarray]


class DatasetNotFoundError(ConfigError):
    """The dataset is not prepared in data_dir and cannot be downloaded now."""


class DatasetInfo(NamedTuple):
    """What a model and a training loop need to know about a dataset (totals over processes)."""

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    num_train: int
    num_validation: int
    num_test: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _online(timeout: float = 3.0) -> bool:
    """Cheap reachability probe, so an offline download fails now rather than after retries."""
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=timeout).close()
    except OSError:  # Behind a proxy a direct socket proves nothing: let TFDS try.
        return bool(os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"))
    return True


def _builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
    """The TFDS builder of a dataset, prepared or not; an unknown name names close ones."""
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        # TFDS's own message lists every dataset it knows: name a few close ones instead.
        base = name.split(":")[0].split("/")[0]
        close = difflib.get_close_matches(
            base, tfds.list_builders(with_community_datasets=False), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise DatasetNotFoundError(
            f"config.data.name={name!r} is not a TFDS dataset{hint}") from None


def check_prepared(name: str, data_dir: str | None = None, *,
                   download: bool = False) -> tfds.core.DatasetBuilder:
    """Fails within seconds, with DatasetNotFoundError, unless the dataset can be read.

    Args:
      name, data_dir, download: see the module docstring. Offline, download=True raises too.
    Returns:
      The prepared ``tfds.core.DatasetBuilder``.
    """
    builder = _builder(name, data_dir)
    if builder.is_prepared():
        return builder
    message = (f"Dataset {name!r} is not prepared in data_dir={data_dir!r} (no "
               f"{builder.data_path}). On a machine with internet run `tfds build {name} "
               f"--data_dir={data_dir or '<DIR>'}` and copy the prepared folder here, or pass "
               "download=True on an online machine.")
    if not download:
        raise DatasetNotFoundError(message)
    if not _online():
        raise DatasetNotFoundError(message + " This machine looks offline.")
    builder.download_and_prepare()
    return builder


def _split_bounds(builder, split: str, validation_fraction: float) -> tuple[str, int, int]:
    """Maps a split name onto (TFDS split, first record, end record)."""
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    splits = builder.info.splits
    if split == "test":
        tfds_split = "test" if "test" in splits else "validation"
        return tfds_split, 0, splits[tfds_split].num_examples
    total = splits["train"].num_examples
    num_train = total - round(total * validation_fraction)
    if split not in ("train", "validation"):
        raise ValueError(f"split must be 'train', 'validation' or 'test', got {split!r}")
    return ("train", 0, num_train) if split == "train" else ("train", num_train, total)


def _open(name: str, split: str, data_dir: str | None, download: bool,
          validation_fraction: float, process_index: int = 0, process_count: int = 1):
    """Returns (builder, (TFDS split, start, end), this process's records with encoded images)."""
    builder = check_prepared(name, data_dir, download=download)
    bounds = tfds_split, start, end = _split_bounds(builder, split, validation_fraction)
    if end <= start:
        raise ValueError(f"Split {split!r} is empty (validation_fraction={validation_fraction}).")
    if not 0 <= process_index < process_count:
        raise ValueError(f"Bad process_index={process_index} for process_count={process_count}")
    first = start + (end - start) * process_index // process_count
    last = start + (end - start) * (process_index + 1) // process_count
    # Images stay encoded until after shuffle/skip: the buffer holds bytes, and skipping is cheap.
    records = builder.as_dataset(split=f"{tfds_split}[{first}:{last}]", shuffle_files=False,
                                 decoders={"image": tfds.decode.SkipDecoding()})
    records = records.map(lambda example: {"image": example["image"], "label": example["label"]})
    return builder, bounds, records


def _numpy(ds: tf.data.Dataset, builder: Any) -> Iterator[Batch]:
    """The dataset as numpy batches; a damaged file stops it in one line naming the file."""
    options = tf.data.Options()
    options.deterministic = True
    batches = iter(tfds.as_numpy(ds.prefetch(tf.data.AUTOTUNE).with_options(options)))
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except tf.errors.DataLossError as error:
            raise record_files.DamagedDatasetError(record_files.damaged_message(
                f"{builder.info.name}:{builder.info.version}", builder.data_dir, error)) from None
        yield batch


def dataset_info(name: str, data_dir: str | None = None, *, validation_fraction: float = 0.1,
                 download: bool = False) -> DatasetInfo:
    """Describes a dataset after the train/validation split.

    Args:
      name, data_dir, validation_fraction, download: see the module docstring.
    Returns:
      A DatasetInfo; counts are totals over all processes, image_shape is after preprocessing.
    """
    builder = check_prepared(name, data_dir, download=download)
    shape, _, (mean, std) = images.image_layout(builder)
    sizes = [end - start for _, start, end in (
        _split_bounds(builder, s, validation_fraction) for s in ("train", "validation", "test"))]
    return DatasetInfo(builder.name, builder.info.features["label"].num_classes, shape, *sizes,
                       mean, std)


def input_spec(name: str, data_dir: str | None = None) -> tuple[tuple[int, int, int], int]:
    """What a model is built from: the preprocessed image shape and the number of classes.

    From the dataset's metadata only (its features), which TFDS knows from
    the builder's code even before the data is prepared: no record is read.

    Args:
      name, data_dir: see the module docstring.
    Returns:
      (image_shape, num_classes), as in `dataset_info`.
    """
    builder = _builder(name, data_dir)
    shape, _, _ = images.image_layout(builder)
    return shape, builder.info.features["label"].num_classes


def train_iterator(
    name: str, *, batch_size: int, seed: int, data_dir: str | None = None,
    validation_fraction: float = 0.1, augment: bool | None = None, start_step: int = 0,
    process_index: int = 0, process_count: int = 1, shuffle_buffer: int = MAX_SHUFFLE_BUFFER,
    download: bool = False) -> Iterator[Batch]:
    """Endless shuffled, augmented training batches, reproducible from (seed, start_step).

    Epoch e is shuffled with a seed made from (seed, e), each example augmented with the
    stateless seed (seed, stream position): start_step=k yields batches k, k+1, ... of a fresh
    iterator, reading through at most one epoch of still-encoded records to get there.

    Args:
      name, data_dir, validation_fraction, process_*, download: see the module docstring.
      batch_size: examples per batch on this process; a partial batch is never produced.
      seed: shuffle and augmentation seed.
      augment: apply training augmentation; None for the dataset's default (on for colour).
      start_step: number of batches to skip, to resume a run.
      shuffle_buffer: cap on the shuffle buffer in records (the buffer is min(slice, cap)).
    Returns:
      An endless iterator of {"image": float32 [B, H, W, C], "label": int32 [B]} numpy dicts.
    """
    builder, _, records = _open(name, "train", data_dir, download, validation_fraction,
                                process_index, process_count)
    shape, variable_size, _ = images.image_layout(builder)
    augment = (variable_size or shape[2] == 3) if augment is None else augment
    per_epoch = int(records.cardinality())
    start_epoch, skip = divmod(start_step * batch_size, per_epoch)
    seed = tf.constant(seed, tf.int64)

    def epoch_records(epoch: tf.Tensor) -> tf.data.Dataset:
        # A negative second key keeps shuffle keys apart from the augmentation keys below.
        shuffle_seed = tf.random.stateless_uniform(
            [], seed=tf.stack([seed, -1 - epoch]), minval=None, maxval=None, dtype=tf.int64)
        stream_start = (epoch * process_count + process_index) * per_epoch
        return records.shuffle(min(per_epoch, shuffle_buffer), seed=shuffle_seed).enumerate().map(
            lambda i, example: {**example, "seed": tf.stack([seed, stream_start + i])})

    ds = tf.data.Dataset.range(start_epoch, 2**62).flat_map(epoch_records).skip(skip)
    return _numpy(images.preprocess(ds, builder, augment).batch(batch_size, drop_remainder=True),
                  builder)


def _padded(batches, batch_size: int, image_shape, min_batches: int) -> Iterator[Batch]:
    empty = {"image": np.zeros((0, *image_shape), np.float32), "label": np.zeros(0, np.int32)}
    # Trailing empty batches make every process step the same number of times.
    for index, batch in enumerate(itertools.chain(batches, itertools.repeat(empty))):
        size = len(batch["label"])
        if size == 0 and index >= min_batches:
            return
        padded = {k: np.concatenate([v, np.zeros((batch_size - size, *v.shape[1:]), v.dtype)])
                  for k, v in batch.items()}
        yield {**padded, "mask": (np.arange(batch_size) < size).astype(np.float32)}


def eval_iterator(
    name: str, split: str = "test", *, batch_size: int, data_dir: str | None = None,
    validation_fraction: float = 0.1, process_index: int = 0, process_count: int = 1,
    download: bool = False) -> Iterator[Batch]:
    """One full pass over a split in record order, in fixed-size batches.

    The last batch is zero-padded; "mask" (float32 1/0) marks real examples, so masked sums are
    exact. All processes yield the same number of batches (padding-only ones if need be).

    Args:
      name, data_dir, validation_fraction, process_*, download: see the module docstring.
      split: "validation" or "test" ("train" gives the training split unaugmented).
      batch_size: examples per batch on this process.
    Returns:
      An iterator of {"image", "label", "mask"} numpy dicts with leading size batch_size.
    """
    builder, (_, start, end), records = _open(name, split, data_dir, download,
                                              validation_fraction, process_index, process_count)
    shape, _, _ = images.image_layout(builder)
    largest_share = -(-(end - start) // process_count)
    min_batches = -(-largest_share // batch_size) if process_count > 1 else 0
    batches = _numpy(images.preprocess(records, builder, augment=False).batch(batch_size), builder)
    return _padded(batches, batch_size, shape, min_batches)


def load_examples(
    name: str, split: str = "train", num_examples: int = 1024, data_dir: str | None = None,
    seed: int = 0, *, validation_fraction: float = 0.1, download: bool = False) -> Batch:
    """Loads a random pool of preprocessed (normalised, unaugmented) examples into memory.

    Not sliced per process: every process gets the same pool for a seed, so masks agree.

    Args:
      name, data_dir, validation_fraction, download: see the module docstring.
      split: "train", "validation" or "test".
      num_examples: pool size, at most the split's size.
      seed: which examples are drawn.
    Returns:
      {"image": float32 [N, H, W, C], "label": int32 [N]} numpy arrays.
    """
    builder, _, records = _open(name, split, data_dir, download, validation_fraction)
    available = int(records.cardinality())
    if not 0 < num_examples <= available:
        raise ValueError(f"num_examples must be in [1, {available}], got {num_examples}")
    ds = records.shuffle(min(available, MAX_SHUFFLE_BUFFER), seed=seed).take(num_examples)
    return next(_numpy(images.preprocess(ds, builder, augment=False).batch(num_examples), builder))
