"""The models' two kernel kinds on this backend: CPU rewrites against plain Flax ops.

``force_jax.models.kernels`` picks the CPU rewrites (tiny-map matmul convs,
the loop-conv custom VJP, strided-slice max-pooling) on CPU and the plain
Flax/lax ops elsewhere. This script is the measurement behind that choice: for
each model and batch size, with ``kernels="cpu"`` and ``kernels="plain"`` in
the same process, the median time of one masked score gradient (jitted, the
inner work of every pruning step) and of one FORCE pruning step inside the
scanned schedule program (from T=2 and T=10 runs of ``force_jax.prune``:
``(t10 - t2) / 8``, so compile time cancels). ``plain_over_cpu`` above 1 means
the rewrites are faster here. Needs only the core (no TFDS, no training code),
so it runs on any machine with JAX.

    python benchmarks/kernels_bench.py
    python benchmarks/kernels_bench.py --models vgg19 --batch-sizes 128
    python benchmarks/kernels_bench.py --quick --models lenet5 --batch-sizes 8
"""

from __future__ import annotations

import bench_utils as bu
import jax

KINDS = ("cpu", "plain")
COLUMNS = ("model", "batch", "kernels", "grad_s", "prune_step_s", "grad_plain_over_cpu",
           "step_plain_over_cpu")


def bench_one(name: str, batch_size: int, kernels: str, *, repeats: int,
              steps: int) -> dict:
    """Masked-gradient and FORCE-step seconds of one model, batch and kernel kind."""
    from force_jax.core import compile_options, losses, masks
    from force_jax.core.pruning import prune

    model, variables, data = bu.build(name, batch_size, kernels=kernels)
    params = variables["params"]
    loss_fn = losses.classification_loss(model, variables)
    dense = masks.dense_mask(params, masks.prunable_flags(params))
    batch = jax.tree.map(lambda x: x[:batch_size], data)
    grad_fn = compile_options.jit(lambda p, m, b: jax.grad(loss_fn)(masks.apply_mask(p, m), b))
    grad_s = bu.time_call(lambda: grad_fn(params, dense, batch), repeats=repeats)

    def run(t: int):
        return prune(loss_fn, params, data, sparsity=0.99, method="force", steps=t,
                     batch_size=batch_size, key=jax.random.key(1), on_collapse="ignore")[0]

    t_short = bu.time_call(lambda: run(2), repeats=repeats)
    t_long = bu.time_call(lambda: run(steps), repeats=repeats)
    return {"model": name, "batch": batch_size, "kernels": kernels, "grad_s": grad_s,
            "prune_step_s": max(t_long - t_short, 0.0) / (steps - 2)}


def main(argv: list[str] | None = None) -> dict:
    """Runs the benchmark; returns the JSON payload."""
    parser = bu.parser(__doc__.splitlines()[0], f"kernels_bench_{jax.default_backend()}")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per figure (median)")
    args = parser.parse_args(argv)
    repeats, steps = (1, 4) if args.quick else (args.repeats, 10)
    rows = []
    for name in bu.csv_list(args.models):
        for batch_size in bu.csv_list(args.batch_sizes, int):
            pair = {k: bench_one(name, batch_size, k, repeats=repeats, steps=steps)
                    for k in KINDS}
            for row in pair.values():
                row["grad_plain_over_cpu"] = pair["plain"]["grad_s"] / pair["cpu"]["grad_s"]
                row["step_plain_over_cpu"] = (pair["plain"]["prune_step_s"]
                                              / max(pair["cpu"]["prune_step_s"], 1e-9))
                rows.append(row)
            bu.print_table(list(pair.values()), COLUMNS)
            # The figures so far, in case a time limit stops the run before the end.
            bu.write_results(args.name, {"rows": rows, "partial": True}, args.out_dir)
    return bu.finish(args, rows, COLUMNS, repeats=repeats, prune_steps=steps,
                     timing="median wall seconds")


if __name__ == "__main__":
    main()
