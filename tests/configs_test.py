"""Every config file loads, passes validation and names a real model."""

import importlib
import os
import subprocess
import sys

import pytest

from force_jax.commands import cli
from force_jax.config import sweep_grid, validate
from force_jax.errors import ConfigError

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")


def load(name, arg=None):
    """A config by a plain import of the configs package."""
    module = importlib.import_module(f"configs.{name}")
    return module.get_config(arg) if arg else module.get_config()


def test_a_config_file_imports_its_siblings_from_any_folder(tmp_path):
    """--config loads a file by path; its `from configs import ...` works from elsewhere."""
    path = os.path.abspath(os.path.join(CONFIGS, "sanity_fashion_mnist.py"))
    code = ("import sys; from force_jax.commands import cli; "
            f"c = cli.load_config_file({path!r}); print(c.sweep.ablations, c.model.name)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=300,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    assert "('none', 'shuffle', 'reinit', 'invert') vgg11" in out.stdout
    assert cli.load_config_file(path).to_dict() == load("sanity_fashion_mnist").to_dict()


@pytest.mark.parametrize("arg", ["cifar10,vgg19", "cifar10,resnet50", "cifar100,vgg19",
                                 "cifar100,resnet50", "imagenet2012,resnet50"])
def test_paper_configs(arg):
    config = load("paper", arg)
    validate.validate_config(config)
    assert config.prune.steps == 60 and config.prune.schedule == "exp"
    assert config.prune.scoring_loss == "nll_on_logits"  # the paper code's loss
    if arg.startswith("imagenet"):
        assert (config.prune.batches_per_step, config.train.batch_size) == (40, 256)
        assert config.train.num_epochs == 90
        # Fresh augmented batches streamed at every step, as the paper's code draws them.
        assert config.prune.pool_size == 0 and config.prune.augment is True
    else:
        assert config.train.lr_schedule.boundaries == (150, 250)
        assert config.train.num_epochs == 350


def test_paper_config_rejects_unknown_pairs():
    with pytest.raises(ValueError, match="no paper config"):
        load("paper", "mnist,vgg19")


def test_default_config():
    config = load("default")
    validate.validate_config(config)
    assert config.prune.method == "force" and config.prune.sparsity == 0.99


@pytest.mark.parametrize("name", ["claim_fashion_mnist", "ablation_fashion_mnist",
                                  "sanity_fashion_mnist"])
def test_configs_that_reproduce_the_paper_use_its_scoring_loss(name):
    config = load(name)
    validate.validate_config(config)
    assert config.prune.scoring_loss == "nll_on_logits"


def test_seed_sweep_of_the_default_run():
    config = load("default_seeds")
    validate.validate_config(config)
    default = load("default")
    assert config.sweep.methods == (default.prune.method,)
    assert config.sweep.sparsities == (default.prune.sparsity,)
    assert len(set(config.sweep.seeds)) == len(config.sweep.seeds) == 5


def test_sanity_sweep_asks_every_check_of_the_claim_setting():
    from force_jax.core import sanity

    config, claim = load("sanity_fashion_mnist"), load("claim_fashion_mnist")
    sweep_grid.validate_grid(config.sweep)
    assert sweep_grid.ablations(config.sweep) == ("none", "shuffle", "reinit", "invert")
    assert set(sweep_grid.ablations(config.sweep)) < set(sanity.ABLATIONS)
    assert config.sweep.sparsities == (0.98, 0.995, 0.998) and len(config.sweep.seeds) >= 3
    # The setting is the claim's: only the grid differs, so its "none" cells are claim cells.
    del config.sweep, claim.sweep
    assert config.to_dict() == claim.to_dict()


def test_the_tap_shuffle_sweep_is_the_sanity_setting_at_the_sparsities_where_shuffle_failed():
    config, sanity_sweep = load("sanity_taps_fashion_mnist"), load("sanity_fashion_mnist")
    sweep_grid.validate_grid(config.sweep)
    assert sweep_grid.ablations(config.sweep) == ("shuffle_taps",)
    assert config.sweep.sparsities == (0.995, 0.998)
    assert config.sweep.seeds == sanity_sweep.sweep.seeds
    assert config.sweep.methods == sanity_sweep.sweep.methods
    del config.sweep, sanity_sweep.sweep
    assert config.to_dict() == sanity_sweep.to_dict()


def test_the_ablation_base_keeps_its_own_budget():
    config = load("ablation_fashion_mnist")
    assert (config.train.num_steps, config.prune.steps, config.prune.pool_size) == (150, 30, 2048)


def test_the_guard_sweep_is_the_scale_setting_with_only_the_floor_changed():
    from configs import guard_fashion_mnist, scale_fashion_mnist

    floored, plain = guard_fashion_mnist.get_config("16"), guard_fashion_mnist.get_config("0")
    validate.validate_config(floored)
    sweep_grid.validate_grid(floored.sweep)
    assert (floored.prune.layer_floor, plain.prune.layer_floor) == (16, 0)
    assert floored.sweep.methods == ("force",) and floored.sweep.sparsities == (0.999,)
    scale = scale_fashion_mnist.get_config("0.25")
    assert floored.sweep.seeds == scale.sweep.seeds
    del floored.sweep, scale.sweep
    floored.prune.layer_floor = 0
    assert floored.to_dict() == scale.to_dict()
    with pytest.raises(ValueError, match="takes a floor, an integer >= 0"):
        guard_fashion_mnist.get_config("-1")


def test_the_baselines_sweep_cells_are_valid_and_the_scale_setting_at_x0_5():
    from configs import baselines_fashion_mnist, scale_fashion_mnist

    for group in baselines_fashion_mnist.GROUPS:
        config = baselines_fashion_mnist.get_config(group)
        sweep_grid.validate_grid(config.sweep)
        for cell in sweep_grid.grid(config.sweep):  # every cell passes the config checks
            validate.validate_config(sweep_grid.cell_config(config, *cell))
        assert len(sweep_grid.grid(config.sweep)) == {"random": 27, "scored": 90, "methods": 63,
                                                      "seeds": 8}[group]
        scale = scale_fashion_mnist.get_config("0.5")
        del config.sweep, scale.sweep
        assert config.to_dict() == scale.to_dict()
    with pytest.raises(ValueError, match="takes a group of random, scored"):
        baselines_fashion_mnist.get_config("all")


def test_method_settings_reach_only_their_methods_cells():
    from configs import baselines_fashion_mnist

    config = baselines_fashion_mnist.get_config("methods")
    grasp = sweep_grid.cell_config(config, "grasp", 0.99, 0)
    assert (grasp.prune.scoring_loss, grasp.prune.temperature) == ("cross_entropy", 200.0)
    assert sweep_grid.cell_config(config, "prospr", 0.99, 0).prune.scoring_loss == (
        "cross_entropy")
    assert sweep_grid.cell_config(config, "ntk_sap", 0.99, 0).prune.steps is None
    assert sweep_grid.cell_config(config, "iter_snip", 0.99, 0).prune.scoring_loss == (
        "nll_on_logits")
    config.sweep.method_settings.prospr = {"prune": {"no_such_key": 1}}
    with pytest.raises(ConfigError, match="method_settings.prospr.prune.no_such_key=1"):
        sweep_grid.cell_config(config, "prospr", 0.99, 0)
    config.sweep.method_settings = {"prosper": {"prune": {"steps": 1}}}
    with pytest.raises(ConfigError, match="sweep.method_settings"):
        validate.validate_sweep_settings(config.sweep)


def test_a_method_option_set_for_a_whole_mixed_sweep_points_to_method_settings():
    from configs import baselines_fashion_mnist

    config = baselines_fashion_mnist.get_config("methods")
    sweep_grid.check_shared_options(config)  # the options at their defaults: fine
    config.prune.prospr.inner_lr = 0.5
    with pytest.raises(ConfigError, match=r"config.prune.prospr.inner_lr=0.5 would apply to "
                       r"every cell, but this sweep also runs iter_snip.*--config.sweep."
                       r"method_settings='\{\"prospr\": \{\"prune\": \{\"prospr\": "
                       r"\{\"inner_lr\": 0.5\}\}\}\}'"):
        sweep_grid.check_shared_options(config)
    config.sweep.methods = ("prospr",)  # a sweep of prospr alone may set it for all
    sweep_grid.check_shared_options(config)
