"""Every notebook runs top to bottom on small settings without a cell error."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from conftest import SHARED_TFDS
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.skipif(not SHARED_TFDS.is_dir(), reason="no shared TFDS folder")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_without_errors(path, monkeypatch):
    notebook = nbformat.read(path, as_version=4)
    monkeypatch.setenv("FORCE_JAX_NOTEBOOK_SMALL", "1")  # inherited by the kernel
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # no fake devices of conftest: one CPU
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=300,
        resources={"metadata": {"path": str(ROOT)}},  # the kernel's working directory
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not any(o.output_type == "error" for o in outputs)


def test_notebooks_are_saved_with_their_outputs():
    """Committed executed in order, figures included, so the repository page shows them."""
    assert "walkthrough.ipynb" in [p.name for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), path.name
        outputs = [o for cell in code for o in cell.outputs]
        assert not any(o.output_type == "error" for o in outputs), path.name
        images = [o for o in outputs if "image/png" in o.get("data", {})]
        assert len(images) >= 2, path.name  # the layer densities, the density trajectory
