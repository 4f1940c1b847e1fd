"""Cost of the one-program pruning schedules (FORCE, Iterative SNIP, SynFlow).

For each model and batch size: compile time of the schedule program, time per
pruning step (from T=2 and T=10 runs: (t10 - t2) / 8, so compile and the final
objective evaluation cancel), its split into the masked score gradient and the
exact top-k selection (each jitted and timed alone), the overhead ratio (step
/ one masked gradient), memory, and the number of compilations after two
sparsity levels (must be 1).

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


def _train_step_memory(model, variables, data, batch_size: int) -> dict | None:
    """Static memory of one jitted plain training step (masked SGD, donated state)."""
    from force_jax.core import compile_options, masks
    from force_jax.experiments import train
    from force_jax.training import steps as train_steps

    config = ml_collections.ConfigDict(
        {"train": {"momentum": 0.9, "weight_decay": 5e-4, "nesterov": True}}
    )
    mask = masks.init_mask(variables["params"])
    state = train.initial_state(config, model, variables, mask, optax.constant_schedule(0.1))
    batch = jax.tree.map(lambda x: x[:batch_size], data)
    step = compile_options.jit(train_steps.train_step, donate_argnums=0)
    compiled = step.lower(state, batch).compile()
    return bu.compiled_memory(compiled)


def bench_one(name: str, batch_size: int, methods: list[str], *, quick: bool,
              repeats: int = 3, kernels: str = "auto") -> list[dict]:
    """All measurements for one model and batch size."""
    from force_jax.core import compile_options, losses, masks, scores
    from force_jax.core import pruning as prune
    from force_jax.core.methods import METHODS

    model, variables, data = bu.build(name, batch_size, kernels=kernels)
    params = variables["params"]
    loss_fn = losses.classification_loss(model, variables)
    synflow_fn = losses.synflow_objective(model, variables, bu.MODELS[name][1])
    flags = masks.prunable_flags(params)
    dense = masks.dense_mask(params, flags)
    batch = jax.tree.map(lambda x: x[:batch_size], data)
    repeats = 1 if quick else repeats

    grad_fn = compile_options.jit(lambda p, m, b: jax.grad(loss_fn)(masks.apply_mask(p, m), b))
    grad_s = bu.time_call(lambda: grad_fn(params, dense, batch), repeats=repeats)
    grads = grad_fn(params, dense, batch)
    realistic = scores.saliency(params, grads)
    total = masks.num_prunable(dense)
    topk = compile_options.jit(masks.topk_mask)
    k = jnp.int32(int(total * 0.1))
    select_s = bu.time_call(lambda: topk(realistic, dense, k), repeats=repeats)
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
        # The jitted schedule prune() itself uses (the same cache entry).
        program = prune._program(
            METHODS[method], loss_fn, synflow_fn if method == "synflow" else None, flags,
            batch_size, 1, True, None, False,
        )
        if method != "synflow":
            common["synflow_fn"] = None

        def run(sparsity: float, steps: int, kwargs: dict = common) -> Any:
            return prune.prune(sparsity=sparsity, steps=steps, **kwargs)[0]

        # One compile serves every sparsity level at a fixed T.
        start = time.perf_counter()
        bu.block(run(SPARSITIES[0], 2))
        first_s = time.perf_counter() - start
        t2 = bu.time_call(
            lambda: run(SPARSITIES[1], 2),
            repeats=repeats,
            warmup=0,
        )
        compilations = program._cache_size()
        t10 = bu.time_call(lambda: run(SPARSITIES[0], 10), repeats=repeats)
        step_s = max(t10 - t2, 0.0) / 8
        score_s = synflow_grad_s if method == "synflow" else grad_s
        # SynFlow with track_objective also takes one data gradient per step.
        extra = grad_s if method == "synflow" else 0.0
        row: dict[str, Any] = {
            "model": name,
            "batch": batch_size,
            "method": method,
            "compile_first_call_s": first_s - t2,
            "step_s": step_s,
            "score_grad_s": score_s + extra,
            "select_s": select_s,
            "rest_s": step_s - score_s - extra - select_s,
            "masked_grad_s": grad_s,
            "overhead_ratio": step_s / grad_s,
            "compilations_after_2_sparsities": compilations,
            "t2_s": t2,
            "t10_s": t10,
        }
        if method == "force" and not quick:
            counts = jnp.zeros((LONG_STEPS + 1,), jnp.int32)
            start = time.perf_counter()
            compiled = program.lower(params, data, counts, jax.random.key(1), dense).compile()
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
    "select_s",
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
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per figure (median)")
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
