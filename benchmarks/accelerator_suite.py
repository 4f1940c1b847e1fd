"""The whole pruning pipeline's measurements on one accelerator, in one bounded run.

Five parts, each timed, each written to the JSON file as soon as it ends (and
after every row inside it), so a run stopped by a time limit still leaves
every figure it reached:

1. ``masks``: FORCE and Iterative SNIP through ``force_jax.prune`` (T=60,
   batch 128, sparsity 0.995) on VGG-19 and ResNet-50: seconds per step
   (a timed second call over T), compile seconds (first call minus second),
   the step over one jitted masked gradient of the same loss, and memory
   against one training step: XLA's static buffer assignment of both programs
   on every backend, and the device allocator's high-water mark where there
   is one (see ``_device_memory`` for how far that one can be attributed).
2. ``selection``: exact top-k of 20 M and 25 M float32 scores (the 25 M full
   of ties): ``force_jax.core.topk.topk_masks`` against ``jax.lax.top_k``,
   sort-and-threshold and ``jax.lax.approx_max_k``; ms per call, whether each
   keeps topk.py's set, and approx_max_k's recall.
3. ``training``: images/s of the masked train step on VGG-19 at batch 128 and
   512 against the same optax step without the mask wrapper.
4. ``seeds``: masks per second pruning LeNet-5 and VGG-11 x0.25 (T=30) for
   S = 1, 8 and 32 seeds: one ``prune`` call after another, against one
   program (``force_jax.program.schedule`` under ``jax.vmap``), with whether
   the masks are equal.
5. ``end_to_end``: ``configs/default.py`` on the real Fashion-MNIST through
   ``train_and_evaluate``, when TensorFlow Datasets and ``--data-dir`` are
   there; test accuracy and wall seconds next to the CPU figure.

A part that fails is recorded as ``{"error": "Type: message"}`` and the suite
goes on; so does a model or case that fails inside a part. Each part has a
time budget, checked between its items, and the whole suite a time limit
(``--time-limit``, 480 s): a part that would start past it is recorded as
skipped. Parts 1-4 need only jax, flax, optax, numpy and this tree (no
ml_collections, TensorFlow or an installed force_jax), so they run on a bare
accelerator image; ``--quick`` runs everything with tiny settings on a CPU.

    python benchmarks/accelerator_suite.py --out-dir benchmarks/results \\
        --name accelerator_h200 --data-dir ../shared/datasets/tfds
    python benchmarks/accelerator_suite.py --quick --parts masks,selection
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import importlib.util
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

# The accelerator's copy of the tree has no installed force_jax: import this tree's
# (the script's own folder, for bench_utils, is already first on sys.path).
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(1, str(REPO_ROOT))

import bench_utils as bu  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import force_jax  # noqa: E402
from force_jax import optim  # noqa: E402
from force_jax.core import compile_options, losses, program, selection, topk  # noqa: E402
from force_jax.core import masks as masks_lib  # noqa: E402
from force_jax.core.methods import METHODS  # noqa: E402
from force_jax.training import steps as train_steps  # noqa: E402

PARTS = ("masks", "selection", "training", "seeds", "end_to_end")
# Models of the seeds part: name -> (registry name, constructor overrides, image shape).
SEED_MODELS: dict[str, tuple[str, dict[str, Any], tuple[int, int, int]]] = {
    "lenet5": ("lenet5", {}, (28, 28, 1)),
    "vgg11x0.25": ("vgg11", {"width_multiplier": 0.25}, (32, 32, 3)),
}
# The paper's optimiser (SGD, Nesterov momentum, coupled weight decay), as train_bench.py.
SGD = {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}
VMAPPED_NOTE = ("vmapped: force_jax.program.schedule under jax.vmap over params and keys, "
                "one program for S seeds; timed on its second call (the first compiles)")
# configs/default.py's docstring: the figure the end-to-end accuracy is read against.
CPU_REFERENCE = {
    "test_accuracy_mean": 0.865,
    "test_accuracy_std": 0.004,
    "seeds": "0-4",
    "note": "measured on the project's 2-core CPU (configs/default.py docstring), "
            "not on this device; a --quick run trains 20 steps and is not comparable",
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of every part; `FULL` for the accelerator, `QUICK` for a CPU smoke run.

    Attributes:
      mask_models: models of the masks part (keys of ``bench_utils.MODELS``).
      mask_methods: pruning methods of the masks part.
      mask_steps: pruning steps T of the masks part.
      mask_batch: pruning (and training-step) batch of the masks part.
      sparsity: sparsity of the masks part and of the selection's k.
      repeats: timed calls per figure after the compiling one (median).
      selection_sizes: score counts of the two selection cases (continuous, tied).
      selection_repeats: timed calls per selection figure.
      train_model: model of the training part.
      train_batches: batch sizes of the training part.
      train_steps: chained steps per timed window of the training part.
      seed_models: models of the seeds part (keys of ``SEED_MODELS``).
      seed_steps: pruning steps T of the seeds part.
      seed_counts: numbers of seeds S.
      seed_batch: pruning batch of the seeds part.
      seed_sparsity: sparsity of the seeds part (the default config's).
      budgets: seconds per part, checked between its items.
      time_limit: seconds for the whole suite.
    """

    mask_models: tuple[str, ...] = ("vgg19", "resnet50")
    mask_methods: tuple[str, ...] = ("force", "iter_snip")
    mask_steps: int = 60
    mask_batch: int = 128
    sparsity: float = 0.995
    repeats: int = 3
    selection_sizes: tuple[int, int] = (20_024_000, 25_000_000)
    selection_repeats: int = 10
    train_model: str = "vgg19"
    train_batches: tuple[int, ...] = (128, 512)
    train_steps: int = 20
    seed_models: tuple[str, ...] = ("lenet5", "vgg11x0.25")
    seed_steps: int = 30
    seed_counts: tuple[int, ...] = (1, 8, 32)
    seed_batch: int = 128
    seed_sparsity: float = 0.99
    # Guesses for an H200 (compiles dominate); they add up to 450 s < time_limit.
    budgets: tuple[tuple[str, float], ...] = (
        ("masks", 210.0), ("selection", 45.0), ("training", 75.0), ("seeds", 60.0),
        ("end_to_end", 60.0),
    )
    time_limit: float = 480.0


FULL = Settings()
QUICK = Settings(
    mask_models=("lenet5",), mask_steps=3, mask_batch=8, repeats=1,
    selection_sizes=(200_000, 200_000), selection_repeats=2,
    train_model="lenet5", train_batches=(8,), train_steps=2,
    # VGG-11 x0.25 would add about a minute of compiling on a 2-core CPU.
    seed_models=("lenet5",), seed_steps=3, seed_counts=(1, 2), seed_batch=8,
    # A loaded 2-core CPU compiles a LeNet-5 schedule in 10 to 40 s.
    budgets=(("masks", 300.0), ("selection", 120.0), ("training", 120.0), ("seeds", 300.0),
             ("end_to_end", 600.0)),
    time_limit=1800.0,
)


class Part:
    """One part's record in the payload, its deadline, and how it reports.

    Args:
      record: the part's dict inside the payload (filled in place).
      deadline: ``time.perf_counter()`` value after which no new item starts.
      save: writes the payload (called after every row).
    """

    def __init__(self, record: dict[str, Any], deadline: float, save: Callable[[], None]):
        self.record = record
        self.deadline = deadline
        self.save = save

    def over_budget(self) -> bool:
        """Whether the part's time is up (checked before each item)."""
        return time.perf_counter() > self.deadline

    def item(self, label: str, fn: Callable[[], list[dict[str, Any]]],
             columns: Sequence[str]) -> None:
        """Runs one item (a model, a case) unless over budget; records its rows or error.

        Args:
          label: what the item is, for the skip list and the error row.
          fn: returns the item's rows.
          columns: the table columns to print the rows with.
        """
        if self.over_budget():
            self.record.setdefault("skipped_items", []).append(label)
            print(f"  skipped {label}: part budget spent")
            return
        try:
            rows = fn()
        except Exception as exc:  # noqa: BLE001 - one failing item must not end the part
            rows = [{"item": label, "error": _error_text(exc)}]
            print(f"  {label} failed: {rows[0]['error']}")
            traceback.print_exc()
        self.record["rows"].extend(rows)
        bu.print_table(rows, columns)
        self.save()


def _error_text(exc: BaseException) -> str:
    """The exception as "Type: message", cut short (XLA's messages run to pages)."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 2000 else text[:2000] + " ..."


def _device_memory() -> dict[str, int] | None:
    """The device allocator's counters, or None where it keeps none (XLA:CPU).

    ``peak_bytes_in_use`` is a high-water mark over the whole process that
    cannot be reset, and on GPUs it also counts compile-time scratch
    (autotuning). A program's own peak is therefore known only when running
    it raised the mark (``_peak_of`` records whether it did); the static
    figures of ``bench_utils.compiled_memory`` have no such caveat.
    """
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - some backends raise instead of returning None
        return None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return {key: int(stats[key]) for key in ("bytes_in_use", "peak_bytes_in_use", "bytes_limit")
            if key in stats}


def _peak_of(fn: Callable[[], Any]) -> tuple[Any, dict[str, Any] | None]:
    """Runs ``fn`` (which blocks on its own results); its result and the mark it left.

    Returns:
      (fn's result, None where the device keeps no statistics, else the
      high-water mark after the call, the bytes in use before it, and whether
      the call raised the mark).
    """
    before = _device_memory()
    result = fn()
    after = _device_memory()
    if before is None or after is None:
        return result, None
    raised = after["peak_bytes_in_use"] > before["peak_bytes_in_use"]
    return result, {
        "peak_bytes_in_use": after["peak_bytes_in_use"],
        "bytes_in_use_before": before["bytes_in_use"],
        # Only then is the mark this call's own peak (live arrays from before included).
        "raised_the_mark": raised,
    }


def _train_state(model: Any, variables: Any, mask: Any, *, masked: bool) -> Any:
    """The train state of `train_step`: SGD wrapped in the mask, or the bare SGD.

    Both start from the same masked params, so the two programs do the same
    arithmetic but for the mask wrapper (what its cost is measured against).
    """
    inner = optim.make_optimizer("sgd", **SGD)
    tx = optim.masked_updates(inner, mask) if masked else inner
    return train_steps.create_train_state(model, variables, mask, tx)


def _compiled_train_step(state: Any, batch: dict) -> tuple[Any, float]:
    """The jitted train step (state donated) compiled ahead for ``state``; and its compile s."""
    start = time.perf_counter()
    jitted = compile_options.jit(train_steps.train_step, donate_argnums=0)
    compiled = jitted.lower(state, batch).compile()
    return compiled, time.perf_counter() - start


@functools.partial(jax.jit, static_argnums=1)
def _random_mask(params: Any, sparsity: float) -> Any:
    """A random mask of about (1 - sparsity) density on the prunable leaves.

    Bernoulli draws, not train_bench.py's top-k of random scores: the step's
    cost does not depend on which weights are kept, and a top-k would cost a
    selection compile for nothing. Jitted: one compile, not one per leaf shape.
    """
    mask = masks_lib.init_mask(params)
    leaves, treedef = jax.tree.flatten(mask)
    keys = jax.random.split(jax.random.key(0), len(leaves))
    return treedef.unflatten([
        jax.random.bernoulli(k, 1.0 - sparsity, m.shape) if masks_lib.is_prunable_leaf(m) else m
        for k, m in zip(keys, leaves)])


# ---------------------------------------------------------------- part 1: masks

MASK_COLUMNS = ("model", "method", "steps", "batch", "compile_s", "step_s", "masked_grad_s",
                "step_over_grad", "static_memory_ratio", "device_peak_ratio")


def part_masks(part: Part, settings: Settings, kernels: str) -> None:
    """Schedule cost of FORCE and Iterative SNIP through the public ``force_jax.prune``.

    prune_bench.py measures the step as (t(T=10) - t(T=2)) / 8 and imports
    ml_collections and the TFDS-bound training module at load time; the device
    image has neither, and this part wants the T=60 call itself, so it reuses
    bench_utils' pieces instead.

    Args:
      part: where the rows go.
      settings: sizes.
      kernels: the models' kernel choice (``force_jax.models.kernels``).
    """
    for name in settings.mask_models:
        setup: dict[str, Any] = {}  # built by the model's first item, shared by the others
        for method in settings.mask_methods:
            # One item per method, so the budget can stop between two schedules of a model.
            part.item(f"{name} {method}",
                      lambda name=name, method=method, setup=setup: [
                          _mask_row(_mask_setup(setup, name, settings, kernels), method,
                                    settings)],
                      MASK_COLUMNS)


def _mask_setup(cache: dict[str, Any], name: str, settings: Settings,
                kernels: str) -> dict[str, Any]:
    """A model's pieces and yardsticks for the masks part, built once (``cache``).

    A failed build is kept too, so the model's other items fail at once
    rather than build it again.
    """
    if "error" in cache:
        raise RuntimeError(f"setup of {name} failed earlier: {cache['error']}")
    if cache:
        return cache
    try:
        cache.update(_build_mask_setup(name, settings, kernels))
    except Exception as exc:
        cache["error"] = _error_text(exc)
        raise
    return cache


def _build_mask_setup(name: str, settings: Settings, kernels: str) -> dict[str, Any]:
    """Model, loss, data, the masked-gradient time and one training step's memory."""
    batch_size = settings.mask_batch
    model, variables, data = bu.build(name, batch_size, kernels=kernels)
    params = variables["params"]
    loss_fn = losses.classification_loss(model, variables)
    flags = masks_lib.prunable_flags(params)
    dense = masks_lib.dense_mask(params, flags)
    batch = jax.tree.map(lambda x: x[:batch_size], data)

    grad_fn = compile_options.jit(
        lambda p, m, b: jax.grad(loss_fn)(masks_lib.apply_mask(p, m), b))
    grad_s = bu.time_call(lambda: grad_fn(params, dense, batch), repeats=settings.repeats)

    # One plain training step at the same batch: the memory yardstick.
    state = _train_state(model, variables, dense, masked=True)
    compiled_step, _ = _compiled_train_step(state, batch)
    train_static = bu.compiled_memory(compiled_step)
    _, train_peak = _peak_of(lambda: bu.block(compiled_step(state, batch)))
    return {"name": name, "params": params, "data": data, "loss_fn": loss_fn, "flags": flags,
            "dense": dense, "grad_s": grad_s, "train_static": train_static,
            "train_peak": train_peak}


def _mask_row(setup: dict[str, Any], method: str, settings: Settings) -> dict[str, Any]:
    """One method's row on one model of the masks part."""
    batch_size, steps = settings.mask_batch, settings.mask_steps
    params, data, loss_fn = setup["params"], setup["data"], setup["loss_fn"]
    train_static, train_peak = setup["train_static"], setup["train_peak"]

    def run() -> Any:
        return force_jax.prune(loss_fn, params, data, method=method,
                               sparsity=settings.sparsity, steps=steps,
                               batch_size=batch_size, key=jax.random.key(1),
                               on_collapse="ignore")[0]

    start = time.perf_counter()
    mask = bu.block(run())
    first_s = time.perf_counter() - start
    # The timed calls after the compiling one: the step's cost and the schedule's peak.
    call_s, prune_peak = _peak_of(lambda: bu.time_call(run, repeats=settings.repeats, warmup=0))
    row: dict[str, Any] = {
        "model": setup["name"], "method": method, "steps": steps, "batch": batch_size,
        "sparsity": settings.sparsity, "kept": int(masks_lib.num_kept(mask)),
        "first_call_s": first_s, "call_s": call_s, "compile_s": first_s - call_s,
        "step_s": call_s / steps, "masked_grad_s": setup["grad_s"],
        "step_over_grad": call_s / steps / setup["grad_s"],
        "train_step_static_memory": train_static, "train_step_device_peak": train_peak,
        "device_peak": prune_peak,
    }
    row.update(_program_memory(method, loss_fn, params, data, setup["flags"], setup["dense"],
                               batch_size, steps, compile_s=first_s - call_s))
    if row["program_static_memory"] and train_static:
        row["static_memory_ratio"] = (row["program_static_memory"]["total_bytes"]
                                      / train_static["total_bytes"])
    if prune_peak and train_peak and prune_peak["raised_the_mark"] \
            and train_peak["raised_the_mark"]:
        # Otherwise one of the two peaks is not the program's own (compile-time scratch
        # or an earlier program set the mark): only the raw marks are kept.
        row["device_peak_ratio"] = (prune_peak["peak_bytes_in_use"]
                                    / train_peak["peak_bytes_in_use"])
    return row


def _program_memory(method: str, loss_fn: Callable, params: Any, data: Any,
                    flags: tuple[bool, ...], dense: Any, batch_size: int, steps: int, *,
                    compile_s: float) -> dict[str, Any]:
    """Static memory of the schedule program that ``prune`` just ran.

    Lowered with the arguments ``prune`` passes, the program is found in
    JAX's compilation cache (``aot_lookup_s`` near 0 s; so it is with JAX
    0.10). If a JAX version compiles it again instead, later rows skip this
    figure rather than pay a second compile each.
    """
    if _AOT_LOOKUP["recompiles"]:
        return {"program_static_memory": None,
                "program_memory_skipped": "lowering recompiled on this JAX (see earlier row)"}
    start = time.perf_counter()
    try:
        schedule = compile_options.outer_jit(program.schedule, static_argnums=0)
        counts = jnp.zeros((steps,), jnp.int32)
        pruner = program.Pruner(method, loss_fn, batch_size=batch_size)
        compiled = schedule.lower(pruner, params, data, counts, jax.random.key(1),
                                  dense).compile()
        memory = bu.compiled_memory(compiled)
    except Exception as exc:  # noqa: BLE001 - an optional figure
        return {"program_static_memory": None, "program_memory_error": _error_text(exc)}
    lookup_s = time.perf_counter() - start
    _AOT_LOOKUP["recompiles"] = lookup_s > max(2.0, 0.25 * compile_s)
    return {"program_static_memory": memory, "aot_lookup_s": lookup_s}


# Whether lowering the schedule compiled it again (set by the first lookup).
_AOT_LOOKUP = {"recompiles": False}


# ------------------------------------------------------------ part 2: selection

SELECTION_COLUMNS = ("case", "n", "k", "variant", "ms", "compile_s", "kept",
                     "same_set_as_topk_py", "recall")


# The library's selection off CPU, k traced as `prune` passes it.
_SORTED_MASKS = jax.jit(lambda x, k: selection.sorted_masks([x], k)[0])


def _selection_variants(k: int) -> dict[str, tuple[bool, Callable[[jax.Array], jax.Array]]]:
    """name -> (exact, fn(scores) -> bool mask of the kept scores), each jitted.

    Every variant returns the mask, as a pruner needs it; top_k's indices are
    scattered into one. topk.py gets k traced (as in ``prune``: one compile serves
    every k and, for equal sizes, every case), the others static.
    """

    def from_indices(x: jax.Array, idx: jax.Array) -> jax.Array:
        return jnp.zeros(x.shape, bool).at[idx].set(True)

    k_traced = jnp.int32(k)
    return {
        # topk_masks is jitted inside (no outer jit: it would recompile for every case).
        "topk_py": (True, lambda x: topk.topk_masks([x], k_traced)[0]),
        # The library's selection off CPU (force_jax.core.selection): one stable sort, k traced.
        "sorted_masks": (True, lambda x: _SORTED_MASKS(x, k_traced)),
        "lax_top_k": (True, jax.jit(lambda x: from_indices(x, jax.lax.top_k(x, k)[1]))),
        # Keeps every score tied with the k-th: more than k when ties straddle it.
        "sort_threshold": (True, jax.jit(lambda x: x >= jnp.sort(x)[x.size - k])),
        "approx_max_k": (False, jax.jit(
            lambda x: from_indices(x, jax.lax.approx_max_k(x, k, recall_target=0.95)[1]))),
    }


def part_selection(part: Part, settings: Settings) -> None:
    """Exact top-k selection of topk.py against lax.top_k, sort-and-threshold, approx_max_k.

    Args:
      part: where the rows go.
      settings: sizes.
    """
    import topk_bench  # sibling script: SNIP-like scores and the O(N) exactness check

    n_cont, n_tied = settings.selection_sizes
    keep = 1.0 - settings.sparsity
    cases = (("snip_like", n_cont, False), ("quantised_ties", n_tied, True))
    part.record["keep_fraction"] = keep
    for case, n, tied in cases:
        part.item(case, lambda c=case, n=n, t=tied: _selection_rows(
            topk_bench, c, n, t, keep, settings.selection_repeats), SELECTION_COLUMNS)


def _selection_rows(topk_bench: Any, case: str, n: int, tied: bool, keep: float,
                    repeats: int) -> list[dict[str, Any]]:
    """Rows of one selection case: every variant, checked against topk.py's mask."""
    (host,) = topk_bench.snip_like_scores([(n,)], seed=0)
    if tied:
        host = np.floor(host * 8) / 8  # steps of 1/8: thousands of scores tie at the k-th
    k = max(1, int(keep * n))
    kth = np.partition(host, n - k)[n - k]
    common = {"case": case, "n": n, "k": k, "ties_at_kth": int(np.sum(host == kth))}
    scores = jnp.asarray(host)
    rows, reference = [], None
    for variant, (exact, fn) in _selection_variants(k).items():
        start = time.perf_counter()
        mask = bu.block(fn(scores))
        first_s = time.perf_counter() - start
        seconds = bu.time_call(lambda fn=fn: fn(scores), repeats=repeats)
        row = {**common, "variant": variant, "exact": exact, "ms": seconds * 1e3,
               "compile_s": first_s - seconds, "kept": int(jnp.sum(mask))}
        if reference is None:  # topk.py's, checked in O(N) on the host
            topk_bench.check_exact([host], [mask], k)
            reference = mask
            row["checked_exact"] = True
        row["same_set_as_topk_py"] = bool(jnp.array_equal(mask, reference))
        row["recall"] = int(jnp.sum(mask & reference)) / k
        rows.append(row)
    return rows


# ------------------------------------------------------------- part 3: training

TRAIN_COLUMNS = ("model", "batch", "kind", "compile_s", "step_s", "images_per_s",
                 "masked_over_unmasked_time")


def part_training(part: Part, settings: Settings, kernels: str) -> None:
    """Images/s of the masked train step against the same optax step without the mask.

    train_bench.py builds its state through the TFDS-bound training module
    (absent on the device image) and blocks after every step; this part
    builds it from ``force_jax.training`` alone and times chained steps.

    Args:
      part: where the rows go.
      settings: sizes.
      kernels: the models' kernel choice.
    """
    part.record["sparsity"] = settings.sparsity
    for batch_size in settings.train_batches:
        part.item(f"{settings.train_model} batch {batch_size}",
                  lambda b=batch_size: _train_rows(settings, b, kernels), TRAIN_COLUMNS)


def _train_rows(settings: Settings, batch_size: int, kernels: str) -> list[dict[str, Any]]:
    """Masked and unmasked rows at one batch size, timed in alternating windows."""
    name = settings.train_model
    model, variables, data = bu.build(name, batch_size, examples=batch_size, kernels=kernels)
    mask = _random_mask(variables["params"], settings.sparsity)
    kinds = ("masked", "unmasked")
    states, compiled, compile_s = {}, {}, {}
    for kind in kinds:
        state = _train_state(model, variables, mask, masked=kind == "masked")
        compiled[kind], compile_s[kind] = _compiled_train_step(state, data)
        for _ in range(2):  # warm-up: first-run allocations and autotuned kernels
            state, _ = compiled[kind](state, data)
        states[kind] = bu.block(state)
    windows: dict[str, list[float]] = {kind: [] for kind in kinds}
    # Alternating windows, so drift (clocks, other load) hits both alike; steps chain
    # without a host sync, as in a training loop.
    for _ in range(settings.repeats):
        for kind in kinds:
            state = states[kind]
            start = time.perf_counter()
            for _ in range(settings.train_steps):
                state, _ = compiled[kind](state, data)
            states[kind] = bu.block(state)
            windows[kind].append((time.perf_counter() - start) / settings.train_steps)
    step_s = {kind: statistics.median(windows[kind]) for kind in kinds}
    return [{"model": name, "batch": batch_size, "kind": kind, "compile_s": compile_s[kind],
             "step_s": step_s[kind], "images_per_s": batch_size / step_s[kind],
             "masked_over_unmasked_time": step_s["masked"] / step_s["unmasked"]}
            for kind in kinds]


# ---------------------------------------------------------------- part 4: seeds

SEED_COLUMNS = ("model", "seeds", "steps", "first_call_s", "sequential_s",
                "sequential_masks_per_s", "vmapped_compile_s", "vmapped_s",
                "vmapped_masks_per_s", "vmapped_over_sequential_speed", "same_masks")


class SeedProblem(NamedTuple):
    """One model's seeds problem: its scoring loss, data pool and settings."""

    loss_fn: Callable[[Any, Any], jax.Array]
    data: dict[str, jax.Array]
    settings: Settings


# runner(problem, params per seed, key per seed) -> masks, all blocked on.
SeedRunner = Callable[[SeedProblem, Sequence[Any], Sequence[jax.Array]], list[Any]]


def prune_one_by_one(problem: SeedProblem, params: Sequence[Any],
                     keys: Sequence[jax.Array]) -> list[Any]:
    """S masks from S ``prune`` calls, one after another.

    Args:
      problem: the loss, pool and settings.
      params: each seed's initial params.
      keys: each seed's pruning key.

    Returns:
      The S masks, blocked on.
    """
    s = problem.settings
    return [bu.block(force_jax.prune(problem.loss_fn, p, problem.data, method="force",
                                     sparsity=s.seed_sparsity, steps=s.seed_steps,
                                     batch_size=s.seed_batch, key=k, on_collapse="ignore")[0])
            for p, k in zip(params, keys, strict=True)]


def prune_vmapped(problem: SeedProblem, params: Sequence[Any],
                  keys: Sequence[jax.Array]) -> list[Any]:
    """S masks from one program: the pooled schedule vmapped over params and keys.

    Args:
      problem: the loss, pool and settings.
      params: each seed's initial params.
      keys: each seed's pruning key.

    Returns:
      The S masks, blocked on.
    """
    s = problem.settings
    pruner = program.Pruner("force", problem.loss_fn, batch_size=s.seed_batch)
    counts = program.schedule_counts(params[0], sparsity=s.seed_sparsity, steps=s.seed_steps)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *params)
    masks, _ = _VMAPPED_SCHEDULE(pruner, stacked, problem.data, counts, jnp.stack(keys),
                                 force_jax.init_mask(params[0]))
    bu.block(masks)
    return [jax.tree.map(lambda x, i=i: x[i], masks) for i in range(len(params))]


# One jitted wrapper, so jax.jit's cache serves the timed call after the compiling one.
_VMAPPED_SCHEDULE = jax.jit(jax.vmap(program.schedule, in_axes=(None, 0, None, None, 0, None)),
                            static_argnums=0)
SEED_RUNNERS: dict[str, SeedRunner] = {"sequential": prune_one_by_one, "vmapped": prune_vmapped}


def part_seeds(part: Part, settings: Settings, kernels: str) -> None:
    """Masks per second for S seeds: FORCE on LeNet-5 and VGG-11 x0.25.

    Args:
      part: where the rows go.
      settings: sizes.
      kernels: the models' kernel choice.
    """
    part.record.update({"method": "force", "sparsity": settings.seed_sparsity,
                        "batch": settings.seed_batch, "runners": list(SEED_RUNNERS),
                        "vmapped_note": VMAPPED_NOTE})
    for name in settings.seed_models:
        part.item(name, lambda name=name: _seed_rows(name, settings, kernels), SEED_COLUMNS)


def _seed_model(name: str, batch_size: int, kernels: str) -> tuple[Any, Any, dict, Callable]:
    """(model, variables of seed 0, data pool, jitted seed -> params) for a SEED_MODELS name."""
    from force_jax import models as models_lib

    registry, overrides, shape = SEED_MODELS[name]
    model = models_lib.get_model(registry, bu.NUM_CLASSES, kernels=kernels, **overrides)
    dummy = jnp.zeros((1, *shape), jnp.float32)
    init = jax.jit(lambda key: model.init(key, dummy, train=False))
    k_img, k_lab = jax.random.split(jax.random.key(10_000))
    data = {"image": jax.random.normal(k_img, (2 * batch_size, *shape), jnp.float32),
            "label": jax.random.randint(k_lab, (2 * batch_size,), 0, bu.NUM_CLASSES)}
    return model, init(jax.random.key(0)), data, lambda seed: init(jax.random.key(seed))["params"]


def _same(first: Sequence[Any], second: Sequence[Any]) -> bool:
    """Whether two lists of masks are equal, leaf by leaf."""
    return all(bool(np.array_equal(np.asarray(x), np.asarray(y)))
               for a, b in zip(first, second, strict=True)
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _seed_rows(name: str, settings: Settings, kernels: str) -> list[dict[str, Any]]:
    """One row per seed count S for one model."""
    model, variables, data, init_params = _seed_model(name, settings.seed_batch, kernels)
    # One loss for every seed: only the params differ, so one compiled schedule serves all
    # (the loss reads only non-param collections from `variables`, equal at init).
    problem = SeedProblem(losses.classification_loss(model, variables), data, settings)
    start = time.perf_counter()
    prune_one_by_one(problem, [variables["params"]], [jax.random.key(0)])  # compiles
    first_s = time.perf_counter() - start
    rows = []
    for count in settings.seed_counts:
        params = [bu.block(init_params(seed)) for seed in range(count)]
        keys = [jax.random.key(seed) for seed in range(count)]
        row: dict[str, Any] = {"model": name, "seeds": count, "steps": settings.seed_steps,
                               "first_call_s": first_s}
        start = time.perf_counter()
        sequential = prune_one_by_one(problem, params, keys)
        row["sequential_s"] = time.perf_counter() - start
        start = time.perf_counter()
        prune_vmapped(problem, params, keys)  # compiles for this S
        row["vmapped_compile_s"] = time.perf_counter() - start
        start = time.perf_counter()
        vmapped = prune_vmapped(problem, params, keys)
        row["vmapped_s"] = time.perf_counter() - start
        for runner in SEED_RUNNERS:
            row[f"{runner}_masks_per_s"] = count / row[f"{runner}_s"]
        row["vmapped_over_sequential_speed"] = row["sequential_s"] / row["vmapped_s"]
        row["same_masks"] = _same(sequential, vmapped)
        rows.append(row)
    return rows


# ----------------------------------------------------------- part 5: end to end

E2E_COLUMNS = ("config", "num_steps", "prune_steps", "test_accuracy", "wall_s")


def _end_to_end_missing(data_dir: str | None) -> str | None:
    """Why the end-to-end part cannot run here, or None."""
    missing = [m for m in ("ml_collections", "tensorflow", "tensorflow_datasets")
               if importlib.util.find_spec(m) is None]
    if missing:
        return f"not importable: {', '.join(missing)}"
    if not data_dir:
        return "no --data-dir given"
    if not (Path(data_dir) / "fashion_mnist").is_dir():
        return f"no fashion_mnist folder under --data-dir {data_dir}"
    return None


def part_end_to_end(part: Part, settings: Settings, data_dir: str | None, quick: bool) -> None:
    """configs/default.py on the real Fashion-MNIST: test accuracy and wall seconds.

    Args:
      part: where the rows go.
      settings: unused (the config says everything); kept for the common signature.
      data_dir: the TFDS folder holding fashion_mnist.
      quick: 20 train steps, 3 pruning steps, 2 evaluation batches.
    """
    del settings
    part.record["cpu_reference"] = CPU_REFERENCE
    reason = _end_to_end_missing(data_dir)
    if reason:
        part.record["skipped"] = reason
        print(f"  skipped: {reason}")
        return
    part.item("default", lambda: _end_to_end_rows(str(data_dir), quick), E2E_COLUMNS)


def _end_to_end_rows(data_dir: str, quick: bool) -> list[dict[str, Any]]:
    """Runs train_and_evaluate on the default config in a temporary workdir."""
    from configs import default
    from force_jax.commands import train

    config = default.get_config()
    config.data.data_dir = str(Path(data_dir).resolve())
    if quick:
        config.train.num_steps, config.prune.steps, config.eval_max_batches = 20, 3, 2
    workdir = tempfile.mkdtemp(prefix="accelerator_suite_")
    try:
        start = time.perf_counter()
        final = train.train_and_evaluate(config, workdir)
        wall_s = time.perf_counter() - start
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return [{"config": "configs/default.py", "num_steps": config.train.num_steps,
             "prune_steps": config.prune.steps, "eval_max_batches": config.eval_max_batches,
             "test_accuracy": final.get("test_accuracy"), "wall_s": wall_s,
             "final_metrics": final}]


# -------------------------------------------------------------------- the suite


def _run_part(payload: dict[str, Any], name: str, fn: Callable[[Part], None], budget: float,
              suite_deadline: float, save: Callable[[], None]) -> None:
    """Runs one part inside its budget; a failure becomes its record's "error"."""
    record: dict[str, Any] = {"rows": []}
    payload["parts"][name] = record
    left = suite_deadline - time.perf_counter()
    # end_to_end cannot stop half-way: it starts only with its whole budget left.
    needed = budget if name == "end_to_end" else 1.0
    if left < needed:
        record["skipped"] = f"suite time limit: {left:.0f} s left, {needed:.0f} s needed"
        print(f"\n== {name}: skipped ({record['skipped']})")
        save()
        return
    record["budget_s"] = min(budget, left)
    print(f"\n== {name} (budget {record['budget_s']:.0f} s)", flush=True)
    start = time.perf_counter()
    try:
        fn(Part(record, start + record["budget_s"], save))
    except Exception as exc:  # noqa: BLE001 - the suite goes on to the next part
        record["error"] = _error_text(exc)
        print(f"  {name} failed: {record['error']}")
        traceback.print_exc()
    record["seconds"] = time.perf_counter() - start
    # No jax.clear_caches() here: it clears JAX's caches too, and the next
    # part would compile every eager op of its model's init again (half a minute on a
    # busy CPU). The few programs kept hold a few hundred MB at most.
    gc.collect()
    save()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The suite's flags.

    Args:
      argv: command-line arguments (default: sys.argv[1:]).

    Returns:
      The parsed flags.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings, for a CPU")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"some of {','.join(PARTS)}")
    parser.add_argument("--out-dir", default=None, help="default: benchmarks/results")
    parser.add_argument("--name", default="accelerator_suite", help="JSON file name")
    parser.add_argument("--data-dir", default=None,
                        help="TFDS folder with fashion_mnist (end_to_end only)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="seconds for the whole suite (default 480; --quick 1800)")
    parser.add_argument("--kernels", default="auto", choices=("auto", "cpu", "plain"),
                        help="the models' kernels; auto picks by backend")
    parser.add_argument("--mask-methods", default=None,
                        help="methods of the masks part (default force,iter_snip)")
    parser.add_argument("--seed-models", default=None,
                        help=f"models of the seeds part, of {','.join(SEED_MODELS)}")
    parser.add_argument("--seed-counts", default=None,
                        help="numbers of seeds S of the seeds part (default 1,8,32)")
    parser.add_argument("--seed-steps", type=int, default=None,
                        help="pruning steps T of the seeds part (default 30)")
    args = parser.parse_args(argv)
    for flag, given, known in (("--parts", args.parts, PARTS),
                               ("--mask-methods", args.mask_methods, tuple(METHODS)),
                               ("--seed-models", args.seed_models, tuple(SEED_MODELS))):
        unknown = set(bu.csv_list(given or "")) - set(known)
        if unknown:
            parser.error(f"{flag}: unknown {sorted(unknown)}; choose from {','.join(known)}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the chosen parts; returns the payload (also written after every part).

    Args:
      argv: command-line arguments (default: sys.argv[1:]).

    Returns:
      The JSON payload.
    """
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    overrides: dict[str, Any] = {}
    if args.time_limit is not None:
        overrides["time_limit"] = args.time_limit
    if args.mask_methods:
        overrides["mask_methods"] = tuple(bu.csv_list(args.mask_methods))
    if args.seed_models:
        overrides["seed_models"] = tuple(bu.csv_list(args.seed_models))
    if args.seed_counts:
        overrides["seed_counts"] = tuple(bu.csv_list(args.seed_counts, int))
    if args.seed_steps:
        overrides["seed_steps"] = args.seed_steps
    settings = dataclasses.replace(settings, **overrides)
    parts = [p for p in PARTS if p in bu.csv_list(args.parts)]
    start = time.perf_counter()
    deadline = start + settings.time_limit
    info = bu.machine_info()
    payload: dict[str, Any] = {
        "suite": "accelerator_suite", "quick": args.quick, "parts_requested": parts,
        # Also inside "machine"; at the top so the device is read at a glance.
        "device_kind": info["device_kind"], "backend": info["backend"],
        "jax_version": info["jax_version"], "jaxlib_version": info["jaxlib_version"],
        "device_memory_at_start": _device_memory(), "kernels": args.kernels,
        "force_jax_dir": str(Path(force_jax.__file__).parent),  # this tree's, not an install
        "settings": dataclasses.asdict(settings), "timing": "median wall seconds",
        "parts": {}, "complete": False,
    }

    def save() -> None:
        payload["elapsed_s"] = time.perf_counter() - start
        payload["process_peak_memory"] = bu.peak_memory()
        bu.write_results(args.name, payload, args.out_dir)

    print(f"accelerator suite on {info['device_kind']} ({info['backend']}), jax "
          f"{info['jax_version']}, parts {','.join(parts)}, limit {settings.time_limit:.0f} s")
    save()
    budgets = dict(settings.budgets)
    runners: dict[str, Callable[[Part], None]] = {
        "masks": lambda p: part_masks(p, settings, args.kernels),
        "selection": lambda p: part_selection(p, settings),
        "training": lambda p: part_training(p, settings, args.kernels),
        "seeds": lambda p: part_seeds(p, settings, args.kernels),
        "end_to_end": lambda p: part_end_to_end(p, settings, args.data_dir, args.quick),
    }
    for name in parts:
        _run_part(payload, name, runners[name], budgets[name], deadline, save)
    payload["complete"] = True
    save()
    _print_summary(payload)
    path = Path(args.out_dir or bu.RESULTS_DIR) / f"{args.name}.json"
    print(f"\nwrote {path} after {payload['elapsed_s']:.1f} s")
    return payload


def _print_summary(payload: dict[str, Any]) -> None:
    """Every part's rows again, as one table each, and the parts that did not run."""
    columns = {"masks": MASK_COLUMNS, "selection": SELECTION_COLUMNS,
               "training": TRAIN_COLUMNS, "seeds": SEED_COLUMNS, "end_to_end": E2E_COLUMNS}
    print(f"\n==== summary: {payload['device_kind']} ({payload['backend']}), "
          f"jax {payload['jax_version']}")
    for name, record in payload["parts"].items():
        failed = [row for row in record["rows"] if "error" in row]
        status = (record.get("error") or record.get("skipped")
                  or (f"{len(failed)} item(s) failed" if failed else "ok"))
        seconds = record.get("seconds", 0.0)
        print(f"\n-- {name}: {status} ({seconds:.1f} s)")
        rows = [row for row in record["rows"] if "error" not in row]
        if rows:
            bu.print_table(rows, columns[name])
        for row in failed:
            print(f"   {row['item']} failed: {row['error']}")
        for label in record.get("skipped_items", []):
            print(f"   skipped {label}: part budget spent")
    print(f"\ntotal {payload['elapsed_s']:.1f} s")


if __name__ == "__main__":
    main()
