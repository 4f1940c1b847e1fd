"""Tests for force_jax.models: parameter counts, shapes, modes, initialisation."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from force_jax.models import (
    MLP,
    VGG,
    LeNet5,
    ResNet,
    ResNet18,
    ResNet50,
    get_model,
    model_names,
)


def _abstract_variables(model: nn.Module, shape: tuple[int, ...]) -> dict:
    """Shapes of the model's variables, traced only (nothing is computed)."""
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.eval_shape(model.init, jax.random.key(0), x)


def _prunable_count(params) -> int:
    """Number of weights in leaves of ndim >= 2 (conv and dense kernels)."""
    return sum(leaf.size for leaf in jax.tree.leaves(params) if leaf.ndim >= 2)


def _total_count(params) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(params))


CIFAR = (1, 32, 32, 3)
MNIST = (1, 28, 28, 1)


@pytest.mark.parametrize(
    ("name", "num_classes", "shape", "expected"),
    [
        # 784*300 + 300*100 + 100*10
        ("mlp", 10, MNIST, 266_200),
        # 5*5*1*20 + 5*5*20*50 + (4*4*50)*500 + 500*10 = 500 + 25,000 + 400,000 + 5,000
        ("lenet5", 10, MNIST, 430_500),
        # Convs: 1,728 + 36,864 + 73,728 + 147,456 + 294,912 + 3*589,824
        # + 1,179,648 + 7*2,359,296 = 20,018,880; classifier 512*10 = 5,120.
        ("vgg19", 10, CIFAR, 20_024_000),
        # Stem 3*3*3*64 = 1,728; stages (bottleneck convs + 1x1 projections):
        # 212,992 + 1,212,416 + 7,077,888 + 14,942,208; classifier 2048*10 = 20,480.
        ("resnet50", 10, CIFAR, 23_467_712),
    ],
)
def test_prunable_counts(name: str, num_classes: int, shape: tuple[int, ...], expected: int):
    variables = _abstract_variables(get_model(name, num_classes), shape)
    assert _prunable_count(variables["params"]) == expected


def test_resnet18_cifar10_total_params():
    # Trainable params (kernels, biases, BN scale+bias; running stats excluded).
    # stem: 3*3*3*64 + 2*64                                   =      1,856
    # stage0: 4 * (64*64*9 + 128)                             =    147,968
    # stage1: (64*128*9 + 256) + (128*128*9 + 256)
    #         + (64*128 + 256) + 2*(128*128*9 + 256)          =    525,568
    # stage2: (128*256*9 + 512) + (256*256*9 + 512)
    #         + (128*256 + 512) + 2*(256*256*9 + 512)         =  2,099,712
    # stage3: (256*512*9 + 1024) + (512*512*9 + 1024)
    #         + (256*512 + 1024) + 2*(512*512*9 + 1024)       =  8,393,728
    # classifier: 512*10 + 10                                 =      5,130
    # total                                                   = 11,173,962
    variables = _abstract_variables(ResNet18(num_classes=10), CIFAR)
    assert _total_count(variables["params"]) == 11_173_962


def test_resnet50_imagenet_total_params():
    # torchvision's ResNet-50 has 25,557,032 trainable parameters:
    # stem 7*7*3*64 + 128 = 9,536; stages 215,808 + 1,219,584 + 7,098,368
    # + 14,964,736 (convs, projections and BN scale+bias); fc 2048*1000 + 1000
    # = 2,049,000. Sum: 25,557,032.
    model = get_model("resnet50_imagenet", 1000)
    variables = _abstract_variables(model, (1, 224, 224, 3))
    assert _total_count(variables["params"]) == 25_557_032


@pytest.mark.parametrize("name", model_names())
def test_every_named_model_builds(name: str):
    variables = _abstract_variables(get_model(name, 7), CIFAR)
    logits = jax.eval_shape(
        lambda v, x: get_model(name, 7).apply(v, x), variables, jnp.zeros(CIFAR)
    )
    assert logits.shape == (1, 7)
    # Parameters are float32 whatever the computation dtype.
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables["params"]))


SMALL_MODELS = {
    "mlp": lambda n: MLP(num_classes=n),
    "lenet5": lambda n: LeNet5(num_classes=n),
    "vgg11_narrow": lambda n: VGG(depth=11, num_classes=n, width_multiplier=0.125),
    "resnet18_narrow": lambda n: ResNet18(num_classes=n, width_multiplier=0.125),
}


@pytest.mark.parametrize("model_name", sorted(SMALL_MODELS))
@pytest.mark.parametrize("shape", [(2, 32, 32, 3), (2, 28, 28, 1)])
def test_forward_shapes_train_and_eval(model_name: str, shape: tuple[int, ...]):
    model = SMALL_MODELS[model_name](10)
    x = jax.random.normal(jax.random.key(1), shape)
    variables = model.init(jax.random.key(0), x)

    eval_logits = model.apply(variables, x, train=False)
    assert eval_logits.shape == (2, 10)
    assert eval_logits.dtype == jnp.float32
    assert np.all(np.isfinite(eval_logits))

    # Jitted as in training (checks `train` works as a static flag); the other
    # calls stay eager because compiling each of them costs more than it saves.
    train_apply = functools.partial(model.apply, train=True, mutable=["batch_stats"])
    train_logits, updates = jax.jit(train_apply)(variables, x)
    assert train_logits.shape == (2, 10)
    assert np.all(np.isfinite(train_logits))
    has_bn = "batch_stats" in variables
    assert ("batch_stats" in updates) == has_bn
    if has_bn:
        # Training mode moves the running averages away from their init values.
        old = jax.tree.leaves(variables["batch_stats"])
        new = jax.tree.leaves(updates["batch_stats"])
        assert any(not np.allclose(a, b) for a, b in zip(old, new, strict=True))


@pytest.mark.slow
def test_bottleneck_and_imagenet_stem_forward():
    model = ResNet50(num_classes=5, stem="imagenet", width_multiplier=0.125)
    x = jnp.ones((2, 64, 64, 3))
    variables = model.init(jax.random.key(0), x)
    assert model.apply(variables, x).shape == (2, 5)
    # Projection shortcut on the first block of every stage, none elsewhere.
    params = variables["params"]
    assert "proj_conv" in params["stage0_block0"]
    assert "proj_conv" not in params["stage0_block1"]
    assert params["stem_conv"]["kernel"].shape == (7, 7, 3, 8)


def test_bfloat16_computation_keeps_float32_params_and_logits():
    model = ResNet18(num_classes=10, width_multiplier=0.125, dtype=jnp.bfloat16)
    x = jnp.ones((2, 32, 32, 3))
    variables = model.init(jax.random.key(0), x)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
    assert model.apply(variables, x).dtype == jnp.float32


def test_kaiming_normal_init_statistics():
    # A full-width VGG11 at 16x16 input: cheap to initialise, big kernels.
    model = VGG(depth=11, num_classes=10)
    params = jax.jit(model.init)(jax.random.key(0), jnp.ones((1, 16, 16, 3)))["params"]
    kernel = np.asarray(params["conv_7"]["kernel"])  # 3x3x512x512, 2.4 M weights
    fan_in = 3 * 3 * 512
    expected_std = np.sqrt(2.0 / fan_in)
    std = kernel.std()
    assert abs(std / expected_std - 1.0) < 0.05
    assert abs(kernel.mean()) < 0.01 * expected_std
    # Untruncated: a truncated normal (at 2 sigma) would never exceed 2.
    assert np.abs(kernel).max() / std > 3.5

    dense_kernel = np.asarray(params["classifier"]["kernel"])
    assert abs(dense_kernel.std() / np.sqrt(2.0 / 512) - 1.0) < 0.05
    assert np.all(np.asarray(params["classifier"]["bias"]) == 0)
    assert np.all(np.asarray(params["bn_0"]["scale"]) == 1)
    assert np.all(np.asarray(params["bn_0"]["bias"]) == 0)


def test_mlp_dense_init_and_kernel_init_override():
    x = jnp.ones((1, 28, 28, 1))
    params = MLP(num_classes=10).init(jax.random.key(0), x)["params"]
    kernel = np.asarray(params["dense_0"]["kernel"])  # 784x300
    assert abs(kernel.std() / np.sqrt(2.0 / 784) - 1.0) < 0.05
    assert np.all(np.asarray(params["dense_0"]["bias"]) == 0)

    zero_model = MLP(num_classes=10, kernel_init=nn.initializers.zeros)
    zero_params = zero_model.init(jax.random.key(0), x)["params"]
    assert all(np.all(np.asarray(leaf) == 0) for leaf in jax.tree.leaves(zero_params))


def test_get_model_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="resnet50_imagenet") as error:
        get_model("alexnet", 10)
    assert "vgg19" in str(error.value) and "mlp" in str(error.value)


def test_get_model_forwards_kwargs():
    model = get_model("VGG16", 100, width_multiplier=0.5)
    assert isinstance(model, VGG)
    assert (model.depth, model.num_classes, model.width_multiplier) == (16, 100, 0.5)


def test_invalid_configurations_raise():
    with pytest.raises(ValueError, match="depth"):
        _abstract_variables(VGG(depth=12, num_classes=10), CIFAR)
    with pytest.raises(ValueError, match="stem"):
        _abstract_variables(ResNet18(num_classes=10, stem="mnist"), CIFAR)
    with pytest.raises(ValueError, match="same length"):
        _abstract_variables(ResNet(num_classes=10, stage_sizes=(1, 1), widths=(8,)), CIFAR)
