"""Every key of a run's config, in one declarative table.

Each `Key` says what the key accepts (checked on its own, before any rule
that relates several keys), what it means, whether it defines the run (a
rerun in the same workdir must keep it) and, for a key added after runs
were recorded, the value that reproduces those runs. From this one table:

- `force_jax.config.validate` checks every value of a config;
- the workdir's config guard (`force_jax.runs.workdir`) knows which keys
  define a run and how to read an older config.json;
- the commands' `--help` lists the keys, and docs/configs.md holds the
  table `markdown_table` writes (a test keeps the page current:
  `python -m force_jax.runs.keys` prints it).

Rules between keys (the pool against the batch size, momentum against the
optimizer, the method's own options, the warmup against the run's length)
are functions in `force_jax.config.validate`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections

from force_jax import models, optim
from force_jax.core import allocation, losses, methods, sanity, schedules

NOT_ADDED = object()  # a key every recorded run has
# The ways a mask may change during training (`force_jax.config.mask_changes`).
MASK_CHANGES = ("none", "gmp", "set", "rigl")


@dataclasses.dataclass(frozen=True)
class Key:
    """One config key.

    Attributes:
      name: the dotted key ("prune.sparsity").
      accepts: whether a value is acceptable on its own; None where a rule of
        `force_jax.config.validate` (or the method's options) checks it.
      expected: what it accepts, as an error and the docs say it; or a
        function of the config giving that text.
      meaning: what it does, in one line.
      defines_run: a rerun in the same workdir must keep it (False for where
        the data is read from, how devices are laid out, how evaluation is
        batched).
      added: for a key added after runs were recorded, the value that
        reproduces them (an older config.json lacks the key); NOT_ADDED otherwise.
    """

    name: str
    accepts: Callable[[Any], bool] | None
    expected: str | Callable[[ml_collections.ConfigDict], str]
    meaning: str
    defines_run: bool = True
    added: Any = NOT_ADDED

    def expected_for(self, config: ml_collections.ConfigDict | None = None) -> str:
        """What the key accepts, worded for this config where the wording depends on it."""
        if callable(self.expected):
            return self.expected(config)
        return self.expected


def integer(value: Any, lowest: int | None = None) -> bool:
    """An int (not a bool), at least `lowest` where given."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    return ok and (lowest is None or value >= lowest)


def finite(value: Any) -> bool:
    """A real number (not a bool) that is neither NaN nor infinite."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(
        value)


def _one_of(choices: Sequence[str] | Callable[[], Sequence[str]],
            ) -> tuple[Callable[[Any], bool], str | Callable[[Any], str]]:
    """(accepts, expected) of a key that takes one of `choices`; a callable is read at each
    check, for a table that may grow (the methods)."""
    if callable(choices):
        return (lambda value: isinstance(value, str) and value in choices(),
                lambda _config: f"one of {', '.join(choices())}")
    return (lambda value: isinstance(value, str) and value in choices,
            f"one of {', '.join(choices)}")


def _sparsity(value: Any) -> bool:
    try:
        schedules.check_sparsity(value)
    except (TypeError, ValueError):
        return False
    return True


def _steps_expected(config: ml_collections.ConfigDict | None) -> str:
    text = "an integer >= 1 (in a config file, None means the method's default"
    method = None if config is None else config.prune.get("method")
    if method in methods.METHODS:
        return f"{text}: {methods.get(method).default_steps} for {method})"
    return text + ")"


def _boundaries(value: Any) -> bool:
    return (isinstance(value, tuple | list) and all(finite(b) and b >= 0 for b in value)
            and list(value) == sorted(set(value)))


def _flag(name: str, meaning: str, *, optional: bool = False, **kwargs) -> Key:
    accepts = (lambda v: isinstance(v, bool) or v is None) if optional else (
        lambda v: isinstance(v, bool))
    expected = "True or False" + (" (or None: the default)" if optional else "")
    return Key(name, accepts, expected, meaning, **kwargs)


_METHOD = _one_of(methods.names)
_SCHEDULE = _one_of(schedules.SCHEDULES)
_LOSS = _one_of(losses.SCORING_LOSSES)
_ABLATION = _one_of(sanity.ABLATIONS)
_SCOPE = _one_of(allocation.SCOPES)
_MODEL = _one_of(models.model_names())
_KERNELS = _one_of(models.kernels.KERNELS)
_OPTIMIZER = _one_of(optim.OPTIMIZERS)
_CHANGES = _one_of(MASK_CHANGES)

KEYS: tuple[Key, ...] = (
    Key("seed", integer, "an integer", "initialisation, pruning batches and data order"),
    Key("data.name", lambda v: isinstance(v, str) and bool(v), "a TFDS dataset name",
        "the TFDS dataset, with its version (fashion_mnist:3.0.1)"),
    Key("data.data_dir", lambda v: v is None or isinstance(v, str),
        "a folder or gs:// URL (None: TFDS's default)", "where the prepared TFDS data is",
        defines_run=False),
    Key("data.validation_fraction", lambda v: finite(v) and 0 <= v < 1, "a fraction in [0, 1)",
        "the part of the training split held out for validation"),
    _flag("data.augment", "random crops and flips in training (None: the dataset's default)",
          optional=True),
    _flag("data.download", "let TFDS download a missing dataset", defines_run=False),
    Key("model.name", *_MODEL, "the network"),
    Key("model.width_multiplier", lambda v: finite(v) and v > 0,
        "a finite number > 0 (1 is the published width)",
        "channels of every layer times this (where a config sets it)"),
    Key("model.kernels", *_KERNELS, "convolution kernels: cpu rewrites, plain, or auto",
        added="auto"),
    Key("prune.method", *_METHOD, "the pruning method"),
    Key("prune.sparsity", _sparsity, "a fraction removed in [0, 1)",
        "the fraction of prunable weights removed"),
    Key("prune.steps", lambda v: v is None or integer(v, 1), _steps_expected,
        "pruning steps (None: the method's default)"),
    Key("prune.schedule", *_SCHEDULE, "how the kept fraction anneals over the steps"),
    Key("prune.batch_size", lambda v: integer(v, 1), "an integer >= 1",
        "examples per pruning micro-batch"),
    Key("prune.batches_per_step", lambda v: integer(v, 1), "an integer >= 1",
        "micro-batches whose gradients a step averages"),
    Key("prune.pool_size", None, "0 (fresh batches streamed from the training split) or an "
        "integer >= prune.batch_size * micro-batches per step",
        "training examples the pruning batches are drawn from (0: a stream)"),
    _flag("prune.augment", "augment streamed pruning batches (pool_size 0 only)", added=False),
    Key("prune.scoring_loss", *_LOSS, "the loss the scores differentiate"),
    Key("prune.temperature", lambda v: finite(v) and v > 0,
        "a finite number > 0 (the logits are divided by it; 1 leaves them as they are)",
        "the logits are divided by it in the scoring loss"),
    Key("prune.on_collapse", lambda v: v in ("warn", "raise", "ignore"),
        "warn, raise or ignore", "what to do when a layer keeps no weight"),
    Key("prune.layer_floor", lambda v: integer(v, 0),
        "an integer >= 0 (weights every prunable layer keeps at each step; 0: no floor)",
        "weights every prunable layer keeps at each step", added=0),
    Key("prune.scope", *_SCOPE, "global ranking (the paper's) or per-layer counts",
        added="global"),
    Key("prune.allocation", lambda v: isinstance(v, str),
        "one of uniform, erk, er or 'layer:density,...'",
        "how the layer-wise scope shares the sparsity", added=""),
    Key("prune.ablation", *_ABLATION, "a sanity check of the mask, the weights or the data",
        added="none"),
    Key("prune.prospr.inner_steps", None, "an integer >= 1", "ProsPr's inner SGD steps",
        added=3),
    Key("prune.prospr.inner_lr", None, "a finite number > 0", "ProsPr's inner learning rate",
        added=0.1),
    Key("prune.prospr.inner_momentum", None, "a number in [0, 1)", "ProsPr's inner momentum",
        added=0.0),
    Key("prune.prospr.first_order", None, "True or False",
        "ProsPr without the second-order term", added=False),
    Key("prune.prospr.new_data", None, "True or False",
        "ProsPr draws new batches in the inner loop", added=True),
    Key("prune.ntk_sap.epsilon", None, "a finite number > 0",
        "NTK-SAP's weight perturbation", added=0.01),
    Key("prune.ntk_sap.samples", None, "an integer >= 1",
        "NTK-SAP's re-initialisations per step", added=5),
    Key("prune.ntk_sap.noise_batch", None, "an integer >= 1",
        "NTK-SAP's noise inputs per sample", added=100),
    Key("train.batch_size", lambda v: integer(v, 1), "an integer >= 1", "training batch size"),
    Key("train.num_epochs", lambda v: finite(v) and v > 0, "> 0 (a finite number of epochs)",
        "epochs of training"),
    Key("train.num_steps", lambda v: v is None or integer(v, 1),
        "an integer >= 1 (in a config file, None trains train.num_epochs epochs)",
        "optimizer steps (None: from num_epochs)"),
    Key("train.optimizer", *_OPTIMIZER, "the optimizer, always mask-wrapped", added="sgd"),
    Key("train.momentum", None, ">= 0, and > 0 with train.nesterov=True (a finite number)",
        "SGD's momentum; b1 of adamw and lamb"),
    _flag("train.nesterov", "Nesterov momentum (sgd and adamw)"),
    Key("train.weight_decay", lambda v: finite(v) and v >= 0, ">= 0 (a finite number)",
        "weight decay"),
    Key("train.lr_schedule.name", lambda v: v in ("cosine", "step"), "cosine or step",
        "the learning-rate schedule"),
    Key("train.lr_schedule.base_lr", lambda v: finite(v) and v > 0, "a finite number > 0",
        "the peak learning rate"),
    Key("train.lr_schedule.warmup_epochs", None, ">= 0, and 0 with the step schedule",
        "linear warmup, in epochs"),
    Key("train.lr_schedule.boundaries", _boundaries,
        "a tuple of epochs >= 0 (finite numbers) in increasing order, e.g. (150, 250)",
        "epochs at which the step schedule multiplies the rate by factor"),
    Key("train.lr_schedule.factor", lambda v: finite(v) and v > 0,
        "a finite number > 0 (the rate is multiplied by it at each boundary)",
        "the step schedule's factor"),
    Key("train.mask_changes.method", *_CHANGES, "a mask that changes during training",
        added="none"),
    Key("train.mask_changes.sparsity", None, "the final sparsity of gradual pruning, in (0, 1)",
        "gmp: the sparsity it prunes to", added=None),
    Key("train.mask_changes.scope", None, "global or layerwise",
        "gmp: global or per-layer magnitude", added="global"),
    Key("train.mask_changes.drop_fraction", None, "a fraction in (0, 1)",
        "set, rigl: the fraction rewired (decays along a cosine)", added=0.3),
    Key("train.mask_changes.start", None, "an integer >= 0",
        "the first step that may change the mask", added=0),
    Key("train.mask_changes.end", None, "an integer >= mask_changes.start, or None",
        "the last step that may change it (None: 3/4 of the run)", added=None),
    Key("train.mask_changes.every", None, "an integer >= 1", "steps between changes",
        added=100),
    Key("lottery.rounds", lambda v: integer(v, 0), "an integer >= 0",
        "pruning rounds after the dense one (python -m force_jax.lottery)", added=0),
    Key("lottery.rewind_step", lambda v: integer(v, -1), "a step >= 0, or -1 (no rewinding)",
        "the step the kept weights are rewound to", added=0),
    Key("mesh.num_devices", lambda v: integer(v) and (v == -1 or v >= 1),
        "-1 (every device) or an integer >= 1", "devices of the data axis",
        defines_run=False),
    _flag("mesh.fsdp", "shard large params and optimizer state over the data axis",
          defines_run=False),
    _flag("distributed", "jax.distributed.initialize() for multi-process runs",
          defines_run=False),
    Key("cluster.coordinator_address", lambda v: isinstance(v, str), "host:port or ''",
        "process 0's address", defines_run=False),
    Key("cluster.num_processes", lambda v: integer(v, 0), "an integer >= 1 (0: unset)",
        "processes of the run", defines_run=False),
    Key("cluster.process_id", lambda v: integer(v, -1), "an integer >= 0 (-1: unset)",
        "this process's index", defines_run=False),
    Key("cluster.initialization_timeout", lambda v: integer(v, 1),
        "an integer number of seconds > 0", "seconds to wait for every process",
        defines_run=False),
    Key("eval_batch_size", lambda v: integer(v, 1), "an integer >= 1",
        "examples per evaluation batch", defines_run=False),
    Key("eval_every_steps", integer, "an integer (<= 0: once per epoch)",
        "steps between evaluations"),
    Key("eval_max_batches", integer, "an integer (<= 0: the whole split)",
        "evaluation batches per split", defines_run=False),
)
BY_NAME = {key.name: key for key in KEYS}


def non_defining() -> tuple[str, ...]:
    """The keys that change neither a run's result nor what its numbers mean.

    Returns:
      Their names, and "sweep" (a sweep's grid: each cell records its own config).
    """
    return (*(key.name for key in KEYS if not key.defines_run), "sweep")


def added_keys() -> dict[str, Any]:
    """The keys added after runs were recorded, each with the value that reproduces them.

    Returns:
      A dict from key name to value.
    """
    return {key.name: key.added for key in KEYS if key.added is not NOT_ADDED}


def markdown_table() -> str:
    """The table of every key, as docs/configs.md holds it.

    Returns:
      A markdown table: key, what it accepts, whether it defines the run, meaning.
    """
    rows = ["| key | accepts | defines the run | meaning |", "| --- | --- | --- | --- |"]
    for key in KEYS:
        expected = key.expected_for(None).replace("|", "\\|")
        rows.append(f"| `{key.name}` | {expected} | {'yes' if key.defines_run else 'no'} | "
                    f"{key.meaning} |")
    return "\n".join(rows) + "\n"


def help_lines() -> str:
    """The keys as --help lists them: one line each, the key and what it accepts.

    Returns:
      The lines, joined.
    """
    width = max(len(key.name) for key in KEYS)
    return "\n".join(f"  --config.{key.name:<{width}}  {key.expected_for(None)}" for key in KEYS)


if __name__ == "__main__":
    print(markdown_table(), end="")
