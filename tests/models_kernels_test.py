"""The per-backend choice of kernels: CPU rewrites on CPU, plain Flax ops elsewhere."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from force_jax.models import VGG, LeNet5, ResNet18, common, fast_conv, kernels


def test_choice_per_backend_and_value():
    assert kernels.use_cpu_kernels("auto", backend="cpu")
    assert not kernels.use_cpu_kernels("auto", backend="gpu")
    assert not kernels.use_cpu_kernels("auto", backend="tpu")
    assert kernels.use_cpu_kernels("cpu", backend="gpu")
    assert not kernels.use_cpu_kernels("plain", backend="cpu")
    assert kernels.use_cpu_kernels("auto") == (jax.default_backend() == "cpu")
    with pytest.raises(ValueError, match="^`kernels` is 'fast'; expected one of auto, cpu, "
                                         "plain$"):
        kernels.use_cpu_kernels("fast")


def test_ops_is_one_frozen_record_made_once():
    ops = kernels.make_ops("plain", forward_mode=True)
    assert ops == kernels.Ops(kernels="plain", forward_mode=True)
    assert hash(ops) == hash(kernels.Ops(kernels="plain", forward_mode=True))
    assert kernels.make_ops() == kernels.DEFAULT_OPS == kernels.Ops()
    # A backend resolves "auto" now; without one it stays "auto" until traced.
    assert kernels.make_ops("auto", backend="gpu").kernels == "plain"
    assert kernels.make_ops("auto", backend="cpu").kernels == "cpu"
    assert kernels.make_ops("cpu", backend="tpu").kernels == "cpu"
    with pytest.raises(AttributeError):
        ops.kernels = "cpu"  # frozen
    # The models layer names its argument, never the experiments' config key.
    for make in (lambda: kernels.make_ops("gpu"), lambda: kernels.Ops(kernels="gpu")):
        with pytest.raises(ValueError, match="^`kernels` is 'gpu'") as error:
            make()
        assert "config" not in str(error.value)


def test_ops_builds_the_conv_and_pool_of_its_choice(monkeypatch):
    x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
    attributes = {"features": 4, "kernel_size": (3, 3)}
    assert type(kernels.Ops(kernels="plain").conv(**attributes)) is nn.Conv
    assert type(kernels.Ops(kernels="cpu").conv(**attributes)) is fast_conv.Conv
    assert kernels.Ops(kernels="cpu").conv(**attributes).fast_loop_grad
    assert not kernels.Ops(kernels="cpu", forward_mode=True).conv(**attributes).fast_loop_grad
    monkeypatch.setattr(kernels.jax, "default_backend", lambda: "gpu")
    assert type(kernels.Ops().conv(**attributes)) is nn.Conv  # "auto" reads the backend now
    for choice in kernels.KERNELS:
        np.testing.assert_array_equal(kernels.Ops(kernels=choice).max_pool(x, 2),
                                      nn.max_pool(x, (2, 2), strides=(2, 2)))


def _primitives(model, x) -> str:
    variables = jax.eval_shape(lambda k: model.init(k, x), jax.random.key(0))  # shapes only
    return str(jax.make_jaxpr(lambda v: model.apply(v, x))(variables))


def test_auto_traces_plain_ops_when_the_backend_is_not_cpu(monkeypatch):
    """VGG's convs and pools: custom VJP and strided slices on CPU, lax ops on 'gpu'."""
    model = VGG(depth=11, num_classes=10, width_multiplier=0.125)
    x = jnp.ones((1, 32, 32, 3))
    monkeypatch.setattr(kernels.jax, "default_backend", lambda: "cpu")
    on_cpu = _primitives(model, x)
    assert "custom_vjp_call" in on_cpu and "reduce_window_max" not in on_cpu
    monkeypatch.setattr(kernels.jax, "default_backend", lambda: "gpu")
    on_gpu = _primitives(model, x)
    assert "custom_vjp_call" not in on_gpu and "reduce_window_max" in on_gpu
    assert "conv_general_dilated" in on_gpu
    # "cpu" keeps the rewrites whatever the backend says.
    assert _primitives(model.clone(ops=kernels.make_ops("cpu")), x) == on_cpu
    # So does an "auto" resolved for a CPU backend when it was made.
    assert _primitives(model.clone(ops=kernels.make_ops(backend="cpu")), x) == on_cpu
    assert "custom_vjp_call" not in _primitives(common.conv(4, 3), x)


@pytest.mark.parametrize(
    "make, shape",
    [
        pytest.param(lambda k: VGG(depth=11, num_classes=10, width_multiplier=0.125,
                                   ops=kernels.make_ops(k)),
                     (2, 32, 32, 3), marks=pytest.mark.slow),
        pytest.param(lambda k: ResNet18(num_classes=10, width_multiplier=0.125,
                                        ops=kernels.make_ops(k)),
                     (2, 16, 16, 3), marks=pytest.mark.slow),
        (lambda k: LeNet5(num_classes=10, ops=kernels.make_ops(k)), (2, 28, 28, 1)),
    ],
)
def test_both_kernel_kinds_give_the_same_outputs_and_gradients(make, shape):
    rewrites, plain = make("cpu"), make("plain")
    x = jax.random.normal(jax.random.key(1), shape)
    variables = jax.jit(lambda k: rewrites.init(k, x))(jax.random.key(0))
    # Same parameters: a checkpoint or a mask moves between the two.
    chex.assert_trees_all_equal(variables, jax.jit(lambda k: plain.init(k, x))(jax.random.key(0)))

    def loss(model):
        def fn(params):
            if "batch_stats" in variables:
                logits, _ = model.apply({**variables, "params": params}, x, train=True,
                                        mutable=["batch_stats"])
            else:
                logits = model.apply({"params": params}, x)
            return jnp.sum(jnp.sin(logits))

        return fn

    params = variables["params"]  # each quantity one jitted program, not op by op
    np.testing.assert_allclose(jax.jit(loss(rewrites))(params), jax.jit(loss(plain))(params),
                               rtol=1e-5, atol=1e-5)
    for got, want in zip(jax.tree.leaves(jax.jit(jax.grad(loss(rewrites)))(params)),
                         jax.tree.leaves(jax.jit(jax.grad(loss(plain)))(params))):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
    # Plain kernels allow forward mode with no other flag (the default off CPU).
    primal, tangent = jax.jit(lambda p: jax.jvp(loss(plain), (p,), (p,)))(params)
    assert np.isfinite(primal) and np.isfinite(tangent)


def test_get_model_fills_ops_from_kernels_for_every_model():
    from force_jax import models

    assert models.get_model("vgg11", 10, kernels="plain").ops == kernels.Ops(kernels="plain")
    assert models.get_model("resnet18", 10).ops == kernels.Ops()
    assert models.get_model("lenet5", 10, forward_mode=True).ops == kernels.Ops(
        forward_mode=True)
    assert VGG(depth=11, num_classes=10).ops == kernels.Ops()  # built directly: "auto"
    mlp = models.get_model("mlp", 10, kernels="cpu")  # no convs: accepted, nothing to choose
    assert not hasattr(mlp, "ops")
    with pytest.raises(ValueError, match="^`kernels` is 'tpu'") as error:
        models.get_model("lenet5", 10, kernels="tpu")
    assert "config" not in str(error.value)
    with pytest.raises(TypeError, match="builds `ops` from `kernels`"):
        models.get_model("vgg11", 10, ops=kernels.Ops())
