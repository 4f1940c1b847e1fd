"""Parameter trees do not depend on the kernel choice, so checkpoints and masks still load.

The expected paths and shapes were recorded from the models before the kernel
choice became one ``ops`` attribute (force_jax.models.kernels); they must not
change with it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from force_jax import models

INPUTS = {"vgg11": (1, 32, 32, 3), "resnet18": (1, 32, 32, 3), "lenet5": (1, 28, 28, 1)}

EXPECTED: dict[str, dict[str, tuple[int, ...]]] = {
    "vgg11": {
        "batch_stats/bn_0/mean": (64,),
        "batch_stats/bn_0/var": (64,),
        "batch_stats/bn_1/mean": (128,),
        "batch_stats/bn_1/var": (128,),
        "batch_stats/bn_2/mean": (256,),
        "batch_stats/bn_2/var": (256,),
        "batch_stats/bn_3/mean": (256,),
        "batch_stats/bn_3/var": (256,),
        "batch_stats/bn_4/mean": (512,),
        "batch_stats/bn_4/var": (512,),
        "batch_stats/bn_5/mean": (512,),
        "batch_stats/bn_5/var": (512,),
        "batch_stats/bn_6/mean": (512,),
        "batch_stats/bn_6/var": (512,),
        "batch_stats/bn_7/mean": (512,),
        "batch_stats/bn_7/var": (512,),
        "params/bn_0/bias": (64,),
        "params/bn_0/scale": (64,),
        "params/bn_1/bias": (128,),
        "params/bn_1/scale": (128,),
        "params/bn_2/bias": (256,),
        "params/bn_2/scale": (256,),
        "params/bn_3/bias": (256,),
        "params/bn_3/scale": (256,),
        "params/bn_4/bias": (512,),
        "params/bn_4/scale": (512,),
        "params/bn_5/bias": (512,),
        "params/bn_5/scale": (512,),
        "params/bn_6/bias": (512,),
        "params/bn_6/scale": (512,),
        "params/bn_7/bias": (512,),
        "params/bn_7/scale": (512,),
        "params/classifier/bias": (10,),
        "params/classifier/kernel": (512, 10),
        "params/conv_0/kernel": (3, 3, 3, 64),
        "params/conv_1/kernel": (3, 3, 64, 128),
        "params/conv_2/kernel": (3, 3, 128, 256),
        "params/conv_3/kernel": (3, 3, 256, 256),
        "params/conv_4/kernel": (3, 3, 256, 512),
        "params/conv_5/kernel": (3, 3, 512, 512),
        "params/conv_6/kernel": (3, 3, 512, 512),
        "params/conv_7/kernel": (3, 3, 512, 512),
    },
    "resnet18": {
        "batch_stats/stage0_block0/bn_0/mean": (64,),
        "batch_stats/stage0_block0/bn_0/var": (64,),
        "batch_stats/stage0_block0/bn_1/mean": (64,),
        "batch_stats/stage0_block0/bn_1/var": (64,),
        "batch_stats/stage0_block1/bn_0/mean": (64,),
        "batch_stats/stage0_block1/bn_0/var": (64,),
        "batch_stats/stage0_block1/bn_1/mean": (64,),
        "batch_stats/stage0_block1/bn_1/var": (64,),
        "batch_stats/stage1_block0/bn_0/mean": (128,),
        "batch_stats/stage1_block0/bn_0/var": (128,),
        "batch_stats/stage1_block0/bn_1/mean": (128,),
        "batch_stats/stage1_block0/bn_1/var": (128,),
        "batch_stats/stage1_block0/proj_bn/mean": (128,),
        "batch_stats/stage1_block0/proj_bn/var": (128,),
        "batch_stats/stage1_block1/bn_0/mean": (128,),
        "batch_stats/stage1_block1/bn_0/var": (128,),
        "batch_stats/stage1_block1/bn_1/mean": (128,),
        "batch_stats/stage1_block1/bn_1/var": (128,),
        "batch_stats/stage2_block0/bn_0/mean": (256,),
        "batch_stats/stage2_block0/bn_0/var": (256,),
        "batch_stats/stage2_block0/bn_1/mean": (256,),
        "batch_stats/stage2_block0/bn_1/var": (256,),
        "batch_stats/stage2_block0/proj_bn/mean": (256,),
        "batch_stats/stage2_block0/proj_bn/var": (256,),
        "batch_stats/stage2_block1/bn_0/mean": (256,),
        "batch_stats/stage2_block1/bn_0/var": (256,),
        "batch_stats/stage2_block1/bn_1/mean": (256,),
        "batch_stats/stage2_block1/bn_1/var": (256,),
        "batch_stats/stage3_block0/bn_0/mean": (512,),
        "batch_stats/stage3_block0/bn_0/var": (512,),
        "batch_stats/stage3_block0/bn_1/mean": (512,),
        "batch_stats/stage3_block0/bn_1/var": (512,),
        "batch_stats/stage3_block0/proj_bn/mean": (512,),
        "batch_stats/stage3_block0/proj_bn/var": (512,),
        "batch_stats/stage3_block1/bn_0/mean": (512,),
        "batch_stats/stage3_block1/bn_0/var": (512,),
        "batch_stats/stage3_block1/bn_1/mean": (512,),
        "batch_stats/stage3_block1/bn_1/var": (512,),
        "batch_stats/stem_bn/mean": (64,),
        "batch_stats/stem_bn/var": (64,),
        "params/classifier/bias": (10,),
        "params/classifier/kernel": (512, 10),
        "params/stage0_block0/bn_0/bias": (64,),
        "params/stage0_block0/bn_0/scale": (64,),
        "params/stage0_block0/bn_1/bias": (64,),
        "params/stage0_block0/bn_1/scale": (64,),
        "params/stage0_block0/conv_0/kernel": (3, 3, 64, 64),
        "params/stage0_block0/conv_1/kernel": (3, 3, 64, 64),
        "params/stage0_block1/bn_0/bias": (64,),
        "params/stage0_block1/bn_0/scale": (64,),
        "params/stage0_block1/bn_1/bias": (64,),
        "params/stage0_block1/bn_1/scale": (64,),
        "params/stage0_block1/conv_0/kernel": (3, 3, 64, 64),
        "params/stage0_block1/conv_1/kernel": (3, 3, 64, 64),
        "params/stage1_block0/bn_0/bias": (128,),
        "params/stage1_block0/bn_0/scale": (128,),
        "params/stage1_block0/bn_1/bias": (128,),
        "params/stage1_block0/bn_1/scale": (128,),
        "params/stage1_block0/conv_0/kernel": (3, 3, 64, 128),
        "params/stage1_block0/conv_1/kernel": (3, 3, 128, 128),
        "params/stage1_block0/proj_bn/bias": (128,),
        "params/stage1_block0/proj_bn/scale": (128,),
        "params/stage1_block0/proj_conv/kernel": (1, 1, 64, 128),
        "params/stage1_block1/bn_0/bias": (128,),
        "params/stage1_block1/bn_0/scale": (128,),
        "params/stage1_block1/bn_1/bias": (128,),
        "params/stage1_block1/bn_1/scale": (128,),
        "params/stage1_block1/conv_0/kernel": (3, 3, 128, 128),
        "params/stage1_block1/conv_1/kernel": (3, 3, 128, 128),
        "params/stage2_block0/bn_0/bias": (256,),
        "params/stage2_block0/bn_0/scale": (256,),
        "params/stage2_block0/bn_1/bias": (256,),
        "params/stage2_block0/bn_1/scale": (256,),
        "params/stage2_block0/conv_0/kernel": (3, 3, 128, 256),
        "params/stage2_block0/conv_1/kernel": (3, 3, 256, 256),
        "params/stage2_block0/proj_bn/bias": (256,),
        "params/stage2_block0/proj_bn/scale": (256,),
        "params/stage2_block0/proj_conv/kernel": (1, 1, 128, 256),
        "params/stage2_block1/bn_0/bias": (256,),
        "params/stage2_block1/bn_0/scale": (256,),
        "params/stage2_block1/bn_1/bias": (256,),
        "params/stage2_block1/bn_1/scale": (256,),
        "params/stage2_block1/conv_0/kernel": (3, 3, 256, 256),
        "params/stage2_block1/conv_1/kernel": (3, 3, 256, 256),
        "params/stage3_block0/bn_0/bias": (512,),
        "params/stage3_block0/bn_0/scale": (512,),
        "params/stage3_block0/bn_1/bias": (512,),
        "params/stage3_block0/bn_1/scale": (512,),
        "params/stage3_block0/conv_0/kernel": (3, 3, 256, 512),
        "params/stage3_block0/conv_1/kernel": (3, 3, 512, 512),
        "params/stage3_block0/proj_bn/bias": (512,),
        "params/stage3_block0/proj_bn/scale": (512,),
        "params/stage3_block0/proj_conv/kernel": (1, 1, 256, 512),
        "params/stage3_block1/bn_0/bias": (512,),
        "params/stage3_block1/bn_0/scale": (512,),
        "params/stage3_block1/bn_1/bias": (512,),
        "params/stage3_block1/bn_1/scale": (512,),
        "params/stage3_block1/conv_0/kernel": (3, 3, 512, 512),
        "params/stage3_block1/conv_1/kernel": (3, 3, 512, 512),
        "params/stem_bn/bias": (64,),
        "params/stem_bn/scale": (64,),
        "params/stem_conv/kernel": (3, 3, 3, 64),
    },
    "lenet5": {
        "params/classifier/bias": (10,),
        "params/classifier/kernel": (500, 10),
        "params/conv_0/bias": (20,),
        "params/conv_0/kernel": (5, 5, 1, 20),
        "params/conv_1/bias": (50,),
        "params/conv_1/kernel": (5, 5, 20, 50),
        "params/dense_0/bias": (500,),
        "params/dense_0/kernel": (800, 500),
    },
}


def _paths_and_shapes(model, shape) -> dict[str, tuple[int, ...]]:
    """'collection/module/.../leaf' -> shape of every variable of ``model`` at init."""
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))
    return {
        "/".join(str(key.key) for key in path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]
    }


@pytest.mark.parametrize("name", sorted(INPUTS))
@pytest.mark.parametrize(
    "settings",
    [{}, {"kernels": "auto"}, {"kernels": "cpu"}, {"kernels": "plain"},
     {"forward_mode": True}, {"kernels": "plain", "forward_mode": True}],
    ids=["default", "auto", "cpu", "plain", "forward_mode", "plain_forward_mode"],
)
def test_param_tree_is_unchanged_for_every_kernel_choice(name, settings):
    model = models.get_model(name, 10, **settings)
    assert _paths_and_shapes(model, INPUTS[name]) == EXPECTED[name]


def test_models_built_directly_have_the_same_tree():
    direct = {
        "vgg11": models.VGG(depth=11, num_classes=10),
        "resnet18": models.ResNet18(num_classes=10),
        "lenet5": models.LeNet5(num_classes=10),
    }
    for name, model in direct.items():
        assert _paths_and_shapes(model, INPUTS[name]) == EXPECTED[name], name
