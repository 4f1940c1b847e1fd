"""Sweeps side by side: the labelled table, the figure, failures counted not averaged."""

from __future__ import annotations

import csv
import json

import pytest

from force_jax.reports import sweep_compare, sweep_report


def write_sweep(folder, rows, num_steps=150):
    """A sweep folder: results.csv and one cells/<name>/config.json per row."""
    folder.mkdir(parents=True)
    sweep_report.write_results(str(folder / "results.csv"), rows)
    for r in rows:
        cell = folder / "cells" / f"{r['method']}_s{r['sparsity']}_seed{r['seed']}"
        cell.mkdir(parents=True)
        record = {"seed": r["seed"], "sweep": {"seeds": [r["seed"]]},
                  "prune": {"method": r["method"], "sparsity": r["sparsity"], "steps": 30},
                  "train": {"num_steps": num_steps}}
        (cell / "config.json").write_text(json.dumps(record))


def row(method, sparsity, seed, accuracy, error=None, **more):
    return {"method": method, "sparsity": sparsity, "seed": seed, "test_accuracy": accuracy,
            "error": error, **more}


def test_two_variants_side_by_side(tmp_path):
    write_sweep(tmp_path / "a", [row("force", 0.99, 0, 0.8), row("force", 0.99, 1, 0.9),
                                 row("force", 0.998, 0, None, "ValueError: x")])
    write_sweep(tmp_path / "b", [row("force", 0.99, 0, 0.5), row("force", 0.998, 0, 0.25)])
    runs = sweep_compare.parse_runs(f"paper loss={tmp_path / 'a'},ce={tmp_path / 'b'}")
    rows = sweep_compare.write_comparison(runs, str(tmp_path / "out"))
    assert len(rows) == 5
    lines = (tmp_path / "out" / "summary.md").read_text().splitlines()
    assert lines[0] == "| variant | method | 99 % | 99.8 % |"
    # 0.8 and 0.9: mean 0.85, sample std 0.0707; the failed cell is counted, not averaged.
    # Four decimals, as in every table (`tables.mean_std`).
    assert lines[2] == "| paper loss | force | 0.8500 ± 0.0707 (n=2) | n/a |"
    assert lines[3] == "| ce | force | 0.5000 (n=1) | 0.2500 (n=1) |"
    assert lines[5] == "5 cells, 1 failed."
    with open(tmp_path / "out" / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["variant"] for r in table] == ["paper loss"] * 3 + ["ce"] * 2
    png = (tmp_path / "out" / "accuracy_vs_sparsity.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_bad_runs_flag_and_missing_folder():
    with pytest.raises(ValueError, match="label=folder"):
        sweep_compare.parse_runs("runs/base")
    with pytest.raises(ValueError, match="no empty label"):
        sweep_compare.parse_runs("=x")
    assert sweep_compare.parse_runs("a=x,a=y") == [("a", "x"), ("a", "y")]
    with pytest.raises(FileNotFoundError, match="is /nonexistent a sweep folder"):
        sweep_compare.read_rows("a", "/nonexistent")


def test_one_label_joins_folders_and_refuses_a_cell_found_twice(tmp_path):
    write_sweep(tmp_path / "seeds01", [row("force", 0.998, 0, 0.2), row("force", 0.998, 1, 0.4)])
    write_sweep(tmp_path / "seeds2", [row("force", 0.998, 2, 0.6)])
    runs = [("base", str(tmp_path / "seeds01")), ("base", str(tmp_path / "seeds2"))]
    sweep_compare.write_comparison(runs, str(tmp_path / "out"))
    lines = (tmp_path / "out" / "summary.md").read_text().splitlines()
    assert lines[2] == "| base | force | 0.4000 ± 0.2000 (n=3) |"
    with pytest.raises(ValueError, match="variant 'base' has the cell force at sparsity 0.998 "
                                         "seed 0 twice"):
        sweep_compare.write_comparison(runs + runs[:1], str(tmp_path / "again"))


def test_joined_folders_must_share_settings_apart_from_sparsity_and_seed(tmp_path):
    write_sweep(tmp_path / "short", [row("force", 0.99, 0, 0.5)], num_steps=150)
    write_sweep(tmp_path / "long", [row("force", 0.998, 1, 0.7)], num_steps=842)
    joined = [("base", str(tmp_path / "short")), ("base", str(tmp_path / "long"))]
    with pytest.raises(ValueError, match=r"force cells differ in more than sparsity and seed:"
                                         r"\n  train.num_steps: 150 -> 842"):
        sweep_compare.write_comparison(joined, str(tmp_path / "out"))
    # Under two labels they are two variants, side by side.
    sweep_compare.write_comparison([("150", str(tmp_path / "short")),
                                    ("842", str(tmp_path / "long"))], str(tmp_path / "out"))
    (tmp_path / "bare").mkdir()
    sweep_report.write_results(str(tmp_path / "bare" / "results.csv"), [row("force", 0.9, 2, 0.9)])
    with pytest.raises(ValueError, match="holds no cells/.*cannot be checked"):
        sweep_compare.write_comparison(joined[:1] + [("base", str(tmp_path / "bare"))],
                                       str(tmp_path / "out"))


def test_chosen_series_in_order_ranked_over_seeds_one_panel_per_variant(tmp_path):
    write_sweep(tmp_path / "m", [row("snip", 0.99, 0, 0.70), row("snip", 0.99, 1, 0.72),
                                 row("force", 0.99, 0, 0.88), row("force", 0.99, 1, 0.86),
                                 row("grasp", 0.99, 0, 0.5)])
    write_sweep(tmp_path / "more", [row("force", 0.99, 2, 0.87)])
    runs = [("all", str(tmp_path / "m")), ("all", str(tmp_path / "more"))]
    rows = sweep_compare.write_comparison(runs, str(tmp_path / "out"), series=["force", "snip"],
                                          panels="variant")
    assert [r["method"] for r in rows] == ["force"] * 3 + ["snip"] * 2  # grasp left out
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "| all | force | 0.8700 ± 0.0100 (n=3) |" in text
    assert "- 99 %: best: force; no other within the spread" in text
    # Seed 2 only force ran: the per-seed ranks are over seeds 0 and 1.
    assert "| 1 | force | 0.8700 ± 0.0100 (n=3) | 1, 1 | best |" in text
    assert "| 2 | snip | 0.7100 ± 0.0141 (n=2) | 2, 2 | no |" in text
    assert "grasp" not in text
    png = (tmp_path / "out" / "accuracy_vs_sparsity.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="--series names synflow, which no folder has; "
                                         "the folders have snip, force, grasp"):
        sweep_compare.write_comparison(runs, str(tmp_path / "bad"), series=["force", "synflow"])
    for series, problem in (([], "none named"), (["force", "force"], "force named twice")):
        with pytest.raises(ValueError, match=f"--series must name each series once.*{problem}"):
            sweep_compare.write_comparison(runs, str(tmp_path / "bad"), series=series)
    with pytest.raises(ValueError, match="--panels must be one of method, variant"):
        sweep_compare.write_comparison(runs, str(tmp_path / "bad"), panels="seed")


def test_paths_and_seconds_carried_over_per_cell_and_averaged(tmp_path):
    write_sweep(tmp_path / "a", [
        row("force", 0.99, 0, 0.8, kept=100, effective=90, prune_seconds=10.0,
            best_validation_accuracy=0.81, final_kept=100, final_effective=90),
        # A mask that changed during training: the table counts the one it ended with.
        row("force", 0.99, 1, 0.9, kept=200, effective=200, prune_seconds=20.0,
            final_kept=100, final_effective=0),
        row("force", 0.998, 0, 0.7)])  # an older results.csv: no paths, no seconds
    rows = sweep_compare.write_comparison([("a", str(tmp_path / "a"))], str(tmp_path / "out"))
    assert (rows[0]["kept"], rows[0]["effective"], rows[0]["prune_seconds"],
            rows[0]["best_validation_accuracy"]) == (100, 90, 10.0, 0.81)
    assert rows[1]["final_kept"] == 100 and rows[1]["final_effective"] == 0
    assert rows[2]["effective"] is None and rows[2]["prune_seconds"] is None
    text = (tmp_path / "out" / "summary.md").read_text()
    # (90/100 + 0/100) / 2 = 45 %; one of the two masks keeps no path. Seconds: (10 + 20) / 2.
    assert "| a | force | 45.0 % (1/2 no path) | n/a |" in text
    assert "| a | force | 15 s | n/a |" in text
    with open(tmp_path / "out" / "results.csv") as f:
        first = next(csv.DictReader(f))
    assert (first["kept"], first["effective"], first["prune_seconds"]) == ("100", "90", "10.0")
