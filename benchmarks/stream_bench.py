"""Streamed pruning batches against the in-memory pool: time per step and host memory.

Time: for each model and batch size, one FORCE step in pool mode (the
one-program scan over a pool of random examples) and in stream mode (one
compiled step per call, fresh batches from an iterator that keeps up: a ring
of pre-made numpy batches), each as ``(t(T=10) - t(T=2)) / 8`` so compile
time cancels; ``stream_over_pool`` is their ratio.

Memory: peak host memory (max RSS) of a streamed FORCE run of T steps on
LeNet-5, each T in a fresh process, with a generator that makes every batch
anew (nothing is kept): it must not grow with T.

    python benchmarks/stream_bench.py
    python benchmarks/stream_bench.py --models lenet5 --batch-sizes 128 --memory-steps 10,60
    python benchmarks/stream_bench.py --quick --models lenet5 --batch-sizes 8
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys

import bench_utils as bu
import jax
import numpy as np

COLUMNS = ("model", "batch", "pool_step_s", "stream_step_s", "stream_over_pool")


def _ring(data: dict, batch_size: int, count: int = 4):
    """An endless iterator over `count` distinct numpy batches cut from `data`."""
    batches = [{k: np.asarray(v[i * batch_size:(i + 1) * batch_size]) for k, v in data.items()}
               for i in range(count)]
    return itertools.cycle(batches)


def bench_one(name: str, batch_size: int, *, repeats: int) -> dict:
    """Seconds per FORCE step in pool and in stream mode for one model and batch size."""
    from force_jax.core import losses
    from force_jax.core.pruning import prune

    model, variables, data = bu.build(name, batch_size, examples=4 * batch_size)
    loss_fn = losses.classification_loss(model, variables)
    common = dict(method="force", sparsity=0.99, batch_size=batch_size, key=jax.random.key(1),
                  on_collapse="ignore")

    def step_seconds(source) -> float:
        t2 = bu.time_call(lambda: prune(loss_fn, variables["params"], source(), steps=2,
                                        **common)[0], repeats=repeats)
        t10 = bu.time_call(lambda: prune(loss_fn, variables["params"], source(), steps=10,
                                         **common)[0], repeats=repeats)
        return max(t10 - t2, 0.0) / 8

    pool_s = step_seconds(lambda: data)
    stream_s = step_seconds(lambda: _ring(data, batch_size))
    return {"model": name, "batch": batch_size, "pool_step_s": pool_s, "stream_step_s": stream_s,
            "stream_over_pool": stream_s / max(pool_s, 1e-9)}


def memory_child(steps: int, batch_size: int) -> dict:
    """In this process: a streamed FORCE run of `steps` on LeNet-5; returns the peak RSS."""
    from force_jax.core import losses
    from force_jax.core.pruning import prune

    model, variables, _ = bu.build("lenet5", batch_size)
    rng = np.random.default_rng(0)

    def fresh():
        while True:
            yield {"image": rng.normal(size=(batch_size, 28, 28, 1)).astype(np.float32),
                   "label": rng.integers(0, bu.NUM_CLASSES, size=batch_size).astype(np.int32)}

    mask, _ = prune(losses.classification_loss(model, variables), variables["params"], fresh(),
                    method="force", sparsity=0.99, steps=steps, batch_size=batch_size,
                    key=jax.random.key(0), on_collapse="ignore")
    bu.block(mask)
    return {"steps": steps, "batch": batch_size, "peak_rss_bytes": bu.peak_memory()["bytes"]}


def main(argv: list[str] | None = None) -> dict:
    """Runs the benchmark; returns the JSON payload."""
    parser = bu.parser(__doc__.splitlines()[0], "stream_bench", models="lenet5,vgg19")
    parser.set_defaults(batch_sizes="128")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per figure (median)")
    parser.add_argument("--memory-steps", default="10,60", help="T of the memory runs")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child is not None:
        print(json.dumps(memory_child(args.memory_child, bu.csv_list(args.batch_sizes, int)[0])))
        return {}
    repeats = 1 if args.quick else args.repeats
    rows = []
    for name in bu.csv_list(args.models):
        for batch_size in bu.csv_list(args.batch_sizes, int):
            rows.append(bench_one(name, batch_size, repeats=repeats))
            bu.print_table(rows[-1:], COLUMNS)
    memory = []
    for steps in bu.csv_list(args.memory_steps, int):
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(steps), "--batch-sizes",
             str(bu.csv_list(args.batch_sizes, int)[0])],
            check=True, capture_output=True, text=True, timeout=1800)
        memory.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"streamed FORCE, T={steps}: peak RSS {memory[-1]['peak_rss_bytes'] / 2**20:.0f} MiB")
    growth = memory[-1]["peak_rss_bytes"] / memory[0]["peak_rss_bytes"] if memory else None
    return bu.finish(args, rows, COLUMNS, repeats=repeats, memory=memory,
                     memory_growth_last_over_first=growth, timing="median wall seconds")


if __name__ == "__main__":
    main()
