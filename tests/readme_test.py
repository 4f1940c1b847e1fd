"""The README's Python blocks run as written, in order, in one namespace."""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(text: str) -> list[str]:
    """The ```python fenced blocks of a markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


@pytest.mark.slow
def test_the_readme_blocks_run_as_written():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 6
    namespace: dict = {"__name__": "readme"}
    for number, block in enumerate(blocks, start=1):
        try:
            exec(compile(block, f"README.md block {number}", "exec"), namespace)
        except Exception as error:  # name the block that broke
            raise AssertionError(f"README.md block {number} failed: {error!r}") from error
    assert namespace["masks"] is not None and namespace["trace"].layer_kept.shape[0] == 4


def test_every_python_block_is_found():
    text = "a\n```python\nx = 1\n```\nb\n```bash\nls\n```\n```python\ny = 2\n```\n"
    assert python_blocks(text) == ["x = 1\n", "y = 2\n"]
