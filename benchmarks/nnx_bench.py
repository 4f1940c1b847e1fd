"""A user's own Flax NNX CNN under FORCE: plain `nnx.Conv` against the fast-gradient conv.

The built-in Linen models differentiate their convs through
`force_jax.models.loop_conv` (fast inside the schedule's loop on XLA:CPU). A
model of your own gets that by passing
``conv_general_dilated=force_jax.models.loop_conv.conv_general_dilated`` to
its convs. This times 60 FORCE steps (warm: the second call) of a 68 k-weight
NNX CNN both ways, and the built-in LeNet-5 (430 k weights) for scale, in one
run on random MNIST-shaped data.

    python benchmarks/nnx_bench.py
    python benchmarks/nnx_bench.py --quick
"""

from __future__ import annotations

import time

import bench_utils as bu
import jax
from flax import nnx


class UserCNN(nnx.Module):
    """Conv 16 -> pool -> conv 32 -> pool -> dense 40 -> 10, on 28x28x1: 67,872 kernel weights."""

    def __init__(self, rngs: nnx.Rngs, conv=None):
        extra = {} if conv is None else {"conv_general_dilated": conv}
        self.conv1 = nnx.Conv(1, 16, (3, 3), rngs=rngs, **extra)
        self.conv2 = nnx.Conv(16, 32, (3, 3), rngs=rngs, **extra)
        self.fc1 = nnx.Linear(32 * 7 * 7, 40, rngs=rngs)
        self.fc2 = nnx.Linear(40, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.max_pool(nnx.relu(self.conv1(x)), (2, 2), (2, 2))
        x = nnx.max_pool(nnx.relu(self.conv2(x)), (2, 2), (2, 2))
        return self.fc2(nnx.relu(self.fc1(x.reshape(x.shape[0], -1))))


def _time_prune(loss_fn, params, data, steps: int) -> tuple[float, float]:
    import force_jax as fj

    def run():
        return fj.prune(loss_fn, params, data, method="force", sparsity=0.99, steps=steps,
                        batch_size=128, key=jax.random.key(1), on_collapse="ignore")[0]

    start = time.perf_counter()
    bu.block(run())
    first = time.perf_counter() - start
    start = time.perf_counter()
    bu.block(run())
    return first, time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    """Times the three; returns the JSON payload."""
    import force_jax as fj
    from force_jax.models import loop_conv

    parser = bu.parser(__doc__.splitlines()[0], "nnx_bench", models="lenet5")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args(argv)
    steps = 3 if args.quick else args.steps
    kx, ky = jax.random.split(jax.random.key(0))
    data = {"image": jax.random.normal(kx, (1024, 28, 28, 1)),
            "label": jax.random.randint(ky, (1024,), 0, 10)}
    rows = []
    columns = ("model", "conv", "prunable", "first_s", "warm_s", "warm_over_fast")
    for name, conv in (("nnx_cnn", None), ("nnx_cnn", loop_conv.conv_general_dilated)):
        graphdef, params, rest = fj.nnx.split(UserCNN(nnx.Rngs(0), conv))
        loss_fn = fj.nnx.classification_loss(graphdef, rest)
        first, warm = _time_prune(loss_fn, params, data, steps)
        rows.append({"model": name, "conv": "plain nnx.Conv" if conv is None else "loop_conv",
                     "prunable": fj.masks.num_prunable(fj.init_mask(params)),
                     "first_s": first, "warm_s": warm})
    model, variables, _ = bu.build("lenet5", 128)
    loss_fn = fj.classification_loss(model, variables)
    first, warm = _time_prune(loss_fn, variables["params"], data, steps)
    rows.append({"model": "lenet5 (built in)", "conv": "loop_conv", "first_s": first,
                 "warm_s": warm,
                 "prunable": fj.masks.num_prunable(fj.init_mask(variables["params"]))})
    fast = rows[1]["warm_s"]
    for row in rows:
        row["warm_over_fast"] = row["warm_s"] / fast
    bu.print_table(rows, columns)
    return bu.finish(args, rows, columns, steps=steps, timing="wall seconds, one call each")


if __name__ == "__main__":
    main()
