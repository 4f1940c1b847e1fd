"""A damaged prepared dataset stops the run in one line naming the file (record_files)."""

from __future__ import annotations

import os
import shutil
import struct

import pytest
from conftest import SHARED_TFDS

from force_jax.training import data, record_files


def _records(path, sizes):
    with open(path, "wb") as f:
        for size in sizes:
            f.write(struct.pack("<Q", size) + b"\0" * 4 + b"x" * size + b"\0" * 4)


def test_a_whole_file_passes_and_a_cut_one_names_its_broken_record(tmp_path):
    path = tmp_path / "a.tfrecord-00000-of-00001"
    _records(path, [5, 100, 7])
    assert record_files.truncated_at(str(path)) is None
    whole = path.read_bytes()
    path.write_bytes(whole[:-10])  # inside the third record
    assert record_files.truncated_at(str(path)) == (12 + 5 + 4) + (12 + 100 + 4)
    path.write_bytes(whole[:20])  # inside the first record's data
    assert record_files.truncated_at(str(path)) == 0


@pytest.mark.skipif(not SHARED_TFDS.is_dir(), reason="no shared TFDS folder")
def test_a_truncated_fashion_mnist_file_is_named_in_one_line(tmp_path):
    source = SHARED_TFDS / "fashion_mnist" / "3.0.1"
    target = tmp_path / "fashion_mnist" / "3.0.1"
    shutil.copytree(source, target)
    train_file = target / "fashion_mnist-train.tfrecord-00000-of-00001"
    os.chmod(train_file, 0o644)
    with open(train_file, "r+b") as f:
        f.truncate(os.path.getsize(train_file) // 2)
    with pytest.raises(record_files.DamagedDatasetError) as error:
        data.load_examples("fashion_mnist:3.0.1", "train", num_examples=60_000 * 9 // 10,
                           data_dir=str(tmp_path), seed=0)
    message = str(error.value)
    assert "\n" not in message and str(train_file) in message and "is cut short" in message
    assert "prepare fashion_mnist:3.0.1 again" in message
