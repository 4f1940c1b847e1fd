"""The ranking of methods over seeds: hand-computed ranks, ties and spreads."""

from __future__ import annotations

import pytest

from force_jax.reports import seed_ranking


def test_order_ranks_per_seed_and_ties_with_the_best():
    accuracy = {
        "a": {0: 0.80, 1: 0.90, 2: 0.85},  # mean 0.85, std 0.05: [0.80, 0.90]
        "b": {0: 0.88, 1: 0.86, 2: 0.87, 3: 0.20},  # seed 3 only b ran: not ranked per seed
        "c": {0: 0.50, 1: 0.52, 2: 0.54},  # mean 0.52, std 0.02: [0.50, 0.54]
        "d": {},  # no value: left out
    }
    ranked, common = seed_ranking.rank_methods(accuracy)
    assert common == (0, 1, 2)
    # b's mean with seed 3: (0.88 + 0.86 + 0.87 + 0.20) / 4 = 0.7025, below a's 0.85.
    assert [r.method for r in ranked] == ["a", "b", "c"]
    assert ranked[0].mean == pytest.approx(0.85) and ranked[0].std == pytest.approx(0.05)
    # seed 0: b 0.88 > a 0.80 > c; seed 1: a > b > c; seed 2: b 0.87 > a 0.85 > c.
    assert [r.seed_ranks for r in ranked] == [(2, 1, 2), (1, 2, 1), (3, 3, 3)]
    # b: 0.7025 + std 0.3351 = 1.04 >= 0.80 = a's mean - std; c: 0.52 + 0.02 = 0.54 < 0.80.
    assert [r.tied_with_best for r in ranked] == [True, True, False]
    assert seed_ranking.tied_sentence(accuracy) == "best: a; tied with it: b; no value: d"


def test_equal_accuracies_share_the_better_rank_and_one_seed_has_no_spread():
    ranked, common = seed_ranking.rank_methods({"x": {0: 0.5}, "y": {0: 0.5}, "z": {0: 0.7}})
    assert common == (0,)
    assert [(r.method, r.seed_ranks, r.std) for r in ranked] == [
        ("z", (1,), 0.0), ("x", (2,), 0.0), ("y", (2,), 0.0)]  # equal means keep their order
    # One seed each: no spread to compare, so no tie or gap is claimed.
    assert [r.tied_with_best for r in ranked] == [True, None, None]
    assert seed_ranking.tied_sentence({"x": {0: 0.5}, "z": {0: 0.7}}) == (
        "best: z; no other within the spread; one seed, not judged: x")
    assert seed_ranking.tied_sentence({"x": {0: 0.5, 1: 0.5}, "z": {0: 0.7, 1: 0.7}}) == (
        "best: z; no other within the spread")


def test_no_common_seed_and_no_value():
    ranked, common = seed_ranking.rank_methods({"a": {0: 0.9}, "b": {1: 0.8}})
    assert common == () and [r.seed_ranks for r in ranked] == [(), ()]
    text = seed_ranking.ranking_markdown({"a": {0: 0.9}, "b": {1: 0.8}}, "99 %")
    assert "| 1 | a | 0.9000 (n=1) | n/a | best |" in text
    assert "| 2 | b | 0.8000 (n=1) | n/a | one seed |" in text
    assert "Ranks over seeds none shared" in text
    assert seed_ranking.rank_methods({"a": {}}) == ([], ())
    assert seed_ranking.ranking_markdown({}, "99 %") == ""
    assert seed_ranking.tied_sentence({}) == "no values"


def test_markdown_rows():
    text = seed_ranking.ranking_markdown(
        {"force": {0: 0.88, 1: 0.87}, "snip": {0: 0.10, 1: 0.86}}, "99.8 %")
    lines = text.splitlines()
    assert lines[0] == "**99.8 %**"
    assert lines[4] == "| 1 | force | 0.8750 ± 0.0071 (n=2) | 1, 1 | best |"
    # snip: mean 0.48, std 0.5374: its interval reaches force's.
    assert lines[5] == "| 2 | snip | 0.4800 ± 0.5374 (n=2) | 2, 2 | yes |"
    assert lines[-1] == "Ranks over seeds 0, 1 (the seeds every method above ran), 1 the best."


def test_methods_without_a_value_are_named_not_dropped():
    accuracy = {"a": {0: 0.9, 1: 0.8}, "b": {}, "c": {0: 0.85, 1: 0.86}}
    assert seed_ranking.tied_sentence(accuracy) == "best: c; tied with it: a; no value: b"
    assert seed_ranking.tied_sentence({"a": {0: 0.9}, "b": {}}) == (
        "best: a, the only method with a value; no value: b")
