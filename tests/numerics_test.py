"""The programs force_jax compiles compute what plain jax.jit computes, to float rounding.

force_jax compiles its pruning and training programs with XLA:CPU options
(`force_jax.core.compile_options`). They are kept only because these tests
show them exact to rounding on the machine that runs them: the production
program (the library's jit) against the same function under plain `jax.jit`,
on a BatchNorm VGG with the models' default kernels. (The kernels themselves
are checked against plain Flax ops in tests/models_kernels_test.py.)

The problem is checked to lie far from the kinks of its gradient
(tests/kink_margin.py). Near a kink, rounding alone switches a ReLU or a
pooling branch and moves gradients by up to percents whatever the compiler
(docs/performance.md, "Compiler options"), so a 1e-5 comparison there would
say nothing about the compiler.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import kink_margin
import numpy as np
import optax
import pytest
from kink_margin import vgg_kink_margin

import force_jax as fj
from force_jax.core import compile_options, masks, program, scores
from force_jax.training import steps

pytestmark = pytest.mark.xdist_group("numerics")

# Tolerances, relative to each leaf's largest entry. Under plain jax.jit alone, moving the
# input by one rounding step (x * (1 + 2**-23)) moves this problem's scores by 2.5e-6 and its
# train-step gradients (cross-entropy, through more reductions) by 6.8e-6: both sit a few
# times above that floor. The faults this guards against moved gradients by 1e-3 and more.
SCORES_RTOL = 1e-5
GRADIENTS_RTOL = 5e-5
MIN_KINK_MARGIN = 1e-5  # ten times the rounding of a ReLU input (f32 against f64)


def _vgg(kernels: str):
    return fj.models.VGG(depth=11, num_classes=10, width_multiplier=0.125,
                         ops=fj.models.make_ops(kernels))


@pytest.fixture(scope="module")
def problem():
    """VGG-11 x1/8 (BatchNorm), 32 random 16x16 images, dense: 2.5e-5 from its nearest kink."""
    kx, ky, kp = jax.random.split(jax.random.key(7), 3)
    pool = {"image": jax.random.normal(kx, (32, 16, 16, 3)),
            "label": jax.random.randint(ky, (32,), 0, 10)}
    variables = jax.jit(lambda k, x: _vgg("plain").init(k, x, train=False))(kp, pool["image"][:2])
    margin = vgg_kink_margin(_vgg("plain"), variables, variables["params"], pool["image"])
    assert margin >= MIN_KINK_MARGIN, f"the problem lies {margin:.1e} from a kink: reseed it"
    return variables, pool


def _force_scores(kernels: str, variables, *, logit_scale: float = 1.0):
    """A FORCE step's scores |theta0 * g| at the state's mask, batches drawn in the program."""
    model = _vgg(kernels)
    loss_fn = fj.classification_loss(model, variables, loss="nll_on_logits")
    scaled = lambda p, b: loss_fn(p, b) * logit_scale  # noqa: E731 (the perturbed variant)
    pruner = program.Pruner("force", scaled, batch_size=32)

    def force_scores(params, pool, state):
        batch = jax.tree.map(lambda x: x[0], program.draw_batches(pruner, pool, state))
        grads = jax.grad(scaled)(masks.apply_mask(params, state.mask), batch)
        return scores.saliency(params, grads)

    return force_scores


def _assert_close(ours, plain, rtol):
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(ours), jax.tree.leaves(plain)):
        a, b = np.asarray(a), np.asarray(b)
        scale = np.max(np.abs(b))
        assert np.max(np.abs(a - b)) <= rtol * scale, (
            jax.tree_util.keystr(path), float(np.max(np.abs(a - b)) / scale))


def _scores_of(production: bool, problem, **perturb):
    variables, pool = problem
    fn = _force_scores("auto", variables, **perturb)
    jit = compile_options.jit if production else jax.jit
    state = program.init_state(masks.init_mask(variables["params"]), jax.random.key(3))
    return jit(fn)(variables["params"], pool, state)


def test_force_step_scores_match_plain_jit(problem):
    _assert_close(_scores_of(True, problem), _scores_of(False, problem), SCORES_RTOL)


def test_the_comparison_fails_on_a_perturbed_program(problem):
    # A relative error of 3e-5 anywhere in the program (here the loss) is caught.
    with pytest.raises(AssertionError):
        _assert_close(_scores_of(True, problem, logit_scale=1 + 3e-5),
                      _scores_of(False, problem), SCORES_RTOL)


def _train_step_update(production: bool, problem):
    variables, pool = problem
    model = _vgg("auto")
    mask = masks.init_mask(variables["params"])
    tx = fj.masked_updates(optax.sgd(1.0), mask)
    state = steps.create_train_state(model, variables, mask, tx)
    before = state.params
    jit = (lambda f: compile_options.jit(f, donate_argnums=0)) if production else jax.jit
    after, _ = jit(steps.train_step)(jax.tree.map(jnp.copy, state), pool)
    return jax.tree.map(lambda a, b: a - b, after.params, before)  # -gradient (SGD, rate 1)


def test_train_step_gradients_match_plain_jit(problem):
    _assert_close(_train_step_update(True, problem), _train_step_update(False, problem),
                  GRADIENTS_RTOL)


def test_kink_margin_sees_a_relu_input_at_zero_and_a_pooling_tie(problem):
    variables, pool = problem
    model = _vgg("plain")
    # Shift bn_0's bias so that one ReLU input of the batch is 0: the margin must see it.
    z = model.apply(variables, pool["image"], train=True, mutable=["batch_stats"],
                    capture_intermediates=lambda m, _: m.name == "bn_0")[1]
    first = z["intermediates"]["bn_0"]["__call__"][0][0, 0, 0, 0]
    params = jax.tree.map(lambda x: x, variables["params"])
    params["bn_0"] = dict(params["bn_0"], bias=params["bn_0"]["bias"].at[0].add(-first))
    assert vgg_kink_margin(model, variables, params, pool["image"]) < 1e-6
    # Two equal positive maxima in a pooling window give a gap of 0.
    window = np.zeros((1, 2, 2, 1), np.float32)
    window[0, 0, 0, 0] = window[0, 1, 1, 0] = 2.0
    assert kink_margin._pool_gaps(window).tolist() == [0.0]
