"""PyTorch twins of the test networks, written from the architectures' descriptions.

A twin gets force_jax's weights copied in (Flax HWIO kernels to torch OIHW, Flax (in, out)
dense kernels to torch (out, in)), so a method's equations can be run on it with PyTorch's
own kernels and autograd and compared with force_jax's scores.
"""

from __future__ import annotations

import numpy as np

import force_jax as fj
from force_jax.models.common import scaled_width


def torch_vgg11(width: float):
    """VGG-11 (CIFAR form, BatchNorm) in PyTorch."""
    from torch import nn

    layers, in_channels = [], 3
    stages = fj.models.VGG(depth=11, num_classes=10).stage_channels()
    for index, stage in enumerate(stages):
        if index > 0:
            layers.append(nn.MaxPool2d(2))
        for channels in stage:
            out = scaled_width(channels, width)
            layers += [nn.Conv2d(in_channels, out, 3, padding=1, bias=False),
                       nn.BatchNorm2d(out), nn.ReLU()]
            in_channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, 10)]
    return nn.Sequential(*layers)


def copy_vgg_params(net, params) -> dict[str, str]:
    """Copies a force_jax VGG's params into `torch_vgg11`; returns torch name -> Flax leaf name.

    Args:
      net: the twin.
      params: the Flax params (conv_i/kernel, bn_i/scale and bias, classifier).

    Returns:
      For every torch parameter, the `masks.path_name` of the Flax leaf it came from.
    """
    import torch

    names = {}
    convs = [(n, m) for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)]
    bns = [(n, m) for n, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    linear_name, linear = [(n, m) for n, m in net.named_modules()
                           if isinstance(m, torch.nn.Linear)][0]
    with torch.no_grad():
        for i, (name, conv) in enumerate(convs):
            kernel = np.asarray(params[f"conv_{i}"]["kernel"])
            conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
            names[f"{name}.weight"] = f"conv_{i}/kernel"
        for i, (name, bn) in enumerate(bns):
            bn.weight.copy_(torch.from_numpy(np.array(params[f"bn_{i}"]["scale"])))
            bn.bias.copy_(torch.from_numpy(np.array(params[f"bn_{i}"]["bias"])))
            names[f"{name}.weight"] = f"bn_{i}/scale"
            names[f"{name}.bias"] = f"bn_{i}/bias"
        linear.weight.copy_(torch.from_numpy(np.asarray(params["classifier"]["kernel"]).T.copy()))
        linear.bias.copy_(torch.from_numpy(np.array(params["classifier"]["bias"])))
        names[f"{linear_name}.weight"] = "classifier/kernel"
        names[f"{linear_name}.bias"] = "classifier/bias"
    return names


def to_flax_layout(array: np.ndarray) -> np.ndarray:
    """A torch weight (or its gradient) in Flax's layout: OIHW -> HWIO, (out, in) -> (in, out)."""
    if array.ndim == 4:
        return array.transpose(2, 3, 1, 0)
    return array.T if array.ndim == 2 else array


def images_to_torch(images) -> object:
    """NHWC images as a torch NCHW float tensor."""
    import torch

    return torch.from_numpy(np.asarray(images, np.float32).transpose(0, 3, 1, 2).copy())
