"""The key table: every key of a config in it, and the page and --help made from it."""

from __future__ import annotations

import re
from pathlib import Path

import ml_collections
import pytest

from configs import default
from force_jax.commands import cli
from force_jax.config import validate
from force_jax.errors import ConfigError
from force_jax.runs import keys, workdir

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configs.md"
# Set by the configs that scale a model, absent from the default one.
OPTIONAL = {"model.width_multiplier"}


def _leaves(config: ml_collections.ConfigDict, prefix: str = "") -> set[str]:
    names = set()
    for name, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            names |= _leaves(value, f"{prefix}{name}.")
        else:
            names.add(prefix + name)
    return names


def test_the_table_has_every_key_of_the_default_config_and_no_other():
    assert _leaves(default.get_config()) == set(keys.BY_NAME) - OPTIONAL
    assert len(keys.BY_NAME) == len(keys.KEYS)


def test_the_default_config_passes_every_check_of_the_table():
    config = default.get_config()
    for key in keys.KEYS:
        if key.accepts is not None and key.name not in OPTIONAL:
            value = validate._get(config, key.name)
            assert key.accepts(value), (key.name, value)


@pytest.mark.parametrize("name, value", [
    ("data.validation_fraction", 1.0), ("prune.sparsity", float("nan")),
    ("prune.batch_size", 0), ("prune.temperature", 0.0), ("prune.layer_floor", -1),
    ("prune.scope", "local"), ("train.weight_decay", float("inf")),
    ("train.lr_schedule.boundaries", (250, 150)), ("mesh.num_devices", 0),
    ("cluster.process_id", -2), ("cluster.initialization_timeout", 0), ("eval_batch_size", 0),
    ("lottery.rewind_step", -2),
])
def test_a_value_the_table_refuses_is_one_error_naming_the_key(name, value):
    config = default.get_config()
    *path, leaf = name.split(".")
    node = config
    for part in path:
        node = node[part]
    with node.unlocked():
        node[leaf] = value
    expected = re.escape(f"config.{name}={value!r}: expected "
                         f"{keys.BY_NAME[name].expected_for(config)}")
    with pytest.raises(ConfigError, match=f"^{expected}$"):
        validate.validate_config(config)


def test_which_keys_define_a_run_and_which_were_added_come_from_the_table():
    assert set(workdir.NON_DEFINING) == {
        "data.data_dir", "data.download", "mesh.num_devices", "mesh.fsdp", "distributed",
        "cluster.coordinator_address", "cluster.num_processes", "cluster.process_id",
        "cluster.initialization_timeout", "eval_batch_size", "eval_max_batches", "sweep"}
    assert workdir.ADDED_KEYS == keys.added_keys()
    assert "prune.sparsity" not in workdir.ADDED_KEYS and workdir.ADDED_KEYS["lottery.rounds"] == 0


def test_the_docs_page_holds_the_table_as_the_code_writes_it():
    text = DOCS.read_text()
    start, end = "<!-- keys table: start -->\n", "<!-- keys table: end -->"
    page_table = text[text.index(start) + len(start):text.index(end)]
    assert page_table == keys.markdown_table(), (
        "docs/configs.md is stale: paste the output of python -m force_jax.runs.keys")


def test_help_lists_every_key_with_what_it_accepts():
    from absl import flags

    values = flags.FlagValues()
    cli.define_flags("the run's folder", values, "force_jax.train")
    text = cli.help_text(values, "force_jax.train")
    for key in keys.KEYS:
        assert re.search(rf"--config\.{re.escape(key.name)} +{re.escape(key.expected_for())}",
                         text), key.name
