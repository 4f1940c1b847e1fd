"""The library without its applications: a clean virtual environment with the light install only.

`pip install force_jax` brings what `[project] dependencies` lists (jax, flax, optax, chex,
numpy, ml_collections). In a new environment holding only those, force_jax must import,
prune LeNet-5 and train two masked steps, and none of the commands' packages (TensorFlow,
TFDS, orbax, gcsfs, matplotlib, TensorBoard, tqdm) may be imported on the way.
"""

from __future__ import annotations

import os
import re
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "tensorflow_datasets", "orbax", "gcsfs", "matplotlib", "tensorboard",
         "tqdm")

# Run inside the light environment, with the repository's force_jax on PYTHONPATH.
SCRIPT = f"""
import sys
import jax, jax.numpy as jnp, optax
import force_jax as fj

key = jax.random.key(0)
data = {{"image": jax.random.normal(key, (64, 28, 28, 1)),
         "label": jax.random.randint(key, (64,), 0, 10)}}
model = fj.models.LeNet5(num_classes=10)
variables = model.init(key, data["image"][:2], train=False)
loss_fn = fj.classification_loss(model, variables)
mask, _ = fj.prune(loss_fn, variables["params"], data, method="force", sparsity=0.9, steps=3,
                   batch_size=32, key=key)
tx = fj.masked_updates(optax.sgd(0.1, momentum=0.9), mask)
params = fj.apply_mask(variables["params"], mask)
opt_state = tx.init(params)
for _ in range(2):
    grads = jax.grad(loss_fn)(params, data)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
pruned_moved = sum(int(jnp.sum(jnp.where(m, 0, p != 0)))
                   for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask)))
assert pruned_moved == 0, pruned_moved
assert fj.num_kept(mask) == fj.sparsity_report(mask).kept
heavy = sorted(m for m in sys.modules if m in {HEAVY!r} or m.split(".")[0] in {HEAVY!r})
assert not heavy, f"the library imported {{heavy}}"
print("light install ok", fj.num_kept(mask))
"""


def light_requirements() -> list[str]:
    """The `[project] dependencies` of pyproject.toml: what `pip install force_jax` brings."""
    text = (ROOT / "pyproject.toml").read_text()  # tomllib is Python >= 3.11 only
    listed = re.search(r"^dependencies = \[(.*?)^\]", text, re.M | re.S).group(1)
    return re.findall(r'^\s*"([^"]+)"', listed, re.M)


def test_the_light_dependencies_are_the_library_s_only():
    names = {req.split(">")[0].split("=")[0].split(";")[0].strip().lower().replace("_", "-")
             for req in light_requirements()}
    assert names == {"jax", "flax", "optax", "chex", "numpy", "ml-collections"}


@pytest.mark.slow
def test_a_light_install_prunes_and_trains_without_the_commands_packages(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         *light_requirements()], capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
           "HOME": str(tmp_path)}
    run = subprocess.run([str(python), "-c", SCRIPT], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "light install ok" in run.stdout
