"""The cost of a mask that changes during training: RigL's train step against the plain masked one.

Three jitted train steps (force_jax.training.steps.train_step, the state donated)
on one 99 %-sparse random mask, SGD with Nesterov momentum: the plain masked step
(`masked_updates`), a RigL step between updates, and a RigL step that rewires
(`changing_masked_updates`, drop and grow in every layer). The average over one
update period (`--period`, RigL's 100 steps) is ((period - 1) * between + update)
/ period, reported against the plain step.

    python benchmarks/mask_changes_bench.py
    python benchmarks/mask_changes_bench.py --quick --models lenet5 --batch-sizes 8
"""

from __future__ import annotations

import time

import bench_utils as bu
import jax
import jax.numpy as jnp
import ml_collections
import optax

SPARSITY = 0.99


def _config(method: str, period: int) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        "seed": 0, "prune": {"sparsity": SPARSITY},
        "train": {"momentum": 0.9, "weight_decay": 5e-4, "nesterov": True,
                  "mask_changes": {"method": method, "drop_fraction": 0.3, "start": 0,
                                   "end": 1000 * period, "every": period}}})


def _median_step(step, state, data, steps: int, count: int | None = None):
    """Median seconds of `steps` calls (after one compiling call); the opt count pinned."""
    def pinned(state):
        if count is None:
            return state
        return state.replace(opt_state=state.opt_state._replace(count=jnp.int32(count)))

    start = time.perf_counter()
    state, _ = bu.block(step(pinned(state), data))
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        state = pinned(state)
        start = time.perf_counter()
        state, _ = bu.block(step(state, data))
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], first


def bench_one(name: str, batch_size: int, steps: int, period: int) -> dict:
    """Seconds per step of the plain and the RigL steps, between and at an update."""
    from force_jax.config import training_setup
    from force_jax.core import compile_options, masks
    from force_jax.training import steps as train_steps

    model, variables, data = bu.build(name, batch_size, examples=batch_size)
    params = variables["params"]
    dense = masks.dense_mask(params, masks.prunable_flags(params))
    scores = jax.tree.map(lambda p: jax.random.uniform(jax.random.key(p.size), p.shape), params)
    mask = masks.topk_mask(scores, dense, int((1 - SPARSITY) * masks.num_prunable(dense)))
    schedule = optax.constant_schedule(0.1)
    step = compile_options.jit(train_steps.train_step, donate_argnums=0)
    def fresh(method):  # its own buffers: the step donates the state
        own = jax.tree.map(jnp.copy, variables)
        return training_setup.initial_state(_config(method, period), model, own, mask, schedule,
                                   total_steps=10_000 * period)

    plain_s, _ = _median_step(step, fresh("none"), data, steps)
    between_s, first_s = _median_step(step, fresh("rigl"), data, steps, count=1)
    update_s, _ = _median_step(step, fresh("rigl"), data, steps, count=period)
    average = ((period - 1) * between_s + update_s) / period
    return {"model": name, "batch": batch_size, "sparsity": SPARSITY, "period": period,
            "plain_step_s": plain_s, "between_updates_s": between_s, "update_step_s": update_s,
            "update_over_plain": update_s / plain_s, "between_over_plain": between_s / plain_s,
            "average_over_plain": average / plain_s, "rigl_first_step_s": first_s}


def main(argv: list[str] | None = None) -> dict:
    """Runs the benchmark; returns the JSON payload."""
    parser = bu.parser(__doc__.splitlines()[0], "mask_changes_bench", models="vgg19")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--period", type=int, default=100)
    args = parser.parse_args(argv)
    bu.set_plain_conv(args.plain_conv)
    steps = 1 if args.quick else args.steps
    columns = ("model", "batch", "plain_step_s", "between_updates_s", "update_step_s",
               "update_over_plain", "average_over_plain")
    rows = []
    for name in bu.csv_list(args.models):
        for batch_size in bu.csv_list(args.batch_sizes, int):
            rows.append(bench_one(name, batch_size, steps, args.period))
            bu.print_table(rows[-1:], columns)
    return bu.finish(args, rows, columns, steps=steps, timing="median wall seconds per step")


if __name__ == "__main__":
    main()
