"""XLA compiler options that force_jax compiles its programs with.

On CPU, XLA hands some operations to one of several kernel libraries
(Eigen, YNNPACK, XNNPACK, oneDNN); the option
``xla_cpu_experimental_ynn_fusion_type`` lists the operation kinds given to
YNNPACK. With jaxlib 0.10.2's default list, convolutions go to YNNPACK,
which on the 2-core x86-64 (AVX-512) machine these figures come from ran
VGG-19's convolutions slower than XLA's Eigen kernels (forward + both
gradients of a 32x32x64 -> 64 layer at batch 32: 35 ms against 20 ms,
``benchmarks/layer_bench.py``), while
its matmuls and reductions were the fastest available. :data:`CPU_YNN_FUSIONS`
keeps those two and leaves convolutions to Eigen: the VGG-19 masked gradient
at batch 32 went from 0.32 s to 0.27 s (``benchmarks/torch_compare.py``).

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
