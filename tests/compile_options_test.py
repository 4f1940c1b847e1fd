"""Tests for the per-program XLA options (force_jax.core.compile_options)."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import force_jax as fj
from force_jax.core import compile_options, program


def _library_convs(hlo: str) -> int:
    """Number of convolutions that a compiled program hands to YNNPACK."""
    count = 0
    for called in re.findall(r'calls=%([\w.\-]+)[^\n]*"kind":"__ynn_fusion"', hlo):
        body = re.search(rf"%{re.escape(called)} [^\n]*\{{\n(.*?)\n\}}", hlo, re.S)
        count += body is not None and "convolution(" in body.group(1)
    return count


def _conv(x, k):
    return lax.conv_general_dilated(
        x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


ON_CPU = jax.default_backend() == "cpu"
# Big enough for jaxlib's cost model to hand the conv to YNNPACK by default.
SHAPES = ((32, 16, 16, 64), (3, 3, 64, 64))


@pytest.mark.skipif(not ON_CPU, reason="the options are for XLA:CPU")
def test_cpu_options_keep_dots_and_reductions_but_not_convs_in_the_library(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    options = compile_options.compiler_options()
    assert options == {compile_options.YNN_OPTION: ",".join(compile_options.CPU_YNN_FUSIONS)}
    assert "CONVOLUTION" not in options[compile_options.YNN_OPTION]
    x = jax.random.normal(jax.random.key(0), SHAPES[0])
    k = jax.random.normal(jax.random.key(1), SHAPES[1]) / 24
    ours = compile_options.jit(_conv).lower(x, k).compile()
    assert _library_convs(ours.as_text()) == 0
    np.testing.assert_allclose(ours(x, k), jax.jit(_conv)(x, k), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not ON_CPU, reason="the options are for XLA:CPU")
def test_library_conv_detector_sees_jaxlib_default():
    # Guards the helper above: under jaxlib's own default list the conv does go
    # to YNNPACK. If a future jaxlib stops doing so, the options are moot and
    # this test says so rather than the one above passing vacuously.
    x, k = jnp.ones(SHAPES[0]), jnp.ones(SHAPES[1])
    default = jax.jit(_conv).lower(x, k).compile().as_text()
    assert _library_convs(default) == 1


def test_options_this_jaxlib_rejects_are_not_used(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert compile_options._accepted(tuple(compile_options.compiler_options("cpu").items()))
    assert not compile_options._accepted((("xla_cpu_no_such_option", "1"),))


def test_user_flags_and_other_backends_get_no_options(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", f"--{compile_options.YNN_OPTION}=LIBRARY_FUSION_TYPE_REDUCE")
    assert compile_options.compiler_options("cpu") is None
    monkeypatch.delenv("XLA_FLAGS")
    assert compile_options.compiler_options("gpu") is None
    assert compile_options.compiler_options("tpu") is None


def _conv_loss(params, batch):
    # (A conv feeding a reduction directly can ride along into a library reduce fusion.)
    features = jax.nn.relu(_conv(batch["image"], params["conv"]))
    logits = jnp.mean(features, axis=(1, 2)) @ params["dense"]
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(logits.shape[0]), batch["label"]])


@pytest.mark.skipif(not ON_CPU, reason="the options are for XLA:CPU")
def test_pruning_program_compiles_with_the_options(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    keys = jax.random.split(jax.random.key(0), 3)
    params = {"conv": jax.random.normal(keys[0], SHAPES[1]) / 24,
              "dense": jax.random.normal(keys[1], (64, 10)) / 8}
    data = {"image": jax.random.normal(keys[2], SHAPES[0]), "label": jnp.arange(32) % 10}
    default = jax.jit(jax.grad(_conv_loss)).lower(params, data).compile().as_text()
    assert _library_convs(default) >= 1  # what the options take away
    schedule = compile_options.outer_jit(program.schedule, static_argnums=0)
    pruner = program.Pruner("force", _conv_loss, batch_size=32)
    counts = jnp.asarray([20000, 10000], jnp.int32)
    start = fj.masks.init_mask(params)
    hlo = schedule.lower(pruner, params, data, counts, jax.random.key(2), start).compile().as_text()
    assert "convolution(" in hlo
    assert _library_convs(hlo) == 0


def test_machine_names_the_cpu_and_its_avx512(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9R14\n"
                       "flags\t\t: fpu sse2 avx2 avx512f avx512bw\n\n")
    machine = compile_options.machine(str(cpuinfo))
    assert (machine["cpu_model"], machine["avx512"]) == ("AMD EPYC 9R14", True)
    assert machine["jax"] == jax.__version__
    assert machine["compiler_options"] == compile_options.compiler_options()
    cpuinfo.write_text("model name\t: Some CPU\nflags\t\t: fpu avx2\n")
    assert compile_options.machine(str(cpuinfo))["avx512"] is False
    assert compile_options.machine(str(tmp_path / "absent"))["cpu_model"] == "unknown"
