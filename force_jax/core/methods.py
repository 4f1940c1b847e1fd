"""The pruning methods as data: one `Method` record per method, in one table.

Everything that depends on a method (the pruning program, config validation,
the sweep) reads its record, never its name. Adding a method is one score
function (see `force_jax.core.scores`) and one entry here; a record built
elsewhere can also be passed to `force_jax.prune` directly.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from typing import NamedTuple

from force_jax.core import ntk_sap, phew, prospr, scores

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
      batches_per_step: the micro-batches a step of this method uses one by
        one (ProsPr: its inner steps and meta-loss); 0: any number, whose
        gradients are averaged.
      needs_probe: its scores need a `force_jax.core.scores.Probe` of the
        network (NTK-SAP runs it on noise, PHEW walks its layers in order).
    """

    name: str
    score: Callable[[scores.StepInputs], scores.Scores]
    progressive: bool
    default_steps: int
    needs_data: bool
    needs_synflow: bool
    revives: bool
    objective: str
    batches_per_step: int = 0
    needs_probe: bool = False

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
        if self.batches_per_step < 0 or (self.batches_per_step and not self.needs_data):
            raise ValueError(f"method {self.name!r}: batches_per_step={self.batches_per_step} "
                             "must be >= 0, and > 0 only for a method that reads data")
        return self


def _method(name, score, *, steps, data, revives, objective, synflow=False, batches=0,
            probe=False) -> Method:
    return Method(name=name, score=score, progressive=steps > 1, default_steps=steps,
                  needs_data=data, needs_synflow=synflow, revives=revives,
                  objective=objective, batches_per_step=batches, needs_probe=probe).check()


def prospr_method(**options) -> Method:
    """ProsPr with these options (`force_jax.core.prospr.ProsPrScore`'s fields).

    Args:
      **options: inner_steps, inner_lr, inner_momentum, first_order, new_data.

    Returns:
      The `Method` named "prospr"; equal options give equal records.

    Raises:
      ValueError: for an unknown option or one out of range, naming it.
    """
    score = prospr.ProsPrScore(**_known(prospr.ProsPrScore, "prospr", options))
    return _method("prospr", score, steps=1, data=True, revives=True,
                   objective=OBJECTIVE_EXTRA, batches=score.batches_per_step)


def ntk_sap_method(**options) -> Method:
    """NTK-SAP with these options (`force_jax.core.ntk_sap.NtkSapScore`'s fields).

    Args:
      **options: epsilon, samples, noise_batch.

    Returns:
      The `Method` named "ntk_sap" (20 steps by default, the official
      CIFAR-10 recipe's iterations).

    Raises:
      ValueError: for an unknown option or one out of range, naming it.
    """
    score = ntk_sap.NtkSapScore(**_known(ntk_sap.NtkSapScore, "ntk_sap", options))
    return _method("ntk_sap", score, steps=20, data=False, revives=False,
                   objective=OBJECTIVE_EXTRA, probe=True)


def phew_method(**options) -> Method:
    """PHEW with these options (`force_jax.core.phew.PhewScore`'s fields).

    Args:
      **options: weighting, walks_per_chunk, max_chunks_per_weight.

    Returns:
      The `Method` named "phew" (one shot, data-free).

    Raises:
      ValueError: for an unknown option or one out of range, naming it.
    """
    score = phew.PhewScore(**_known(phew.PhewScore, "phew", options))
    return _method("phew", score, steps=1, data=False, revives=False, objective=OBJECTIVE_EXTRA,
                   probe=True)


def _known(score_type, name: str, options: dict) -> dict:
    fields = {f.name for f in dataclasses.fields(score_type)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(f"{name} has no option {unknown[0]!r}; its options are "
                         f"{', '.join(sorted(fields))}")
    return options


# The methods that take options, and the function that builds each one's record.
WITH_OPTIONS: types.MappingProxyType[str, Callable[..., Method]] = types.MappingProxyType({
    "prospr": prospr_method, "ntk_sap": ntk_sap_method, "phew": phew_method})


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
    prospr_method(),
    ntk_sap_method(),
    phew_method(),
)})


def get(method: str | Method, **options) -> Method:
    """The record of a method given by name (or a record, checked and returned).

    Args:
      method: a name in `METHODS`, or a `Method` built elsewhere.
      **options: options of a method in `WITH_OPTIONS` (ProsPr's inner_lr...);
        none for the others.

    Returns:
      The `Method`.

    Raises:
      ValueError: for an unknown name, an option the method does not take or
        one out of range, or a record whose fields disagree.
    """
    if isinstance(method, Method):
        if options:
            raise ValueError(f"options {sorted(options)} given with a Method record: build the "
                             "record with them instead")
        return method.check()
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if options:
        if method not in WITH_OPTIONS:
            raise ValueError(f"method {method!r} takes no options (got {', '.join(sorted(options))}"
                             f"); the methods with options are {', '.join(WITH_OPTIONS)}")
        return WITH_OPTIONS[method](**options)
    return METHODS[method]


def names() -> tuple[str, ...]:
    """The names of the methods in the table, in table order."""
    return tuple(METHODS)
