"""One mask with ProsPr, NTK-SAP and PHEW: force_jax against each method's official code.

VGG-19 (CIFAR form, BatchNorm), 32x32x3 inputs, 10 classes, batch 128, 98 %
sparsity, on the CPU, every method at its official code's defaults for one
mask: ProsPr 3 full (second-order) inner steps at lr 0.1 on fresh batches;
NTK-SAP one iteration of R = 1 sample, epsilon 0.01, noise batch 128 (the
command line's defaults: --prune-epochs 1 --ntksap_R 1); PHEW its walks to
2 % of the weights. The official code runs in this process, on a PyTorch
VGG-19 of the same architecture (NTK-SAP on its own masked VGG-19, which its
pruner requires). force_jax is timed on its first call (compile included)
and on a second call (compiled); the official code on its second call.

The official code is never part of force_jax: give the folder of the three
checkouts (prospr, NTK-SAP, PHEW) with --official, or the benchmark clones
them from GitHub into it; a method whose code is missing is reported as
such. Usage:

    python benchmarks/newer_methods_bench.py --official /tmp/official --out-dir benchmarks/results
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from bench_utils import finish, parser

import force_jax as fj
from force_jax.core import methods

REPOS = {"prospr": "https://github.com/mil-ad/prospr",
         "NTK-SAP": "https://github.com/YiteWang/NTK-SAP",
         "PHEW": "https://github.com/ShreyasMalakarjunPatil/PHEW"}
SPARSITY = 0.98
BATCH = 128
SHAPE = (32, 32, 3)


def checkout(root: str, name: str, clone: bool = True) -> str | None:
    """The official checkout `name` under root, cloned if absent; None if unavailable."""
    path = os.path.join(root, name)
    if not os.path.isdir(path):
        done = None
        if clone:
            os.makedirs(root, exist_ok=True)
            try:
                done = subprocess.run(["git", "clone", "--depth", "1", REPOS[name], path],
                                      capture_output=True, check=False, timeout=120,
                                      env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
            except subprocess.TimeoutExpired:
                done = None
        if done is None or done.returncode:
            print(f"official {name} code unavailable at {path}; not timed")
            return None
    return path


def timed(fn) -> tuple[float, float]:
    """(first call, second call) seconds; each result is blocked on."""
    out = []
    for _ in range(2):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        out.append(time.perf_counter() - start)
    return out[0], out[1]


def ours(method: str, model, variables, data, batch: int) -> tuple[float, float]:
    """force_jax's time to one mask (first call, second call)."""
    loss = fj.classification_loss(model, variables, loss="cross_entropy")
    probe = fj.network_probe(model, variables, SHAPE)
    record = {"prospr": methods.get("prospr"),
              "ntk_sap": methods.get("ntk_sap", samples=1, noise_batch=batch),
              "phew": methods.get("phew")}[method]
    steps = 1

    def run():
        mask, _ = fj.prune(loss, variables["params"], data, method=record, sparsity=SPARSITY,
                           steps=steps, batch_size=batch, key=jax.random.key(0), probe=probe,
                           track_objective=False)
        return mask

    return timed(run)


def torch_vgg19():
    """VGG-19 (CIFAR form, BatchNorm, no conv bias) in PyTorch."""
    from torch import nn

    layers, channels = [], 3
    for index, stage in enumerate(fj.models.VGG(depth=19, num_classes=10).stage_channels()):
        if index:
            layers.append(nn.MaxPool2d(2))
        for out in stage:
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.ReLU()]
            channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10)]
    return nn.Sequential(*layers)


def official_prospr(root: str, data, clone: bool) -> float | None:
    import torch

    path = checkout(root, "prospr", clone)
    if path is None:
        return None
    sys.path.insert(0, path)
    from prospr import prospr
    from prospr.utils import pruning_filter_factory

    x = torch.from_numpy(np.asarray(data["image"]).transpose(0, 3, 1, 2).copy())
    y = torch.from_numpy(np.asarray(data["label"]).astype(np.int64))
    loader = [(x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]) for i in range(4)]

    def run():
        return prospr.prune(torch_vgg19(), SPARSITY, loader, pruning_filter_factory(10, False),
                            3, 0.1, 0.0, "full", False, True)

    return timed(run)[1]


def official_ntk_sap(root: str, clone: bool) -> float | None:
    import torch

    path = checkout(root, "NTK-SAP", clone)
    if path is None:
        return None
    sys.path.insert(0, path)
    from Models import lottery_vgg
    from Pruners import pruners
    from Utils import generator

    x = torch.randn(BATCH, 3, 32, 32)
    loader = [(x, torch.zeros(BATCH, dtype=torch.int64))]

    def run():
        model = lottery_vgg.vgg19_bn((3, 32, 32), 10)
        model.train()
        pruner = pruners.NTKSAP(generator.masked_parameters(model), ntksap_epsilon=0.01,
                                ntksap_R=1)
        pruner.score(model, torch.nn.functional.cross_entropy, loader, torch.device("cpu"))
        pruner.mask(1.0 - SPARSITY, "global")
        return 0

    return timed(run)[1]


def official_phew(root: str, clone: bool) -> float | None:
    path = checkout(root, "PHEW", clone)
    if path is None:
        return None
    sys.path.insert(0, os.path.join(path, "PHEW"))
    sys.path.insert(0, path)
    import phew

    # The official code takes int() of np.random.choice(..., 1, p), a shape-(1,) array,
    # which numpy 2 refuses; the same draw as a 0-d array runs it unchanged.
    class _Random:
        def __getattr__(self, name):
            return getattr(np.random, name)

        def choice(self, *args, **kwargs):
            return np.random.choice(*args, **kwargs).reshape(())

    class _Numpy:
        random = _Random()

        def __getattr__(self, name):
            return getattr(np, name)

    phew.np = _Numpy()

    def run():
        phew.phew_masks(torch_vgg19(), SPARSITY * 100, verbose=False)
        return 0

    return timed(run)[1]


def main() -> None:
    flags = parser(__doc__.split("\n")[0], "newer_methods", models="vgg19")
    flags.add_argument("--official", default="/tmp/official",
                       help="folder of the official checkouts (cloned there if absent)")
    flags.add_argument("--methods", default="prospr,ntk_sap,phew")
    flags.add_argument("--no-clone", action="store_true",
                       help="time only the official checkouts already under --official")
    args = flags.parse_args()

    if args.quick:  # a smoke test: LeNet-5, the official code not run
        model, batch, clone = fj.models.get_model("lenet5", 10), 8, False
    else:
        model, batch, clone = fj.models.VGG(depth=19, num_classes=10), BATCH, not args.no_clone
    variables = model.init(jax.random.key(0), jnp.zeros((1, *SHAPE)), train=False)
    kx, ky = jax.random.split(jax.random.key(1))
    data = {"image": np.asarray(jax.random.normal(kx, (4 * batch, *SHAPE))),
            "label": np.asarray(jax.random.randint(ky, (4 * batch,), 0, 10))}
    official = {"prospr": lambda: official_prospr(args.official, data, clone),
                "ntk_sap": lambda: official_ntk_sap(args.official, clone),
                "phew": lambda: official_phew(args.official, clone)}
    if not args.quick:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    for method in args.methods.split(","):
        first, second = ours(method, model, variables, data, batch)
        if args.quick:
            rows.append({"method": method, "force_jax_first_s": first, "force_jax_s": second,
                         "official_s": None, "force_jax_over_official": None})
            continue
        theirs = official[method]()
        ratio = None if theirs is None else second / theirs
        rows.append({"method": method, "force_jax_first_s": first, "force_jax_s": second,
                     "official_s": theirs, "force_jax_over_official": ratio})
        print(f"{method:8s} force_jax {second:7.2f} s (first call {first:7.2f} s)  official "
              + ("   n/a" if theirs is None else f"{theirs:7.2f} s  ratio {ratio:.2f}"),
              flush=True)
    finish(args, rows, ("method", "force_jax_first_s", "force_jax_s", "official_s",
                        "force_jax_over_official"),
           model="lenet5" if args.quick else "vgg19", batch=batch, sparsity=SPARSITY)


if __name__ == "__main__":
    main()
