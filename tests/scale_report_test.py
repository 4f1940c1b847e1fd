"""The network-size report: pruning-history events by hand, one protocol per report, the
tables, the figure and the cells' records copied so the report rebuilds from its folder."""

from __future__ import annotations

import csv
import hashlib
import json
import os

import pytest
from conftest import SHARED_TFDS
from PIL import Image

from configs import scale_fashion_mnist
from force_jax.config.sweep_grid import cell_config, cell_name
from force_jax.reports import mask_paths, scale_report
from force_jax.runs import workdir

LAYERS = [{"name": "classifier/kernel", "total": 4}, {"name": "conv_0/kernel", "total": 9},
          {"name": "conv_1/kernel", "total": 9}]


def test_history_events_by_hand():
    pruned = {"report": {"layers": LAYERS},
              "history": {"objective": [5.0, 2.0, 0.0, 0.0],
                          "layer_kept": [[4, 6, 5], [3, 2, 1], [3, 1, 0], [4, 0, 0]]}}
    assert scale_report.history_events(pruned) == {
        "final_objective": 0.0, "objective_zero_step": 3,
        "thinnest_before_zero": "conv_1/kernel (1)", "first_empty_step": 3,
        "first_empty_layers": "conv_1/kernel"}
    alive = {"report": {"layers": LAYERS},
             "history": {"objective": [5.0, 2.0], "layer_kept": [[4, 6, 5], [3, 2, 1]]}}
    assert scale_report.history_events(alive) == {
        "final_objective": 2.0, "objective_zero_step": None, "thinnest_before_zero": "",
        "first_empty_step": None, "first_empty_layers": ""}


def test_the_config_takes_a_width_and_refuses_others():
    config = scale_fashion_mnist.get_config("1.0")
    assert config.model.width_multiplier == 1.0 and config.model.name == "vgg11"
    assert config.sweep.sparsities == (0.998, 0.999) and len(config.sweep.seeds) == 5
    with pytest.raises(ValueError, match="takes a width of 0.25, 0.5, 1.0"):
        scale_fashion_mnist.get_config("2")


def _fake_cell(root, width: str, method: str, sparsity: float, seed: int, accuracy: float,
               paths: float) -> None:
    """A finished cell's record files, as a sweep leaves them (paths.json measured)."""
    config = cell_config(scale_fashion_mnist.get_config(width), method, sparsity, seed)
    folder = root / f"w{width}" / "cells" / cell_name(method, sparsity, seed)
    folder.mkdir(parents=True)
    total = {"0.25": 1000, "1.0": 16000}[width]
    kept = int(round((1 - sparsity) * total))
    (folder / "config.json").write_text(json.dumps(workdir.config_record(config)))
    (folder / "prune.json").write_text(json.dumps({
        "report": {"total": total, "kept": kept, "layers": LAYERS},
        "history": {"objective": [1.0, 0.0 if paths == 0 else 0.5],
                    "layer_kept": [[4, 3, 3], [kept, 0, 0] if paths == 0 else [1, 1, 1]]}}))
    metrics = json.dumps({"test_accuracy": accuracy, "best_validation_accuracy": accuracy})
    (folder / "metrics.json").write_text(metrics)
    (folder / "paths.json").write_text(json.dumps({
        "paths": paths, "center_tap": {},
        "metrics_sha256": hashlib.sha256(metrics.encode()).hexdigest()}))


def test_the_report_tables_figure_and_records(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    _fake_cell(runs, "0.25", "force", 0.998, 0, 0.1, 0.0)
    _fake_cell(runs, "0.25", "force", 0.998, 1, 0.7, 3.0)
    _fake_cell(runs, "1.0", "force", 0.998, 0, 0.8, 5.0)
    _fake_cell(runs, "1.0", "iter_snip", 0.998, 0, 0.82, 5.0)
    rows = scale_report.write_report(str(runs), str(out))
    assert [(r["method"], r["width"], r["seed"]) for r in rows] == [
        ("force", 0.25, 0), ("force", 0.25, 1), ("force", 1.0, 0), ("iter_snip", 1.0, 0)]
    summary = (out / "summary.md").read_text()
    assert "| force | 0.998 | 0.4000 ± 0.4243 (n=2) | 0.8000 (n=1) |" in summary
    assert "| force | 0.998 | 1/2 (1 with S(m) = 0) | 0/1 (0 with S(m) = 0) |" in summary
    assert "| 32 | x1 | 0.998 | 0.8000 (n=1) | 0.8200 (n=1) |" in summary
    assert "| force | x0.25 | 0.998 | 0 | 2 | conv_0/kernel (3) | 2 |" in summary
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    with Image.open(out / "accuracy_vs_size.png") as image:
        assert image.size[0] > 400 and image.size[1] > 400
    # The records travel with the report: it rebuilds from OUT alone, identically.
    assert sorted(os.listdir(out / "w1.0" / "cells")) == ["force_s0.998_seed0",
                                                          "iter_snip_s0.998_seed0"]
    again = scale_report.write_report(str(tmp_path / "gone"), str(out))
    assert again == rows and (out / "summary.md").read_text() == summary


def test_two_protocols_are_refused(tmp_path):
    _fake_cell(tmp_path, "0.25", "force", 0.998, 0, 0.1, 0.0)
    _fake_cell(tmp_path, "1.0", "force", 0.998, 0, 0.8, 5.0)
    scale_report.check_one_protocol(list(scale_report.find_cells([str(tmp_path)]).values()))
    _fake_cell(tmp_path, "1.0", "force", 0.999, 0, 0.8, 5.0)
    cells = tmp_path / "w1.0" / "cells" / cell_name("force", 0.999, 0) / "config.json"
    record = json.loads(cells.read_text())
    record["train"]["num_steps"] = 842
    cells.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="train.num_steps: 421 -> 842"):
        scale_report.write_report(str(tmp_path), str(tmp_path / "out"))


@pytest.mark.skipif(not SHARED_TFDS.is_dir(), reason="no shared TFDS folder")
def test_a_rerun_cell_is_measured_again_not_read_from_the_old_measurement(tmp_path):
    _fake_cell(tmp_path, "0.25", "force", 0.998, 0, 0.1, 0.0)
    cell = tmp_path / "w0.25" / "cells" / cell_name("force", 0.998, 0)
    assert mask_paths.cached_cell_paths(str(cell))["paths"] == 0.0
    (cell / "metrics.json").write_text(json.dumps({"test_accuracy": 0.8}))  # another run
    with pytest.raises(ValueError, match="has no checkpoint"):  # measured, not the stale 0.0
        mask_paths.cached_cell_paths(str(cell), str(SHARED_TFDS))
