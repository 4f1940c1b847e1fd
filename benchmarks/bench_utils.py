"""Shared pieces of the benchmark scripts: machine info, timing, models, JSON output.

Not part of the library: the scripts in this folder import it as a sibling
module (``python benchmarks/<script>.py``).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# name -> (registry name, image shape (H, W, C)).
MODELS: dict[str, tuple[str, tuple[int, int, int]]] = {
    "vgg19": ("vgg19", (32, 32, 3)),
    "resnet50": ("resnet50", (32, 32, 3)),
    "lenet5": ("lenet5", (28, 28, 1)),
}
NUM_CLASSES = 10


def machine_info() -> dict[str, Any]:
    """Platform, CPU and JAX facts to store next to every timing."""
    import jaxlib

    from force_jax.core import compile_options

    device = jax.devices()[0]
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        **{key: value for key, value in compile_options.machine().items()
           if key in ("cpu_model", "avx512")},
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "compiler_options": compile_options.compiler_options(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def block(tree: Any) -> Any:
    """Waits for every array in ``tree``."""
    return jax.block_until_ready(tree)


def time_call(fn: Callable[[], Any], *, repeats: int, warmup: int = 1) -> float:
    """Median wall time in seconds of ``fn()`` (results blocked on), after warm-up calls."""
    for _ in range(warmup):
        block(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        block(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory() -> dict[str, Any]:
    """Peak memory so far: the device allocator's when it reports one, else process max RSS."""
    stats = jax.devices()[0].memory_stats()
    if stats and "peak_bytes_in_use" in stats:
        return {"bytes": int(stats["peak_bytes_in_use"]), "source": "device memory_stats"}
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return {"bytes": int(rss_kb * scale), "source": "process max RSS (getrusage)"}


def compiled_memory(compiled: Any) -> dict[str, int] | None:
    """XLA's static buffer assignment of a compiled program: its peak need, in bytes.

    ``temp`` is the scratch space of the program; arguments + outputs - aliased
    bytes + temp is what must be live at once. Works on CPU, where the device
    allocator reports nothing.
    """
    try:
        analysis = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if analysis is None:
        return None
    out = {
        "argument_bytes": int(analysis.argument_size_in_bytes),
        "output_bytes": int(analysis.output_size_in_bytes),
        "alias_bytes": int(analysis.alias_size_in_bytes),
        "temp_bytes": int(analysis.temp_size_in_bytes),
    }
    out["total_bytes"] = (
        out["argument_bytes"] + out["output_bytes"] - out["alias_bytes"] + out["temp_bytes"]
    )
    return out


def build(name: str, batch_size: int, *, key: int = 0, examples: int | None = None,
          kernels: str = "auto"):
    """A model, its variables at init and a random CIFAR/MNIST-shaped data set.

    Args:
      name: a key of ``MODELS``.
      batch_size: examples per batch.
      key: PRNG seed.
      examples: data-set size (defaults to ``2 * batch_size``).
      kernels: the model's kernel choice ("auto", "cpu", "plain";
        ``force_jax.models.kernels``).

    Returns:
      (model, variables, data) with data = {"image", "label"}.
    """
    from force_jax import models as models_lib

    registry_name, shape = MODELS[name]
    from force_jax.models import fast_conv

    # set_plain_conv(True) zeroes the tiny-map limit; loop_conv goes off with it.
    extra = {"forward_mode": True} if fast_conv.SMALL_CONV_MAX_PIXELS == 0 else {}
    model = models_lib.get_model(registry_name, NUM_CLASSES, kernels=kernels, **extra)
    k_init, k_img, k_lab = jax.random.split(jax.random.key(key), 3)
    variables = model.init(k_init, jnp.zeros((1, *shape), jnp.float32), train=False)
    n = examples or 2 * batch_size
    data = {
        "image": jax.random.normal(k_img, (n, *shape), jnp.float32),
        "label": jax.random.randint(k_lab, (n,), 0, NUM_CLASSES),
    }
    return model, variables, data


def set_plain_conv(plain: bool) -> None:
    """Plain lax convs everywhere (no tiny-map matmul, no loop_conv) when ``plain``.

    Affects the models ``build`` creates afterwards (the "before" of the two
    conv reformulations in ``force_jax.models``).
    """
    from force_jax.models import fast_conv

    if plain:
        fast_conv.SMALL_CONV_MAX_PIXELS = 0


def parser(description: str, name: str, models: str = "vgg19,resnet50,lenet5"):
    """An argparse parser with the flags every benchmark script shares.

    Args:
      description: the script's one-line description.
      name: default JSON file name (--name).
      models: default --models.

    Returns:
      The parser; scripts add their own flags to it.
    """
    import argparse

    result = argparse.ArgumentParser(description=description)
    result.add_argument("--models", default=models)
    result.add_argument("--batch-sizes", default="32,128")
    result.add_argument("--plain-conv", action="store_true",
                        help="plain lax convs: no tiny-map matmul, no loop_conv")
    result.add_argument("--kernels", default="auto", choices=("auto", "cpu", "plain"),
                        help="the models' kernels: CPU rewrites of convs and pools, or "
                             "plain Flax ops; auto picks by backend")
    result.add_argument("--quick", action="store_true", help="smoke-test settings")
    result.add_argument("--out-dir", default=None)
    result.add_argument("--name", default=name)
    return result


def finish(args: Any, rows: list[dict], columns: Sequence[str], **extra: Any) -> dict:
    """Prints the final table and writes the JSON payload (rows plus `extra`).

    Args:
      args: the parsed flags (plain_conv, quick, name, out_dir are recorded/used).
      rows: one dict per measurement.
      columns: the table's columns.
      **extra: further payload entries.

    Returns:
      The payload written.
    """
    print()
    print_table(rows, columns)
    from force_jax.models import kernels

    payload = {"plain_conv": args.plain_conv, "quick": args.quick,
               "kernels": getattr(args, "kernels", "auto"),
               "cpu_kernels": kernels.use_cpu_kernels(getattr(args, "kernels", "auto")),
               "rows": rows,
               "process_peak_memory": peak_memory(), **extra}
    path = write_results(args.name, payload, args.out_dir)
    print(f"wrote {path}")
    return payload


def csv_list(text: str, cast: Callable[[str], Any] = str) -> list:
    """Parses a comma-separated flag value."""
    return [cast(part) for part in text.split(",") if part]


def write_results(name: str, payload: dict[str, Any], out_dir: Path | None = None) -> Path:
    """Writes ``payload`` and machine info to ``<out_dir>/<name>.json`` atomically.

    Returns:
      The path written.
    """
    from force_jax.runs import files

    path = (Path(out_dir) if out_dir else RESULTS_DIR) / f"{name}.json"
    payload = {"benchmark": name, "machine": machine_info(), **payload}
    # Atomic (the folder is made if missing): a reader never sees half a file.
    files.write_atomic(str(path), json.dumps(payload, indent=2, default=_jsonable))
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Prints rows as a fixed-width table of the given columns."""

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    cells = [[fmt(row.get(c, "")) for c in columns] for row in rows]
    widths = [
        max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)
    ]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for r in cells:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)))
    sys.stdout.flush()
