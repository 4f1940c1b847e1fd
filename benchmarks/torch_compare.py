"""VGG-19 (CIFAR form) forward+backward: JAX masked gradient step vs PyTorch, same run.

The PyTorch side is a small module written here with the same architecture as
force_jax.models.VGG(depth=19): 3x3 convs without bias + BatchNorm + ReLU,
2x2 max-pools between stages (none after the last), global average pool, one
linear layer. It is timed for one forward+backward of the cross-entropy loss.
The JAX side is the masked gradient the pruning schedules take per step,
grad(loss(params * mask)), jitted. Skips cleanly when torch is not installed
(torch is an optional, benchmark-only dependency).

    python benchmarks/torch_compare.py
    python benchmarks/torch_compare.py --plain-conv   # lax conv on the 2x2 maps too
    python benchmarks/torch_compare.py --quick --models lenet5
"""

from __future__ import annotations

import importlib.util
import time

import bench_utils as bu
import jax

VGG19_STAGES = ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)


def torch_model(name: str):
    """The PyTorch twin of a force_jax model (vgg19 or, for smoke tests, lenet5)."""
    from torch import nn

    if name == "lenet5":  # a conv net of the same small size, for the quick mode only
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, bu.NUM_CLASSES),
        )
    layers: list = []
    in_channels = 3
    for index, stage in enumerate(VGG19_STAGES):
        if index > 0:
            layers.append(nn.MaxPool2d(2))
        for channels in stage:
            layers += [
                nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, bu.NUM_CLASSES)]
    return nn.Sequential(*layers)


def time_torch(name: str, batch_size: int, repeats: int) -> float:
    """Median seconds of one forward+backward in PyTorch (train mode)."""
    import torch

    model = torch_model(name).train()
    _, (h, w, c) = bu.MODELS[name]
    x = torch.randn(batch_size, c, h, w)
    y = torch.randint(0, bu.NUM_CLASSES, (batch_size,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()

    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def time_jax(name: str, batch_size: int, repeats: int) -> float:
    """Median seconds of the jitted masked gradient step in JAX."""
    from force_jax.core import compile_options, losses, masks

    model, variables, data = bu.build(name, batch_size, examples=batch_size)
    loss_fn = losses.classification_loss(model, variables)
    mask = masks.init_mask(variables["params"])
    grad_fn = compile_options.jit(lambda p, m, b: jax.grad(loss_fn)(masks.apply_mask(p, m), b))
    return bu.time_call(lambda: grad_fn(variables["params"], mask, data), repeats=repeats)


def main(argv: list[str] | None = None) -> dict | None:
    """Runs the comparison; returns the JSON payload (None when torch is absent)."""
    parser = bu.parser(__doc__.splitlines()[0], "torch_compare", models="vgg19")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if importlib.util.find_spec("torch") is None:
        print("torch is not installed; skipping the PyTorch comparison")
        return None
    import torch

    bu.set_plain_conv(args.plain_conv)
    repeats = 1 if args.quick else args.repeats
    rows = []
    columns = ("model", "batch", "torch_fwd_bwd_s", "jax_masked_grad_s", "jax_over_torch")
    for name in bu.csv_list(args.models):
        for batch_size in bu.csv_list(args.batch_sizes, int):
            # Alternate the two so machine load drifts hit both alike.
            torch_s = time_torch(name, batch_size, repeats)
            jax_s = time_jax(name, batch_size, repeats)
            row = {
                "model": name,
                "batch": batch_size,
                "torch_fwd_bwd_s": torch_s,
                "jax_masked_grad_s": jax_s,
                "jax_over_torch": jax_s / torch_s,
            }
            rows.append(row)
            bu.print_table([row], columns)
    return bu.finish(args, rows, columns, repeats=repeats, torch_version=torch.__version__,
                     torch_threads=torch.get_num_threads(), timing="median wall seconds")


if __name__ == "__main__":
    main()
