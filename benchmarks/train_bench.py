"""Images per second of the masked training step (force_jax.training.steps.train_step).

The step is jitted with the TrainState donated, on a state from
force_jax.commands.training_setup.initial_state with a 99%-sparse random mask (SGD with
Nesterov momentum and weight decay, the paper's optimiser).

    python benchmarks/train_bench.py
    python benchmarks/train_bench.py --models vgg19 --batch-sizes 128 --plain-conv
    python benchmarks/train_bench.py --quick --models lenet5
"""

from __future__ import annotations

import time

import bench_utils as bu
import jax
import ml_collections
import optax

SPARSITY = 0.99


def bench_one(name: str, batch_size: int, steps: int) -> dict:
    """Images/s of `steps` chained train steps (after one compiling step)."""
    from force_jax.config import training_setup
    from force_jax.core import compile_options, masks
    from force_jax.training import steps as train_steps

    model, variables, data = bu.build(name, batch_size, examples=batch_size)
    config = ml_collections.ConfigDict(
        {"train": {"momentum": 0.9, "weight_decay": 5e-4, "nesterov": True}}
    )
    params = variables["params"]
    flags = masks.prunable_flags(params)
    random_scores = jax.tree.map(
        lambda p: jax.random.uniform(jax.random.key(p.size), p.shape), params
    )
    dense = masks.dense_mask(params, flags)
    keep = int((1 - SPARSITY) * masks.num_prunable(dense))
    mask = masks.topk_mask(random_scores, dense, keep)
    state = training_setup.initial_state(config, model, variables, mask,
                                         optax.constant_schedule(0.1))
    step = compile_options.jit(train_steps.train_step, donate_argnums=0)
    start = time.perf_counter()
    state, metrics = bu.block(step(state, data))
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, metrics = bu.block(step(state, data))
        times.append(time.perf_counter() - start)
    median = sorted(times)[len(times) // 2]
    return {
        "model": name,
        "batch": batch_size,
        "sparsity": SPARSITY,
        "first_step_s": compile_s,
        "step_s": median,
        "images_per_s": batch_size / median,
    }


def main(argv: list[str] | None = None) -> dict:
    """Runs the benchmark; returns the JSON payload."""
    parser = bu.parser(__doc__.splitlines()[0], "train_bench")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    bu.set_plain_conv(args.plain_conv)
    steps = 1 if args.quick else args.steps
    columns = ("model", "batch", "first_step_s", "step_s", "images_per_s")
    rows = []
    for name in bu.csv_list(args.models):
        for batch_size in bu.csv_list(args.batch_sizes, int):
            rows.append(bench_one(name, batch_size, steps))
            bu.print_table(rows[-1:], columns)
    return bu.finish(args, rows, columns, steps=steps, timing="median wall seconds per step")


if __name__ == "__main__":
    main()
