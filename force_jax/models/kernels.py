"""The one seam for the conv and pooling kernels a model uses, chosen per backend.

Three exact rewrites in :mod:`force_jax.models` exist because XLA:CPU runs the
plain ops slowly on the shapes of pruning at initialisation, as measured on CPU
(``benchmarks/layer_bench.py``): stride-1 convs over maps of at most four
pixels as one matmul (:func:`force_jax.models.fast_conv.small_map_conv`), conv
gradients through a custom VJP that stays fast inside ``lax.scan``
(:mod:`force_jax.models.loop_conv`), and non-overlapping max-pooling through
strided slices (:mod:`force_jax.models.pooling`). Nothing says they help on
GPU or TPU, and the custom VJP rules out forward-mode differentiation.

So the choice is made once, in an :class:`Ops` record that every model with
convs holds as its single ``ops`` attribute (``VGG``, ``ResNet`` and its
blocks, ``LeNet5``; :func:`force_jax.models.get_model` fills it from its
``kernels`` and ``forward_mode`` arguments). The models build every conv with
``ops.conv`` and pool with ``ops.max_pool``. The ``kernels`` choice is one of
``KERNELS``:

- ``"auto"`` (the default): the rewrites on CPU, the plain Flax/lax ops on
  any other backend (``jax.default_backend()`` when the model is traced);
- ``"cpu"``: the rewrites on any backend;
- ``"plain"``: ``flax.linen.Conv`` and ``flax.linen.max_pool`` everywhere.

``forward_mode=True`` keeps the rewrites but differentiates convs through
``lax`` rather than the custom VJP, so ``jax.jvp`` and ``jax.hessian`` work
(the plain ops, and the pooling rewrite, allow forward mode anyway).

Every choice computes the same function with the same parameters, in value
and gradient (tests/models_kernels_test.py), so a checkpoint or a mask moves
between them.

Example::

    ops = make_ops("plain")
    model = VGG(depth=11, num_classes=10, ops=ops)  # or get_model("vgg11", 10, kernels="plain")
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax

from force_jax.models import fast_conv, pooling

KERNELS = ("auto", "cpu", "plain")


def check_kernels(kernels: str) -> str:
    """Validates a ``kernels`` choice.

    Args:
      kernels: The value to check.

    Returns:
      ``kernels`` unchanged.

    Raises:
      ValueError: naming the ``kernels`` argument, for a value outside ``KERNELS``.
    """
    if kernels not in KERNELS:
        raise ValueError(f"`kernels` is {kernels!r}; expected one of {', '.join(KERNELS)}")
    return kernels


def use_cpu_kernels(kernels: str = "auto", backend: str | None = None) -> bool:
    """Whether a model built with ``kernels`` takes the CPU rewrites.

    Args:
      kernels: One of ``KERNELS``.
      backend: Platform the model runs on ("cpu", "gpu", "tpu"); None means
        ``jax.default_backend()``. Only read for ``"auto"``.

    Returns:
      True for "cpu", False for "plain"; for "auto", whether the backend is CPU.

    Raises:
      ValueError: naming ``kernels``, for a value outside ``KERNELS``.
    """
    if check_kernels(kernels) == "auto":
        return (backend or jax.default_backend()) == "cpu"
    return kernels == "cpu"


@dataclasses.dataclass(frozen=True)
class Ops:
    """How a model computes its convs and max-pools (see the module docstring).

    A frozen, hashable record, compared by value, so it can be a Flax module
    attribute. ``Ops()`` is the default of every model: ``"auto"``, reverse
    mode only.

    Attributes:
      kernels: One of ``KERNELS``; ``"auto"`` is resolved each time
        :meth:`conv` or :meth:`max_pool` runs, i.e. when the model is traced.
      forward_mode: Build convs that allow forward-mode differentiation (no
        custom VJP); their reverse-mode gradients are slower inside XLA:CPU
        loops.
    """

    kernels: str = "auto"
    forward_mode: bool = False

    def __post_init__(self) -> None:
        check_kernels(self.kernels)

    def cpu_rewrites(self) -> bool:
        """Whether the CPU rewrites apply on the current backend.

        Returns:
          :func:`use_cpu_kernels` of ``kernels`` for ``jax.default_backend()``.
        """
        return use_cpu_kernels(self.kernels)

    def conv(self, **attributes: Any) -> nn.Conv:
        """Builds a conv layer (a Flax ``ModuleDef``: call it inside a compact method).

        Args:
          **attributes: ``flax.linen.Conv`` attributes (features, kernel_size,
            strides, padding, name, ...).

        Returns:
          A :class:`force_jax.models.fast_conv.Conv` where the rewrites apply,
          else a ``flax.linen.Conv``; both have the same parameters.
        """
        if not self.cpu_rewrites():
            return nn.Conv(**attributes)
        return fast_conv.Conv(fast_loop_grad=not self.forward_mode, **attributes)

    def max_pool(self, x: jax.Array, window: int) -> jax.Array:
        """Non-overlapping ``window x window`` max-pooling ("VALID") of an NHWC map.

        Args:
          x: Array of shape ``(batch, H, W, C)``.
          window: Side of the square window, also the stride.

        Returns:
          Array of shape ``(batch, H // window, W // window, C)``: strided
          slices (:func:`force_jax.models.pooling.max_pool`) where the rewrites
          apply, ``flax.linen.max_pool`` otherwise.
        """
        if self.cpu_rewrites():
            return pooling.max_pool(x, window)
        return nn.max_pool(x, (window, window), strides=(window, window), padding="VALID")


# What a model built without an ``ops`` attribute uses: "auto", reverse mode only.
DEFAULT_OPS = Ops()


def make_ops(kernels: str = "auto", *, forward_mode: bool = False,
             backend: str | None = None) -> Ops:
    """Makes the kernel choice of a model, once.

    Args:
      kernels: One of ``KERNELS``.
      forward_mode: Allow forward-mode differentiation (see :class:`Ops`).
      backend: Resolve ``"auto"`` now for this platform ("cpu", "gpu", "tpu");
        None leaves it to be resolved when the model is traced.

    Returns:
      The :class:`Ops` record to store as a model's ``ops`` attribute.

    Raises:
      ValueError: naming ``kernels``, for a value outside ``KERNELS``.
    """
    if backend is not None:
        kernels = "cpu" if use_cpu_kernels(kernels, backend) else "plain"
    return Ops(kernels=check_kernels(kernels), forward_mode=forward_mode)
