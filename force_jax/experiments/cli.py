"""The shared command line of the entry points: absl flags + an ml_collections config.

    python -m force_jax.<train|prune|sweep> --config=configs/x.py --workdir=DIR \
        [--config.key=value ...]

Flags are defined only when a command runs, so importing a module defines none.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections

from force_jax.errors import ConfigError


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def repeated_overrides(argv: Sequence[str]) -> list[str]:
    """The --config.KEY overrides given more than once on a command line.

    absl would apply each in turn, and a tuple given twice concatenates, so a
    repeated key is an error rather than a silent merge.

    Args:
      argv: the command line.

    Returns:
      The repeated keys (dotted, without the --config. prefix), sorted.
    """
    seen, repeated = set(), set()
    for token in argv:
        if token.startswith("--config."):
            key = token[len("--config."):].split("=", 1)[0]
            (repeated if key in seen else seen).add(key)
    return sorted(repeated)


def _one_line(error: BaseException) -> str:
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(text.replace("\\n", " ").split())


def run_config_command(
    command: Callable[[ml_collections.ConfigDict, str], Any], workdir_help: str
) -> None:
    """Parses --config and --workdir and calls command(config, workdir).

    An override of a key the config does not have (a typo), a value of the
    wrong type or a key given twice is rejected in one line before the command
    runs; a `ConfigError` raised by the command is printed as one message,
    without a traceback. Both exit with status 2.

    Args:
      command: the work to do.
      workdir_help: help text of --workdir.
    """
    from absl import app, flags, logging
    from ml_collections import config_flags

    argv = sys.argv[1:]
    for previous, token in zip(["", *argv], argv):
        path = token[len("--config="):] if token.startswith("--config=") else (
            token if previous == "--config" else None)
        if path:
            importable_configs(path.split(":", 1)[0])  # file.py:arg

    config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
    flags.DEFINE_string("workdir", None, workdir_help)
    flags.mark_flags_as_required(["config", "workdir"])

    def parse(argv: list[str]) -> list[str]:
        repeated = repeated_overrides(argv)
        if repeated:
            _fail(f"--config.{repeated[0]} is given more than once; give each key once")
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            _fail(_one_line(e))
        except (KeyError, AttributeError, TypeError, ValueError) as e:
            # A config key that does not exist, or a value of the wrong type.
            _fail(f"bad --config override: {_one_line(e)}")

    def run(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        logging.set_verbosity(logging.WARNING)  # orbax and TFDS log every file at INFO
        # A preempted job gets SIGTERM: exit through `finally` blocks, so the workdir's
        # lock is released and the checkpoint manager closed.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        try:
            command(flags.FLAGS.config, flags.FLAGS.workdir)
        except ConfigError as e:  # a user's mistake: the message says the fix
            _fail(str(e))

    app.run(run, flags_parser=parse)


def importable_configs(path: str) -> None:
    """Lets a config file import its siblings: `from configs import default`.

    When the file's folder is a package (it holds __init__.py), the folder
    above it goes first on sys.path, wherever the command is run from.

    Args:
      path: the config file given to --config.
    """
    import os

    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(os.path.join(folder, "__init__.py")):
        root = os.path.dirname(folder)
        if root not in sys.path:
            sys.path.insert(0, root)


def load_config_file(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """Loads a config file by path and calls its get_config (with arg if given).

    As --config does: the file is loaded by path, after `importable_configs`.

    Args:
      path: a .py file defining get_config().
      arg: the config string (the part after ":" in --config=file.py:arg).

    Returns:
      The ConfigDict.
    """
    import importlib.util
    import os

    importable_configs(path)
    name = "force_jax_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg is not None else module.get_config()
