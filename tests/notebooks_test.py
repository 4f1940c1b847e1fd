"""Every notebook runs top to bottom on small settings without a cell error."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from conftest import SHARED_TFDS
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _figure_cells(notebook) -> list[int]:
    """The indices of the code cells that show a figure (an image/png output)."""
    return [i for i, cell in enumerate(_code_cells(notebook))
            if any("image/png" in o.get("data", {}) for o in cell.outputs)]


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_TFDS.is_dir(), reason="no shared TFDS folder")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_without_errors(path, monkeypatch):
    """Every cell runs, none fails, and the cells that show a figure in the saved notebook
    draw it again."""
    notebook = nbformat.read(path, as_version=4)
    saved_figures = _figure_cells(notebook)
    monkeypatch.setenv("FORCE_JAX_NOTEBOOK_SMALL", "1")  # inherited by the kernel
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # no fake devices of conftest: one CPU
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=300, allow_errors=True,  # errors listed below
        resources={"metadata": {"path": str(ROOT)}},  # the kernel's working directory
    )
    client.execute()
    code = _code_cells(notebook)
    errors = [f"cell {i + 1}: {o.ename}: {o.evalue}" for i, cell in enumerate(code)
              for o in cell.outputs if o.output_type == "error"]
    assert errors == []
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    assert saved_figures and _figure_cells(notebook) == saved_figures


def test_notebooks_are_saved_with_their_outputs():
    """Committed executed in order, figures included, so the repository page shows them."""
    assert "walkthrough.ipynb" in [p.name for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), path.name
        outputs = [o for cell in code for o in cell.outputs]
        assert not any(o.output_type == "error" for o in outputs), path.name
        # The layer densities, the density trajectory.
        assert len(_figure_cells(notebook)) >= 2, path.name
