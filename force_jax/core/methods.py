"""The pruning methods as data: one `Method` record per method, in one table.

Everything that depends on a method (the pruning program, config validation,
the sweep) reads its record, never its name. Adding a method is one score
function (see `force_jax.core.scores`) and one entry here; a record built
elsewhere can also be passed to `force_jax.prune` directly.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import NamedTuple

from force_jax.core import scores

# How a method's pruning history gets the FORCE objective S(m) of each mask.
OBJECTIVE_FREE = "free"  # its score computes g(theta0 * m): S(m) costs nothing more
OBJECTIVE_EXTRA = "extra"  # one more data gradient per step, when tracked and data is given
OBJECTIVE_NONE = "none"  # never tracked: the method never reads data
OBJECTIVES = (OBJECTIVE_FREE, OBJECTIVE_EXTRA, OBJECTIVE_NONE)


class Method(NamedTuple):
    """What the library knows about one pruning method.

    Attributes:
      name: its name in configs and results ("force").
      score: the score function, StepInputs -> (scores, gradient or None);
        higher scores are kept.
      progressive: anneals the sparsity over several steps; otherwise it
        prunes in one shot and `steps` must be 1.
      default_steps: steps when none are given (1 for a one-shot method).
      needs_data: its scores read data batches (a loss_fn and data).
      needs_synflow: its scores need a SynFlow objective (`synflow_fn`).
      revives: it scores pruned weights too, so they may come back at a later
        step (FORCE); otherwise its score gives them -inf.
      objective: how the history gets S(m): OBJECTIVE_FREE, OBJECTIVE_EXTRA
        or OBJECTIVE_NONE.
    """

    name: str
    score: Callable[[scores.StepInputs], scores.Scores]
    progressive: bool
    default_steps: int
    needs_data: bool
    needs_synflow: bool
    revives: bool
    objective: str

    def reads_data(self, track_objective: bool = True) -> bool:
        """Whether pruning with this method reads data batches.

        Args:
          track_objective: whether S(m) is tracked; a data-free method with
            OBJECTIVE_EXTRA then reads batches to measure it.

        Returns:
          True when its scores read data, or when S(m) is tracked and costs a
          data gradient.
        """
        return self.needs_data or self.extra_gradient(track_objective)

    def extra_gradient(self, track_objective: bool = True) -> bool:
        """Whether S(m) costs one more data gradient per step with this method.

        Args:
          track_objective: whether S(m) is tracked.

        Returns:
          True when S(m) is tracked and the method's scores do not give it.
        """
        return self.objective == OBJECTIVE_EXTRA and track_objective

    def check(self) -> Method:
        """Checks the record's fields agree with one another; returns it.

        Raises:
          ValueError: naming the field at fault.
        """
        if not callable(self.score):
            raise ValueError(f"method {self.name!r}: score must be callable")
        if self.default_steps < 1 or (not self.progressive and self.default_steps != 1):
            raise ValueError(f"method {self.name!r}: default_steps={self.default_steps}, but a "
                             "one-shot method takes 1 step and a progressive one >= 1")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"method {self.name!r}: objective={self.objective!r}; expected one "
                             f"of {OBJECTIVES}")
        if self.objective == OBJECTIVE_FREE and not self.needs_data:
            raise ValueError(f"method {self.name!r}: a score that gives S(m) for free reads data")
        return self


def _method(name, score, *, steps, data, revives, objective, synflow=False) -> Method:
    return Method(name=name, score=score, progressive=steps > 1, default_steps=steps,
                  needs_data=data, needs_synflow=synflow, revives=revives,
                  objective=objective).check()


METHODS: types.MappingProxyType[str, Method] = types.MappingProxyType({m.name: m for m in (
    _method("force", scores.force, steps=60, data=True, revives=True, objective=OBJECTIVE_FREE),
    _method("iter_snip", scores.iter_snip, steps=60, data=True, revives=False,
            objective=OBJECTIVE_FREE),
    _method("snip", scores.snip, steps=1, data=True, revives=True, objective=OBJECTIVE_FREE),
    _method("grasp_it", scores.grasp_it, steps=60, data=True, revives=False,
            objective=OBJECTIVE_FREE),
    _method("grasp", scores.grasp, steps=1, data=True, revives=True, objective=OBJECTIVE_FREE),
    _method("synflow", scores.synflow, steps=100, data=False, revives=False,
            objective=OBJECTIVE_EXTRA, synflow=True),
    _method("magnitude", scores.magnitude, steps=1, data=False, revives=True,
            objective=OBJECTIVE_EXTRA),
    _method("random", scores.random, steps=1, data=False, revives=True,
            objective=OBJECTIVE_EXTRA),
)})


def get(method: str | Method) -> Method:
    """The record of a method given by name (or a record, checked and returned).

    Args:
      method: a name in `METHODS`, or a `Method` built elsewhere.

    Returns:
      The `Method`.

    Raises:
      ValueError: for an unknown name, or a record whose fields disagree.
    """
    if isinstance(method, Method):
        return method.check()
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    return METHODS[method]


def names() -> tuple[str, ...]:
    """The names of the methods in the table, in table order."""
    return tuple(METHODS)
