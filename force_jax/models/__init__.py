"""Flax Linen models used in the FORCE paper's experiments.

Every model maps NHWC float images to float32 logits of shape
``(batch, num_classes)`` via ``model.apply(variables, x, train=...)``. Models
with BatchNorm need ``mutable=["batch_stats"]`` when ``train=True``. Models
with convs take one ``ops`` attribute, how convs and pools are computed
(:mod:`force_jax.models.kernels`), which :func:`get_model` fills.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from force_jax.models import kernels as kernels_lib
from force_jax.models.common import kaiming_normal as kaiming_normal
from force_jax.models.kernels import Ops as Ops
from force_jax.models.kernels import make_ops as make_ops
from force_jax.models.lenet import LeNet5 as LeNet5
from force_jax.models.mlp import MLP as MLP
from force_jax.models.resnet import BasicBlock as BasicBlock
from force_jax.models.resnet import Bottleneck as Bottleneck
from force_jax.models.resnet import ResNet as ResNet
from force_jax.models.resnet import ResNet18 as ResNet18
from force_jax.models.resnet import ResNet34 as ResNet34
from force_jax.models.resnet import ResNet50 as ResNet50
from force_jax.models.resnet import ResNet110 as ResNet110
from force_jax.models.vgg import VGG as VGG

# Name -> constructor taking num_classes and keyword overrides. A read-only
# table built once at import; callers do not register into it.
_MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "lenet5": LeNet5,
    "vgg11": functools.partial(VGG, depth=11),
    "vgg13": functools.partial(VGG, depth=13),
    "vgg16": functools.partial(VGG, depth=16),
    "vgg19": functools.partial(VGG, depth=19),
    "resnet18": ResNet18,
    "resnet34": ResNet34,
    "resnet50": ResNet50,
    "resnet110": ResNet110,
    "resnet50_imagenet": functools.partial(ResNet50, stem="imagenet"),
}


def model_names() -> tuple[str, ...]:
    """Lists the names accepted by :func:`get_model`.

    Returns:
      The valid model names, sorted.
    """
    return tuple(sorted(_MODELS))


def get_model(
    name: str,
    num_classes: int,
    *,
    kernels: str = "auto",
    forward_mode: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Builds a model by name.

    Example: ``get_model("vgg11", 10, kernels="plain", width_multiplier=0.125)``.

    Args:
      name: One of :func:`model_names` (case-insensitive), e.g. "vgg19",
        "resnet50" (CIFAR stem) or "resnet50_imagenet".
      num_classes: Number of output logits.
      kernels: "auto", "cpu" or "plain": how convs and pools are computed
        (:mod:`force_jax.models.kernels`); "auto" is resolved when the model
        is traced. Ignored by models without convs (the MLP).
      forward_mode: Build convs that allow forward-mode differentiation
        (``jax.jvp``, ``jax.hessian``); see :class:`Ops`.
      **kwargs: Further module attributes, e.g. ``width_multiplier=0.25`` or
        ``dtype=jnp.bfloat16``.

    Returns:
      An unbound Flax module; one with convs holds ``make_ops(kernels,
      forward_mode=forward_mode)`` as its ``ops``.

    Raises:
      ValueError: If ``name`` is unknown (the message lists the valid names)
        or ``kernels`` is not a valid choice.
      TypeError: If ``ops`` is passed: it is built from ``kernels`` and
        ``forward_mode``.
    """
    key = name.lower()
    if key not in _MODELS:
        raise ValueError(f"Unknown model {name!r}; valid names: {', '.join(model_names())}.")
    if "ops" in kwargs:
        raise TypeError("get_model builds `ops` from `kernels` and `forward_mode`; pass those")
    ops = kernels_lib.make_ops(kernels, forward_mode=forward_mode)
    model = _MODELS[key](num_classes=num_classes, **kwargs)
    if hasattr(model, "ops"):
        model = model.clone(ops=ops)
    return model
