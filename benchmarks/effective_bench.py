"""What effective sparsity costs a run: one analysis against one masked gradient step.

For each model, a random mask at the given sparsity; `effective_mask` (one
forward and backward pass on a single all-ones input, plus its compile) is
timed against the jitted masked gradient at the pruning batch size (plus its
compile), in the same run. A run computes the analysis once, for prune.json.

    python benchmarks/effective_bench.py                    # VGG-19 and ResNet-50, batch 128
    python benchmarks/effective_bench.py --quick --models lenet5
"""

from __future__ import annotations

import functools
import time

import bench_utils as bu
import jax


def _first_and_warm(fn, repeats: int) -> tuple[float, float]:
    start = time.perf_counter()
    bu.block(fn())
    first = time.perf_counter() - start
    return first, bu.time_call(fn, repeats=repeats, warmup=0)


def _measure(name: str, batch_size: int, sparsity: float, repeats: int) -> dict:
    """One row: the analysis against the masked gradient, on a random mask."""
    from force_jax.core import effective, losses, masks

    model, variables, data = bu.build(name, batch_size, examples=batch_size)
    params = variables["params"]
    keys = jax.random.split(jax.random.key(1), len(jax.tree.leaves(params)))
    leaves, treedef = jax.tree.flatten(masks.init_mask(params))
    mask = treedef.unflatten([jax.random.uniform(k, m.shape) >= sparsity if m.ndim else m
                              for k, m in zip(keys, leaves)])
    shape = bu.MODELS[name][1]
    loss_fn = losses.classification_loss(model, variables)
    grad_fn = jax.jit(lambda p, m, b: jax.grad(loss_fn)(masks.apply_mask(p, m), b))
    grad_first, grad_s = _first_and_warm(lambda: grad_fn(params, mask, data), repeats)
    analyse = functools.partial(effective.effective_mask, model, variables, mask, shape)
    eff_first, eff_s = _first_and_warm(analyse, repeats)
    return {"model": name, "batch": batch_size, "effective_first_s": eff_first,
            "effective_s": eff_s, "grad_first_s": grad_first, "grad_s": grad_s,
            "effective_over_grad": eff_first / grad_first, "kept": int(masks.num_kept(mask)),
            "effective": int(masks.num_kept(analyse()))}


def main(argv: list[str] | None = None) -> dict:
    """Times both for every model; returns the JSON payload."""
    parser = bu.parser(__doc__.splitlines()[0], "effective_bench", models="vgg19,resnet50")
    parser.set_defaults(batch_sizes="128")
    parser.add_argument("--sparsity", type=float, default=0.99)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    rows = []
    columns = ("model", "batch", "effective_first_s", "effective_s", "grad_first_s", "grad_s",
               "effective_over_grad", "kept", "effective")
    for name in bu.csv_list(args.models):
        for batch_size in bu.csv_list(args.batch_sizes, int):
            rows.append(_measure(name, batch_size, args.sparsity, repeats))
            bu.print_table(rows[-1:], columns)
    return bu.finish(args, rows, columns, repeats=repeats, sparsity=args.sparsity,
                     timing="first call (compile included) and median warm wall seconds")


if __name__ == "__main__":
    main()
