"""The shared command line of the entry points: absl flags + an ml_collections config.

    python -m force_jax.<train|prune|sweep> --config=configs/x.py --workdir=DIR \
        [--config.key=value ...]

Flags are defined only when a command runs, so importing a module defines none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ml_collections


def run_config_command(
    command: Callable[[ml_collections.ConfigDict, str], Any], workdir_help: str
) -> None:
    """Parses --config and --workdir and calls command(config, workdir).

    An override of a key the config does not have (a typo) is rejected by
    ml_collections before the command runs.

    Args:
      command: the work to do.
      workdir_help: help text of --workdir.
    """
    from absl import app, flags, logging
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
    flags.DEFINE_string("workdir", None, workdir_help)
    flags.mark_flags_as_required(["config", "workdir"])

    def run(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        logging.set_verbosity(logging.WARNING)  # orbax and TFDS log every file at INFO
        command(flags.FLAGS.config, flags.FLAGS.workdir)

    app.run(run)


def load_config_file(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """Loads a config file by path and calls its get_config (with arg if given).

    Config files are loaded by path, not imported, so one config that builds on
    another (e.g. on configs/default.py) loads it with this.

    Args:
      path: a .py file defining get_config().
      arg: the config string (the part after ":" in --config=file.py:arg).

    Returns:
      The ConfigDict.
    """
    import importlib.util
    import os

    name = "force_jax_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg is not None else module.get_config()
