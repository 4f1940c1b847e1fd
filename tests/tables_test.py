"""One markdown table and one mean ± std cell for every report."""

from __future__ import annotations

import pytest

from force_jax.reports import scale_report, sweep_compare, sweep_report, tables


def test_a_table_is_a_head_a_rule_and_one_line_per_row():
    assert tables.markdown_table(["method", "99 %"], [["force", "0.8"], ["snip", "n/a"]]) == (
        "| method | 99 % |\n|---|---|\n| force | 0.8 |\n| snip | n/a |\n")
    assert tables.markdown_table(["a"], []) == "| a |\n|---|\n"
    with pytest.raises(ValueError, match="2 cells for 1 columns"):
        tables.markdown_table(["a"], [["x", "y"]])
    assert [tables.sparsity_head(s) for s in (0.99, 0.995, 0.9)] == ["99 %", "99.5 %", "90 %"]


def test_csv_text_is_a_head_and_one_line_per_row():
    text = tables.csv_text(["method", "acc", "note"], [["force", 0.5, None], ["snip", 1, "a,b"]])
    assert text == 'method,acc,note\nforce,0.5,\nsnip,1,"a,b"\n'
    assert tables.csv_text(["a"], []) == "a\n"
    with pytest.raises(ValueError, match="2 values for 1 columns"):
        tables.csv_text(["a"], [["x", "y"]])


def test_mean_std_to_four_decimals():
    assert tables.mean_std([0.8, 0.9]) == "0.8500 ± 0.0707"
    assert tables.mean_std([0.8, 0.9], count=True) == "0.8500 ± 0.0707 (n=2)"
    assert tables.mean_std([0.5]) == tables.mean_std([0.5], count=True) == "0.5000 (n=1)"
    assert tables.mean_std([]) == tables.mean_std([], count=True) == "n/a"
    assert tables.mean_std([0.86549, 0.86551]) == "0.8655 ± 0.0000"


def test_the_three_reports_write_the_same_accuracies_the_same_way():
    accuracies = [0.81234, 0.79876, 0.80555]
    expected = tables.mean_std(accuracies)
    sweep_rows = [{"method": "force", "ablation": "none", "sparsity": 0.99, "seed": seed,
                   "test_accuracy": a, "force_objective": 1.0, "error": None}
                  for seed, a in enumerate(accuracies)]
    compare_rows = [{"variant": "base", "method": "force", "sparsity": 0.99, "seed": seed,
                     "test_accuracy": a, "error": None} for seed, a in enumerate(accuracies)]
    scale_rows = [{"method": "force", "sparsity": 0.99, "width": 1.0, "prunable": 1000,
                   "kept": 10, "seed": seed, "test_accuracy": a, "paths": 1.0,
                   "final_objective": 1.0} for seed, a in enumerate(accuracies)]
    assert f"| force | {expected} |" in sweep_report.summary_markdown(
        sweep_rows, ["force"], [0.99])
    assert f"| base | force | {expected} (n=3) |" in sweep_compare.summary_markdown(compare_rows)
    assert f"| force | 0.99 | {expected} (n=3) |" in scale_report.summary_markdown(scale_rows)
