"""XLA compiler options that force_jax compiles its programs with.

On CPU, XLA hands some operations to one of several kernel libraries
(Eigen, YNNPACK, XNNPACK, oneDNN); the option
``xla_cpu_experimental_ynn_fusion_type`` lists the operation kinds given to
YNNPACK. :data:`CPU_YNN_FUSIONS` hands it matmuls and reductions and leaves
convolutions to XLA's own kernels, which makes the masked gradient and the
FORCE step faster on the x86 CPUs measured (figures, per CPU, in
``docs/performance.md``, "Compiler options"; ``benchmarks/options_bench.py``).

The options change the order of float operations, so results differ from
plain ``jax.jit`` by rounding, as on another CPU. They are kept because
``tests/numerics_test.py`` shows, on the machine that runs the suite, that a
FORCE step's scores and a train step's gradients on a BatchNorm VGG agree
with plain ``jax.jit`` to 1e-5 and 5e-5 of each leaf's largest entry, on a
problem far from the kinks of its gradient. Near a kink (a ReLU input within
rounding of zero) any rounding change, these options included, can switch a
branch and move a gradient by percents: that is the network's sensitivity,
not an error of the options.

The options are passed per program (``jax.jit(..., compiler_options=...)``),
never through the process-wide ``XLA_FLAGS``, so code outside force_jax is
untouched. They apply on CPU only, and not at all when ``XLA_FLAGS`` already
sets the same option (the user's choice wins) or when the installed jaxlib
does not know it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"

# Operation kinds handed to YNNPACK on CPU: matmuls and reductions, not convolutions.
CPU_YNN_FUSIONS = ("LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT", "LIBRARY_FUSION_TYPE_REDUCE")


def compiler_options(backend: str | None = None) -> dict[str, str] | None:
    """The XLA options force_jax compiles with on ``backend``.

    Args:
      backend: Platform name ("cpu", "gpu", "tpu"); None means
        ``jax.default_backend()``.

    Returns:
      A dict for ``jax.jit(..., compiler_options=...)`` on CPU, or None where
      there is nothing to set: another backend, ``XLA_FLAGS`` already naming
      the option, or a jaxlib that rejects it.
    """
    backend = backend or jax.default_backend()
    if backend != "cpu" or YNN_OPTION in os.environ.get("XLA_FLAGS", ""):
        return None
    options = {YNN_OPTION: ",".join(CPU_YNN_FUSIONS)}
    return options if _accepted(tuple(options.items())) else None


@functools.cache
def _accepted(options: tuple[tuple[str, str], ...]) -> bool:
    """Whether this jaxlib compiles a trivial program with ``options`` (checked once)."""
    try:
        jax.jit(jnp.negative, compiler_options=dict(options)).lower(1.0).compile()
    except Exception:  # any rejection means: do not use them
        return False
    return True


def outer_jit(fun: Callable[..., Any], static_argnums: int | tuple[int, ...] = ()) -> Callable:
    """The outermost ``jax.jit`` of a force_jax program, made once per function and options.

    The compiler options apply only at a top-level jit, so the pure pieces a
    user composes (`force_jax.core.program`) are never jitted with them;
    the drivers call them through this wrapper. Returning the same wrapper
    for the same function and options lets jax.jit's own cache (keyed on the
    static arguments) serve every later call: equal static arguments never
    compile twice. ``jax.clear_caches()`` frees the compiled programs.

    Args:
      fun: the function to compile.
      static_argnums: its static (hashable) arguments.

    Returns:
      The jitted function.
    """
    options = tuple(sorted((compiler_options() or {}).items()))
    return _outer_jit(fun, options, static_argnums)


@functools.cache
def _outer_jit(fun: Callable[..., Any], options: tuple[tuple[str, str], ...],
               static_argnums: int | tuple[int, ...]) -> Callable:
    return jax.jit(fun, static_argnums=static_argnums, compiler_options=dict(options) or None)


def jit(fun: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
    """``jax.jit`` with :func:`compiler_options` for the default backend.

    Args:
      fun: Function to compile.
      **kwargs: Other ``jax.jit`` arguments (``donate_argnums``,
        ``out_shardings``, ...).

    Returns:
      The jitted function.
    """
    return jax.jit(fun, compiler_options=compiler_options(), **kwargs)


def machine(cpuinfo: str = "/proc/cpuinfo") -> dict[str, Any]:
    """What a compiled program's rounding depends on, for run records.

    Args:
      cpuinfo: Linux's CPU description (absent elsewhere: the CPU is then "unknown").

    Returns:
      {"cpu_model", "avx512", "backend", "jax", "jaxlib", "compiler_options"}.
    """
    import jaxlib

    try:
        with open(cpuinfo) as f:
            text = f.read()
    except OSError:
        text = ""
    fields = {key.strip(): value.strip()
              for key, value in (line.split(":", 1) for line in text.splitlines() if ":" in line)}
    return {
        "cpu_model": fields.get("model name", "unknown"),
        "avx512": "avx512f" in fields.get("flags", "").split(),
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "compiler_options": compiler_options(),
    }
