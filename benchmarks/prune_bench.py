"""Cost of the one-program pruning schedules (FORCE, Iterative SNIP, SynFlow).

For each model and batch size: compile time of the schedule program, the
marginal time per pruning step (from T=2 and T=12 runs: (t12 - t2) / 10, so
compile, dispatch and the final objective evaluation cancel), its split into
the masked score gradient, the saliency, the exact top-k selection and the
step's bookkeeping (finite check, revived count, per-layer counts, S(m)),
each jitted and timed alone, the overhead ratio (step / one masked
gradient), memory, and the number of compilations after two sparsity
levels (must be 1). Every time is the median of --repeats calls (default 15),
and the JSON keeps each figure's spread (max / min of its calls). The T=2
and T=12 schedules and the masked gradient take turns within each round,
and the overhead ratio is the median of the rounds' own ratios, so a load
that changes between rounds moves the step and the gradient together.

Memory on CPU: the device allocator reports nothing, so the JSON holds XLA's
static buffer assignment (``compiled.memory_analysis()``: arguments + outputs
- aliases + temporaries) of the FORCE program and of one plain training step,
plus the process max RSS.

    python benchmarks/prune_bench.py                       # full set
    python benchmarks/prune_bench.py --models vgg19 --batch-sizes 32 --methods force
    python benchmarks/prune_bench.py --plain-conv          # lax conv on 2x2 maps too
    python benchmarks/prune_bench.py --quick --models lenet5
    python benchmarks/prune_bench.py --kernels plain  # plain Flax convs and pools
"""

from __future__ import annotations

import time
from typing import Any

import bench_utils as bu
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

SPARSITIES = (0.9, 0.99)
LONG_STEPS = 60
SHORT_T, LONG_T = 2, 12  # the marginal step is (t(LONG_T) - t(SHORT_T)) / (LONG_T - SHORT_T)
# Paired rounds per figure: with 15, two runs' FORCE overhead ratios on VGG-19 at batch 32
# agreed within 3 % (benchmarks/RESULTS.md); 7 calls per figure, unpaired, read 10 % apart.
REPEATS = 15


def _bookkeeping(params, grads, scores, mask, new_mask):
    """What a step computes besides its gradient, saliency and selection."""
    from force_jax.core import masks, step_stats

    return (step_stats.all_finite(scores, mask), masks.num_kept(
        jax.tree.map(lambda a, b: a & ~b, new_mask, mask)), step_stats.layer_kept(new_mask),
        step_stats.objective_of(params, grads, mask))


def _train_step_memory(model, variables, data, batch_size: int) -> dict | None:
    """Static memory of one jitted plain training step (masked SGD, donated state)."""
    from force_jax.config import training_setup
    from force_jax.core import compile_options, masks
    from force_jax.training import steps as train_steps

    config = ml_collections.ConfigDict(
        {"train": {"momentum": 0.9, "weight_decay": 5e-4, "nesterov": True}}
    )
    mask = masks.init_mask(variables["params"])
    state = training_setup.initial_state(config, model, variables, mask,
                                         optax.constant_schedule(0.1))
    batch = jax.tree.map(lambda x: x[:batch_size], data)
    step = compile_options.jit(train_steps.train_step, donate_argnums=0)
    compiled = step.lower(state, batch).compile()
    return bu.compiled_memory(compiled)


def _timed(spread: dict[str, float], name: str, fn, repeats: int, warmup: int = 1) -> float:
    """Median seconds of fn() over `repeats` calls; records max / min of the calls in spread."""
    for _ in range(warmup):
        bu.block(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        bu.block(fn())
        times.append(time.perf_counter() - start)
    spread[name] = max(times) / min(times)
    return float(np.median(times))


def _rounds(spread: dict[str, float], prefix: str, fns: dict, repeats: int) -> dict:
    """Seconds of each fn in each of `repeats` rounds, the fns taking turns within a round.

    Figures of one round were measured under the same load, so a ratio of two
    is paired: a machine that slows down between rounds moves both.

    Returns:
      name -> numpy array of its seconds, one per round; spread gets each
      name's max / min under "<prefix>_<name>_s".
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            bu.block(fn())
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        spread[f"{prefix}_{name}_s"] = max(values) / min(values)
    return {name: np.asarray(values) for name, values in times.items()}


def bench_one(name: str, batch_size: int, methods: list[str], *, quick: bool,
              repeats: int = REPEATS, kernels: str = "auto") -> list[dict]:
    """All measurements for one model and batch size."""
    from force_jax.core import compile_options, losses, masks, program, scores
    from force_jax.core import pruning as prune

    model, variables, data = bu.build(name, batch_size, kernels=kernels)
    params = variables["params"]
    loss_fn = losses.classification_loss(model, variables)
    synflow_fn = losses.synflow_objective(model, variables, bu.MODELS[name][1])
    flags = masks.prunable_flags(params)
    dense = masks.dense_mask(params, flags)
    batch = jax.tree.map(lambda x: x[:batch_size], data)
    repeats = 1 if quick else repeats

    grad_fn = compile_options.jit(lambda p, m, b: jax.grad(loss_fn)(masks.apply_mask(p, m), b))
    spread: dict[str, float] = {}
    grads = grad_fn(params, dense, batch)
    saliency = compile_options.jit(scores.saliency)
    saliency_s = _timed(spread, "saliency_s", lambda: saliency(params, grads), repeats)
    realistic = saliency(params, grads)
    total = masks.num_prunable(dense)
    topk = compile_options.jit(masks.topk_mask)
    k = jnp.int32(int(total * 0.1))
    select_s = _timed(spread, "select_s", lambda: topk(realistic, dense, k), repeats)
    kept = topk(realistic, dense, k)
    bookkeeping = compile_options.jit(_bookkeeping)
    bookkeeping_s = _timed(spread, "bookkeeping_s",
                           lambda: bookkeeping(params, grads, realistic, dense, kept), repeats)
    synflow_grad = compile_options.jit(lambda p: jax.grad(synflow_fn)(p))
    synflow_grad_s = bu.time_call(lambda: synflow_grad(params), repeats=repeats)
    train_memory = _train_step_memory(model, variables, data, batch_size)

    rows = []
    for method in methods:
        common = dict(
            loss_fn=loss_fn,
            params=params,
            data=data,
            method=method,
            batch_size=batch_size,
            key=jax.random.key(1),
            synflow_fn=synflow_fn,
            on_collapse="ignore",
        )
        # The jitted schedule prune() itself uses: jax.jit's cache, keyed on the Pruner.
        schedule = compile_options.outer_jit(program.schedule, static_argnums=0)
        pruner = program.Pruner(method, loss_fn, synflow_fn if method == "synflow" else None,
                                batch_size)
        cached_before = schedule._cache_size()
        if method != "synflow":
            common["synflow_fn"] = None

        def run(sparsity: float, steps: int, kwargs: dict = common) -> Any:
            return prune.prune(sparsity=sparsity, steps=steps, **kwargs)[0]

        # One compile serves every sparsity level at a fixed T.
        start = time.perf_counter()
        bu.block(run(SPARSITIES[0], SHORT_T))
        first_s = time.perf_counter() - start
        bu.block(run(SPARSITIES[1], SHORT_T))
        compilations = schedule._cache_size() - cached_before
        bu.block(run(SPARSITIES[0], LONG_T))  # its compile, outside the timed rounds
        # The step and the gradient it is compared with, timed in the same rounds.
        rounds = _rounds(spread, method, {
            "grad": lambda: grad_fn(params, dense, batch),
            f"t{SHORT_T}": lambda: run(SPARSITIES[1], SHORT_T),
            f"t{LONG_T}": lambda: run(SPARSITIES[0], LONG_T)}, repeats)
        t_short, t_long = (float(np.median(rounds[f"t{t}"])) for t in (SHORT_T, LONG_T))
        steps_s = np.maximum(rounds[f"t{LONG_T}"] - rounds[f"t{SHORT_T}"], 0.0) / (
            LONG_T - SHORT_T)
        step_s, paired_grad_s = float(np.median(steps_s)), float(np.median(rounds["grad"]))
        score_s = synflow_grad_s if method == "synflow" else paired_grad_s
        # SynFlow with track_objective also takes one data gradient per step.
        extra = paired_grad_s if method == "synflow" else 0.0
        row: dict[str, Any] = {
            "model": name,
            "batch": batch_size,
            "method": method,
            "compile_first_call_s": first_s - t_short,
            "step_s": step_s,
            "score_grad_s": score_s + extra,
            "saliency_s": saliency_s,
            "select_s": select_s,
            "bookkeeping_s": bookkeeping_s,
            "rest_s": step_s - score_s - extra - saliency_s - select_s - bookkeeping_s,
            "masked_grad_s": paired_grad_s,
            # The median over rounds of (the round's step) / (the round's gradient).
            "overhead_ratio": float(np.median(steps_s / rounds["grad"])),
            "compilations_after_2_sparsities": compilations,
            f"t{SHORT_T}_s": t_short,
            f"t{LONG_T}_s": t_long,
            "spread_max_over_min": dict(spread),
        }
        if method == "force" and not quick:
            counts = jnp.zeros((LONG_STEPS,), jnp.int32)
            start = time.perf_counter()
            compiled = schedule.lower(pruner, params, data, counts, jax.random.key(1),
                                      dense).compile()
            row["compile_60_steps_s"] = time.perf_counter() - start
            row["program_memory"] = bu.compiled_memory(compiled)
            row["train_step_memory"] = train_memory
            if row["program_memory"] and train_memory:
                row["memory_ratio_vs_train_step"] = (
                    row["program_memory"]["total_bytes"] / train_memory["total_bytes"]
                )
        row["process_peak_memory"] = bu.peak_memory()
        rows.append(row)
        bu.print_table([row], COLUMNS)
    return rows


COLUMNS = (
    "model",
    "batch",
    "method",
    "compile_first_call_s",
    "compile_60_steps_s",
    "step_s",
    "score_grad_s",
    "saliency_s",
    "select_s",
    "bookkeeping_s",
    "rest_s",
    "masked_grad_s",
    "overhead_ratio",
    "compilations_after_2_sparsities",
    "memory_ratio_vs_train_step",
)


def main(argv: list[str] | None = None) -> dict:
    """Runs the benchmark; returns the JSON payload."""
    parser = bu.parser(__doc__.splitlines()[0], "prune_bench")
    parser.add_argument("--methods", default="force,iter_snip,synflow")
    parser.add_argument("--repeats", type=int, default=REPEATS,
                        help="timed calls (rounds) per figure; the median is reported")
    args = parser.parse_args(argv)
    bu.set_plain_conv(args.plain_conv)
    rows = []
    for name in bu.csv_list(args.models):
        for batch_size in bu.csv_list(args.batch_sizes, int):
            rows.extend(bench_one(name, batch_size, bu.csv_list(args.methods), quick=args.quick,
                                   repeats=args.repeats, kernels=args.kernels))
    return bu.finish(args, rows, COLUMNS, repeats=1 if args.quick else args.repeats,
                     timing="median wall seconds")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
