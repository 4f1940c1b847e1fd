"""How much a harmless perturbation changes the final mask, per method.

Each method prunes the same network twice from the same weights, on one batch
that holds the same examples both times, once in the original order and once
in a shuffled order: only the order of the floating-point sums differs. The
table gives the IoU of the two final masks (1.0: identical), how many kept
weights differ, and the largest difference of a layer's density between the
two masks (in percentage points). Progressive methods (FORCE, Iterative SNIP)
amplify the rounding step after step; one-shot methods only flip weights
whose scores tie within rounding at the threshold.

    python benchmarks/chaos_bench.py                    # VGG-19 and LeNet-5, batch 32
    python benchmarks/chaos_bench.py --quick --models lenet5
"""

from __future__ import annotations

import bench_utils as bu
import jax
import numpy as np

import force_jax as fj

COLUMNS = ("model", "method", "sparsity", "steps", "kept", "iou", "differing_kept",
           "max_layer_density_diff_pp", "revived_last_step")


def flat_prunable(mask) -> np.ndarray:
    """The prunable leaves of a mask, concatenated."""
    return np.concatenate([np.asarray(m).ravel() for m in jax.tree.leaves(mask) if m.ndim > 0])


def compare(first, second) -> dict:
    """IoU, differing kept weights and the largest per-layer density gap of two masks."""
    a, b = flat_prunable(first), flat_prunable(second)
    gaps = [abs(x.density - y.density) for x, y in zip(fj.sparsity_report(first).layers,
                                                          fj.sparsity_report(second).layers)]
    return {"kept": int(a.sum()), "iou": float((a & b).sum() / (a | b).sum()),
            "differing_kept": int((a & ~b).sum()),
            "max_layer_density_diff_pp": 100 * max(gaps)}


def main() -> None:
    parser = bu.parser(__doc__.splitlines()[0], "chaos_bench", models="vgg19,lenet5")
    parser.set_defaults(batch_sizes="32")
    parser.add_argument("--methods", default="force,iter_snip,snip,grasp")
    parser.add_argument("--sparsity", type=float, default=0.99)
    parser.add_argument("--steps", type=int, default=10, help="for force and iter_snip")
    args = parser.parse_args()
    bu.set_plain_conv(args.plain_conv)
    steps = 3 if args.quick else args.steps
    rows = []
    for name in bu.csv_list(args.models):
        for batch_size in bu.csv_list(args.batch_sizes, int):
            model, variables, data = bu.build(name, batch_size, examples=batch_size)
            order = np.random.default_rng(0).permutation(batch_size)
            shuffled = {key: value[order] for key, value in data.items()}
            for method in bu.csv_list(args.methods):
                loss_fn = fj.classification_loss(model, variables)
                method_steps = steps if method in ("force", "iter_snip") else 1
                kwargs = dict(method=method, sparsity=args.sparsity, steps=method_steps,
                              batch_size=batch_size, key=jax.random.key(0),
                              on_collapse="ignore")
                first, history = fj.prune(loss_fn, variables["params"], data, **kwargs)
                second, _ = fj.prune(loss_fn, variables["params"], shuffled, **kwargs)
                row = {"model": name, "method": method, "sparsity": args.sparsity,
                       "steps": method_steps, **compare(first, second),
                       "revived_last_step": int(history.revived[-1])}
                rows.append(row)
                print(" ".join(f"{k}={row[k]}" for k in COLUMNS), flush=True)
            jax.clear_caches()  # free this model's compiled programs
    bu.finish(args, rows, COLUMNS, batch_sizes=bu.csv_list(args.batch_sizes, int))


if __name__ == "__main__":
    main()
