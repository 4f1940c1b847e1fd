"""How stable a ranking of methods is over seeds: each seed's ranks, and ties within the spread.

A table of mean ± std says which method is ahead on average. It does not say
whether the order holds seed by seed, nor whether the leader is ahead by more
than the seeds' spread. For one sparsity, `rank_methods` orders the methods by
mean test accuracy and gives each one:

- its rank within every seed that all the ranked methods ran (competition
  ranking: equal accuracies share the better rank, "1, 2, 2, 4");
- whether it is tied with the best: its interval mean ± std overlaps the
  best method's. A method not tied with the best is behind it by more than
  the seeds' spread. Where it or the best ran a single seed, the spread is
  unknown and the question is left open (None), never answered from a
  spread of 0.

The standard deviation is the sample one (0 for a single seed), as in every
table (`tables.mean_std`).
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping, Sequence

from force_jax.reports.tables import markdown_table, mean_std


@dataclasses.dataclass(frozen=True)
class Ranked:
    """One method's place in a ranking.

    Attributes:
      method: the series name.
      values: its accuracies, one per seed it ran.
      mean: their mean.
      std: their sample standard deviation (0 for one seed).
      seed_ranks: its rank in each of the common seeds, in seed order.
      tied_with_best: its mean ± std overlaps the best method's (True for the
        best); None where it or the best has a single seed.
    """

    method: str
    values: tuple[float, ...]
    mean: float
    std: float
    seed_ranks: tuple[int, ...]
    tied_with_best: bool | None


def _ranks(scores: Mapping[str, float]) -> dict[str, int]:
    """Competition ranks, highest score first: 1 + the number of strictly higher scores."""
    return {m: 1 + sum(other > score for other in scores.values()) for m, score in scores.items()}


def rank_methods(accuracy: Mapping[str, Mapping[int, float]]
                 ) -> tuple[list[Ranked], tuple[int, ...]]:
    """Orders methods by mean accuracy, with their ranks seed by seed.

    Args:
      accuracy: {method: {seed: test accuracy}}; methods with no value are
        left out. Equal means keep the mapping's order.

    Returns:
      (the methods best first, the common seeds): the seeds that every ranked
      method ran, in increasing order, over which `seed_ranks` are taken
      (empty when they share none).
    """
    present = {m: dict(v) for m, v in accuracy.items() if v}
    if not present:
        return [], ()
    common = tuple(sorted(set.intersection(*(set(v) for v in present.values()))))
    per_seed = [_ranks({m: v[seed] for m, v in present.items()}) for seed in common]
    stats = {m: (statistics.fmean(v.values()),
                 statistics.stdev(v.values()) if len(v) > 1 else 0.0) for m, v in present.items()}
    order = sorted(present, key=lambda m: -stats[m][0])
    best = order[0]
    best_mean, best_std = stats[best]

    def tied(m: str) -> bool | None:
        if m == best:
            return True
        if min(len(present[m]), len(present[best])) < 2:  # no spread to compare with
            return None
        return stats[m][0] + stats[m][1] >= best_mean - best_std

    ranked = [Ranked(method=m, values=tuple(present[m][s] for s in sorted(present[m])),
                     mean=stats[m][0], std=stats[m][1],
                     seed_ranks=tuple(ranks[m] for ranks in per_seed),
                     tied_with_best=tied(m))
              for m in order]
    return ranked, common


def ranking_markdown(accuracy: Mapping[str, Mapping[int, float]], title: str) -> str:
    """One ranking as a markdown table, led by a bold title.

    Args:
      accuracy: {method: {seed: test accuracy}} (see `rank_methods`).
      title: the line above the table (a sparsity, a variant).

    Returns:
      The title, one row per method (place, method, mean ± std with its
      seed count, ranks over the common seeds, tied with the best), and a
      line naming the common seeds; "" when no method has a value.
    """
    ranked, common = rank_methods(accuracy)
    if not ranked:
        return ""
    rows = [[str(place), r.method, mean_std(list(r.values), count=True),
             ", ".join(map(str, r.seed_ranks)) or "n/a",
             "best" if place == 1 else {True: "yes", False: "no", None: "one seed"}[
                 r.tied_with_best]]
            for place, r in enumerate(ranked, start=1)]
    seeds = ", ".join(map(str, common)) if common else "none shared"
    return (f"**{title}**\n\n"
            + markdown_table(["place", "method", "test accuracy", "ranks over seeds",
                              "tied with the best"], rows)
            + f"\nRanks over seeds {seeds} (the seeds every method above ran), 1 the best.\n")


def tied_sentence(accuracy: Mapping[str, Mapping[int, float]]) -> str:
    """The ranking in words: the best method and those within the seeds' spread of it.

    Args:
      accuracy: {method: {seed: test accuracy}} (see `rank_methods`).

    Returns:
      "best: A; tied with it: B, C" (or "; no other within the spread"),
      then "; one seed, not judged: D" for the methods `rank_methods` cannot
      compare and "; no value: E" for those without any (failed or not
      run); "best: A, the only method with a value" when A is alone; "no
      values" when no method has one.
    """
    ranked, _ = rank_methods(accuracy)
    if not ranked:
        return "no values"
    missing = [m for m, values in accuracy.items() if not values]
    tied = [r.method for r in ranked[1:] if r.tied_with_best]
    open_ = [r.method for r in ranked[1:] if r.tied_with_best is None]
    if len(ranked) == 1:
        text = f"best: {ranked[0].method}, the only method with a value"
    else:
        text = f"best: {ranked[0].method}; " + (f"tied with it: {', '.join(tied)}" if tied
                                                 else "no other within the spread")
    return (text + (f"; one seed, not judged: {', '.join(open_)}" if open_ else "")
            + (f"; no value: {', '.join(missing)}" if missing else ""))


def accuracy_by_method(rows: Sequence[Mapping], variant: str, sparsity: float,
                       methods: Sequence[str]) -> dict[str, dict[int, float]]:
    """{method: {seed: accuracy}} of one variant at one sparsity, failed cells left out.

    Args:
      rows: labelled rows (`sweep_compare.read_rows`).
      variant: the variant.
      sparsity: the sparsity.
      methods: the methods, in the order ties keep.

    Returns:
      The mapping `rank_methods` takes.
    """
    accuracy: dict[str, dict[int, float]] = {m: {} for m in methods}
    for r in rows:
        if (r["variant"], r["sparsity"]) == (variant, sparsity) and r["method"] in accuracy \
                and r["test_accuracy"] is not None:
            accuracy[r["method"]][r["seed"]] = r["test_accuracy"]
    return accuracy
