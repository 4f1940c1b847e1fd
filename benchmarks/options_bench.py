"""What XLA:CPU's YNNPACK fusion options buy: VGG-19's masked gradient and FORCE step, same run.

Each variant compiles the same function with another value of
``xla_cpu_experimental_ynn_fusion_type`` ("plain" is ``jax.jit`` with no
option: jaxlib's own default). The variants, and PyTorch's forward + backward
of the same network when torch is installed, take turns in paired rounds, so
drifts in the machine's load hit them alike; a ratio is the median of the
rounds' own ratios against plain ``jax.jit``.

It also gives each variant's gradient's largest difference from plain
``jax.jit`` (relative to the leaf's largest entry): float rounding, unless a
ReLU input of the problem lies within rounding of zero, where a gradient
jumps whatever the compiler (docs/performance.md, "Compiler options").

    python benchmarks/options_bench.py                 # VGG-19, batch 32
    python benchmarks/options_bench.py --quick --models lenet5
"""

from __future__ import annotations

import functools
import importlib.util
import statistics
import time

import bench_utils as bu
import jax
import jax.numpy as jnp

YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
# name -> the option's value (None: the option is not passed at all).
VARIANTS = {
    "plain": None,
    "dot": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
    "reduce": "LIBRARY_FUSION_TYPE_REDUCE",
    "dot+reduce": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE",
}


def _jit(fun, value, **kwargs):
    options = None if value is None else {YNN_OPTION: value}
    return jax.jit(fun, compiler_options=options, **kwargs)


def _programs(name: str, batch_size: int):
    """(gradient, FORCE step, their arguments) for one model and batch size."""
    from force_jax.core import losses, masks, program

    model, variables, data = bu.build(name, batch_size, examples=batch_size)
    params = variables["params"]
    loss_fn = losses.classification_loss(model, variables)
    mask = masks.init_mask(params)
    pruner = program.Pruner("force", loss_fn, batch_size=batch_size)
    state = program.init_state(mask, jax.random.key(1))
    batches = jax.tree.map(lambda x: x[None], data)
    count = jnp.int32(masks.num_prunable(params) // 10)

    def gradient(p, m, b):
        return jax.grad(loss_fn)(masks.apply_mask(p, m), b)

    def force_step(p, s, b, k):
        return program.step(pruner, p, s, b, k)

    return gradient, (params, mask, data), force_step, (params, state, batches, count)


def _torch_step(name: str, batch_size: int):
    import torch
    from torch_compare import torch_model

    model = torch_model(name).train()
    _, (h, w, c) = bu.MODELS[name]
    x = torch.randn(batch_size, c, h, w)
    y = torch.randint(0, bu.NUM_CLASSES, (batch_size,))

    def step():
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()

    return step


def _seconds(fn) -> float:
    start = time.perf_counter()
    bu.block(fn())
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    """Runs the paired rounds; returns the JSON payload."""
    parser = bu.parser(__doc__.splitlines()[0], "options_bench", models="vgg19")
    parser.set_defaults(batch_sizes="32")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    rounds = 2 if args.quick else args.rounds
    with_torch = importlib.util.find_spec("torch") is not None
    rows = []
    columns = ("model", "batch", "program", "variant", "seconds", "over_plain", "over_torch",
               "max_rel_diff")
    for name in bu.csv_list(args.models):
        for batch_size in bu.csv_list(args.batch_sizes, int):
            gradient, grad_args, force_step, step_args = _programs(name, batch_size)
            calls = {}
            for variant, value in VARIANTS.items():
                grad_fn = _jit(gradient, value)
                step_fn = _jit(force_step, value)
                calls[("gradient", variant)] = functools.partial(grad_fn, *grad_args)
                calls[("force_step", variant)] = functools.partial(step_fn, *step_args)
            if with_torch:
                calls[("torch", "fwd+bwd")] = _torch_step(name, batch_size)
            results = {key: fn() for key, fn in calls.items()}  # compile and warm up
            reference = jax.tree.leaves(results[("gradient", "plain")])
            times: dict = {key: [] for key in calls}
            for _ in range(rounds):
                for key, fn in calls.items():
                    times[key].append(_seconds(fn))
            for (prog, variant), samples in times.items():
                if prog == "torch":
                    continue
                row = {"model": name, "batch": batch_size, "program": prog, "variant": variant,
                       "seconds": statistics.median(samples)}
                plain = times[(prog, "plain")]
                row["over_plain"] = statistics.median(a / b for a, b in zip(samples, plain))
                if with_torch:
                    torch_s = times[("torch", "fwd+bwd")]
                    row["over_torch"] = statistics.median(
                        a / b for a, b in zip(samples, torch_s))
                if prog == "gradient":
                    leaves = jax.tree.leaves(results[(prog, variant)])
                    row["max_rel_diff"] = max(
                        float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30))
                        for a, b in zip(leaves, reference))
                rows.append(row)
            bu.print_table([r for r in rows if r["model"] == name and r["batch"] == batch_size],
                           columns)
            if with_torch:
                torch_s = statistics.median(times[("torch", "fwd+bwd")])
                print(f"torch forward + backward: {torch_s:.3f} s")
    return bu.finish(args, rows, columns, repeats=rounds, timing="median of paired rounds")


if __name__ == "__main__":
    main()
