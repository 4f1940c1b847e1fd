"""Times force_jax.core.topk.topk_masks on VGG19-sized score lists (20,024,000 scores).

Usage:
  python benchmarks/topk_bench.py [--out benchmarks/results/topk_bench.json] [--quick]

Scores are |w * g| with w, g standard normal (non-negative, heavy-tailed), as
SNIP/FORCE scores look. Each case is timed with the call inside a jitted
function, after warm-up, with k passed as a traced int32 (one compile serves
every keep fraction). Besides the keep fractions, it times the exact fallback
forced from scratch (key-space narrowing + tie search) and a massive-tie case
(70% exact zeros, threshold at zero) that takes the tie path by itself. Every
result is checked for exactness against numpy in O(N). --quick shrinks the
channel widths 8x and the repeats, for a smoke test.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time
from pathlib import Path

import bench_utils
import jax
import jax.numpy as jnp
import numpy as np

from force_jax.core import topk

KEEP_FRACTIONS = (0.9, 0.5, 0.1, 0.01, 0.005, 0.001)


def vgg19_shapes(width_divisor: int = 1) -> list[tuple[int, ...]]:
    """Kernel shapes of VGG19 for CIFAR-10: 16 3x3 convs and a 512x10 classifier."""
    channels = [3] + [c // width_divisor for c in [64, 64, 128, 128] + [256] * 4 + [512] * 8]
    convs = [(3, 3, c_in, c_out) for c_in, c_out in zip(channels[:-1], channels[1:], strict=True)]
    return convs + [(channels[-1], 10)]


def snip_like_scores(shapes: list[tuple[int, ...]], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        np.abs(rng.standard_normal(s, dtype=np.float32) * rng.standard_normal(s, dtype=np.float32))
        for s in shapes
    ]


def check_exact(host_scores: list[np.ndarray], masks: list[jax.Array], k: int) -> None:
    """O(N) exactness check: everything above the k-th key is kept, ties by index."""
    flat = np.concatenate([s.reshape(-1) for s in host_scores])
    keep = np.concatenate([np.asarray(m).reshape(-1) for m in masks])
    assert int(keep.sum()) == k, (int(keep.sum()), k)
    if k == 0:
        return
    key = np.asarray(topk.ordered_key(jnp.asarray(flat)))
    threshold = key[keep].min()
    assert keep[key > threshold].all() and not keep[key < threshold].any()
    tied = np.flatnonzero(key == threshold)
    need = k - int((key > threshold).sum())
    assert keep[tied[:need]].all() and not keep[tied[need:]].any()


def time_calls(fn, args, repeats: int, warmup: int) -> list[float]:
    """Wall times in ms of fn(*args), results blocked on, after warm-up calls."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(bench_utils.RESULTS_DIR / "topk_bench.json"))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="8x narrower VGG19, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.warmup = 2, 1

    info = bench_utils.machine_info()
    info["load_average_at_start"] = list(os.getloadavg())
    shapes = vgg19_shapes(8 if args.quick else 1)
    host = snip_like_scores(shapes, args.seed)
    scores = [jnp.asarray(s) for s in host]
    total = sum(s.size for s in host)
    public = jax.jit(topk.topk_masks)
    diagnose = jax.jit(topk._topk_masks_with_info, static_argnames="force_slow")

    def forced_fallback(s, k):
        return diagnose(s, k, force_slow=True)[0]

    cases = [(f"keep {f}", host, scores, int(f * total), False) for f in KEEP_FRACTIONS]
    cases.append(("fallback (forced), keep 0.1", host, scores, int(0.1 * total), True))
    tied_host = [s.copy() for s in host]
    rng = np.random.default_rng(args.seed + 1)
    for s in tied_host:
        s[rng.random(s.shape) < 0.7] = 0.0
    nonzero = sum(int(np.count_nonzero(s)) for s in tied_host)
    tied = [jnp.asarray(s) for s in tied_host]
    cases.append(("70% zeros, threshold at 0", tied_host, tied, nonzero + total // 10, False))

    print(
        f"N = {total:,} scores in {len(host)} arrays; {info['cpu_count']} CPUs "
        f"({info['cpu_model']}); jax {info['jax_version']} on {info['device_kind']}"
    )
    header = f"{'case':30s} {'k':>10s} {'median ms':>10s} {'min ms':>8s} {'max ms':>8s}"
    print(header + f" {'path':>6s} {'passes':>6s}")
    rows = []
    for name, case_host, case_scores, k, force_slow in cases:
        k_array = jnp.int32(k)
        masks, diag = diagnose(case_scores, k_array, force_slow=force_slow)
        check_exact(case_host, masks, k)
        fn = forced_fallback if force_slow else public
        times = time_calls(fn, (case_scores, k_array), args.repeats, args.warmup)
        diag = {key: int(value) for key, value in diag.items()}
        path = "fast" if diag["fast"] else "slow"
        passes = diag["passes"] + diag["slow_passes"]
        row = {
            "case": name,
            "k": k,
            "keep_fraction": k / total,
            "path": path,
            "counting_passes": passes,
            "candidates": diag["candidates"],
            "median_ms": statistics.median(times),
            "min_ms": min(times),
            "max_ms": max(times),
            "times_ms": times,
        }
        rows.append(row)
        print(
            f"{name:30s} {k:10d} {row['median_ms']:10.1f} {row['min_ms']:8.1f} "
            f"{row['max_ms']:8.1f} {path:>6s} {passes:6d}"
        )

    info["load_average_at_end"] = list(os.getloadavg())
    print(
        f"load average (1, 5, 15 min): start {info['load_average_at_start']}, "
        f"end {info['load_average_at_end']} (other jobs may share these CPUs)"
    )
    result = {
        "benchmark": "topk_masks on a VGG19 score list",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "n_scores": total,
        "shapes": ["x".join(map(str, s)) for s in shapes],
        "repeats": args.repeats,
        "warmup": args.warmup,
        "machine": info,
        "results": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
