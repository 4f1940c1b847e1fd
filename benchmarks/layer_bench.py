"""Per-layer forward + backward times: the kernel choice and the pooling, against PyTorch.

For every distinct conv layer of the model (VGG-19 on 32x32 inputs, or
LeNet-5 for smoke tests), one forward plus both gradients (input and kernel)
of the conv force_jax's models build (``force_jax.models.common.conv``),
jitted twice: with jaxlib's default XLA:CPU kernel choice (``before_s``) and
with ``force_jax.core.compile_options`` (``after_s``). For every max-pool input,
the same for ``flax.linen.max_pool`` (``before_s``) and
``force_jax.models.pooling.max_pool`` (``after_s``), both with the options.
PyTorch's conv and max-pool at the same shapes are timed alongside when torch
is installed.

    python benchmarks/layer_bench.py
    python benchmarks/layer_bench.py --quick --models lenet5 --batch-sizes 8
"""

from __future__ import annotations

import importlib.util

import bench_utils as bu
import jax
import jax.numpy as jnp

COLUMNS = ("model", "batch", "layer", "count", "before_s", "after_s", "torch_s")


def layers(name: str) -> tuple[list[tuple[int, int, int, int, str]], list[tuple[int, int]]]:
    """The model's conv layers and pool inputs.

    Returns:
      ([(map size, in channels, out channels, kernel size, padding), ...],
      [(map size, channels), ...]), in network order, repeats included.
    """
    if name == "lenet5":
        return [(28, 1, 20, 5, "VALID"), (12, 20, 50, 5, "VALID")], [(24, 20), (8, 50)]
    from force_jax.models.vgg import VGG_STAGES

    convs, pools, size, channels = [], [], 32, 3
    for index, stage in enumerate(VGG_STAGES[19]):
        if index > 0:
            pools.append((size, channels))
            size //= 2
        for out in stage:
            convs.append((size, channels, out, 3, "SAME"))
            channels = out
    return convs, pools


def _time_jax(fn, args, options, repeats: int) -> float:
    """Median seconds of value_and_grad of <fn(*args), cotangent> in all args."""
    out = jax.eval_shape(fn, *args)
    cotangent = jax.random.normal(jax.random.key(3), out.shape)
    argnums = tuple(range(len(args)))

    # The cotangent is an argument: as a closed-over constant, XLA:CPU ran the
    # tiny-map conv's gradient 3.5x slower.
    def step(cotangent, *a):
        return jax.value_and_grad(lambda *b: jnp.vdot(fn(*b), cotangent), argnums)(*a)

    compiled = jax.jit(step, compiler_options=options)
    return bu.time_call(lambda: compiled(cotangent, *args), repeats=repeats)


def _time_torch(fn, shapes, repeats: int) -> float:
    import torch

    tensors = [torch.randn(*s, requires_grad=True) for s in shapes]

    def step():
        for t in tensors:
            t.grad = None
        fn(*tensors).sum().backward()

    return bu.time_call(step, repeats=repeats)


def bench(name: str, batch: int, repeats: int, with_torch: bool) -> list[dict]:
    """Rows for one model and batch size: one per distinct conv layer and pool input."""
    import flax.linen as nn

    from force_jax.core import compile_options
    from force_jax.models import common
    from force_jax.models.pooling import max_pool

    options = compile_options.compiler_options()
    convs, pools = layers(name)
    key = jax.random.key(0)
    rows = []
    for spec in dict.fromkeys(convs):
        size, cin, cout, k, padding = spec
        module = common.conv(cout, k, padding=padding if padding == "VALID" else None)
        x = jax.random.normal(key, (batch, size, size, cin))
        kernel = module.init(key, x)["params"]["kernel"]

        def apply(x, kernel, module=module):
            return module.apply({"params": {"kernel": kernel}}, x)

        row = {"model": name, "batch": batch, "layer": f"conv {size}x{size}x{cin}->{cout}",
               "count": convs.count(spec),
               "before_s": _time_jax(apply, (x, kernel), None, repeats),
               "after_s": _time_jax(apply, (x, kernel), options, repeats)}
        if with_torch:
            import torch.nn.functional as F

            pad = 0 if padding == "VALID" else k // 2
            row["torch_s"] = _time_torch(lambda a, w, pad=pad: F.conv2d(a, w, padding=pad),
                                         [(batch, cin, size, size), (cout, cin, k, k)], repeats)
        rows.append(row)
        bu.print_table([row], COLUMNS)
    for spec in dict.fromkeys(pools):
        size, channels = spec
        x = jax.nn.relu(jax.random.normal(key, (batch, size, size, channels)))
        row = {"model": name, "batch": batch, "layer": f"max-pool {size}x{size}x{channels}",
               "count": pools.count(spec),
               "before_s": _time_jax(lambda v: nn.max_pool(v, (2, 2), (2, 2)), (x,), options,
                                      repeats),
               "after_s": _time_jax(lambda v: max_pool(v, 2), (x,), options, repeats)}
        if with_torch:
            import torch.nn.functional as F

            row["torch_s"] = _time_torch(lambda a: F.max_pool2d(a.relu(), 2),
                                         [(batch, channels, size, size)], repeats)
        rows.append(row)
        bu.print_table([row], COLUMNS)
    return rows


def main(argv: list[str] | None = None) -> dict:
    """Runs the per-layer benchmark; returns the JSON payload."""
    parser = bu.parser(__doc__.splitlines()[0], "layer_bench", models="vgg19")
    parser.set_defaults(batch_sizes="32")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    bu.set_plain_conv(args.plain_conv)
    with_torch = importlib.util.find_spec("torch") is not None
    repeats = 1 if args.quick else args.repeats
    rows = []
    for name in bu.csv_list(args.models):
        for batch in bu.csv_list(args.batch_sizes, int):
            rows += bench(name, batch, repeats, with_torch)
    return bu.finish(args, rows, COLUMNS, repeats=repeats,
                     before="conv: jaxlib's default XLA:CPU kernels; pool: flax.linen.max_pool",
                     after="conv: force_jax.core.compile_options; pool: models.pooling.max_pool",
                     timing="median wall seconds of forward + all gradients")


if __name__ == "__main__":
    main()
