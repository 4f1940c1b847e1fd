"""Which file of a prepared TFDS dataset is damaged, when TensorFlow only says "corrupted record".

A TFRecord file is a sequence of records, each framed as an 8-byte
little-endian length, a 4-byte CRC of it, the data and a 4-byte CRC of the
data. A file cut short (a copy interrupted, a disk full) ends inside a
record: reading the frame headers alone, one seek per record, finds it
without reading the data.
"""

from __future__ import annotations

import glob
import os
import struct

from force_jax.errors import ConfigError

_HEADER = 12  # length (8 bytes) and its CRC (4)
_FOOTER = 4  # the data's CRC


class DamagedDatasetError(ConfigError):
    """A file of a prepared dataset cannot be read; it must be prepared again."""


def truncated_at(path: str) -> int | None:
    """The byte offset of the record a TFRecord file is cut short in, or None if whole.

    Args:
      path: a local TFRecord file.

    Returns:
      The offset of the first record that does not fit in the file, or None.
    """
    size = os.path.getsize(path)
    offset = 0
    with open(path, "rb") as f:
        while offset < size:
            f.seek(offset)
            header = f.read(_HEADER)
            if len(header) < _HEADER:
                return offset
            (length,) = struct.unpack("<Q", header[:8])
            end = offset + _HEADER + length + _FOOTER
            if end > size:
                return offset
            offset = end
    return None


def damaged_message(name: str, data_dir: str, error: Exception) -> str:
    """One line for a dataset TensorFlow failed to read: which file, and the fix.

    Args:
      name: the dataset name (with its version).
      data_dir: the prepared dataset's own folder (the builder's data_dir).
      error: TensorFlow's error.

    Returns:
      The message, naming the truncated file where one is found.
    """
    fix = f"prepare {name} again (tfds build) or copy it again into that folder"
    for path in sorted(glob.glob(os.path.join(data_dir, "*.tfrecord*"))):
        try:
            offset = truncated_at(path)
        except OSError:
            continue
        if offset is not None:
            return (f"{path} is cut short (its record at byte {offset:,} of "
                    f"{os.path.getsize(path):,} does not fit): {fix}")
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"a file of {name} in {data_dir} is damaged ({first_line[:120]}): {fix}"
