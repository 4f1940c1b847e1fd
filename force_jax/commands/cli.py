"""The shared command line of the entry points: absl flags + an ml_collections config.

    python -m force_jax.<train|prune|sweep> --config=configs/x.py --workdir=DIR \
        [--config.key=value ...]

Flags are defined only when a command runs, so importing a module defines none.
`--help` prints the entry point's docstring (its usage) and the command's
flags: --config and --workdir are made key flags of the main module.
TensorFlow's and XLA's start-up log lines are kept off the console by
`force_jax.commands.startup`.
"""

from __future__ import annotations

import difflib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import ml_collections

from force_jax.errors import ConfigError
from force_jax.runs import keys
from force_jax.runs.disk import disk_error, disk_message

if TYPE_CHECKING:
    from absl import flags as absl_flags



CONFIG_HELP = ("Experiment config file: a .py file whose get_config() returns the config "
               "(file.py:ARG calls get_config(ARG)). Override any of its keys with "
               "--config.KEY=VALUE, e.g. --config.prune.sparsity=0.98.")


def define_flags(workdir_help: str, flag_values: absl_flags.FlagValues,
                 main_module: str) -> None:
    """Defines --config and --workdir (both required) as key flags of the main module.

    absl's --help lists the key flags of the main module (named by
    sys.argv[0]) under its docstring; flags defined here would otherwise
    belong to this module and show only under --helpfull.

    Args:
      workdir_help: help text of --workdir.
      flag_values: the absl FlagValues to define them in (flags.FLAGS).
      main_module: the module --help describes (sys.argv[0]).
    """
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, CONFIG_HELP, flag_values=flag_values,
                                    lock_config=True)
    flags.DEFINE_string("workdir", None, workdir_help, flag_values=flag_values)
    flags.mark_flags_as_required(["config", "workdir"], flag_values=flag_values)
    for name in ("config", "workdir"):
        flag_values.register_key_flag_for_module(main_module, flag_values[name])


HELP_FLAGS = {"--help", "-h", "-?", "--helpshort"}


def help_text(flag_values: absl_flags.FlagValues, main_module: str) -> str:
    """What --help prints: the entry point's usage, its two flags and the config keys.

    Args:
      flag_values: the parsed-or-not flags holding --config and --workdir.
      main_module: the module --help describes (sys.argv[0]).

    Returns:
      The text; --config, which has no default, is marked required. The keys
      come from the key table (`force_jax.runs.keys`), with what each accepts.
    """
    main = sys.modules.get("__main__")
    usage = (getattr(main, "__doc__", None) or "").strip()
    flag_help = flag_values.module_help(main_module).strip().replace("(default: 'None')",
                                                                     "(required)")
    return (f"{usage}\n\nflags:\n\n{flag_help}\n\nconfig keys (docs/configs.md says what "
            f"each does):\n\n{keys.help_lines()}\n\nTry --helpfull to get a list of all flags.")


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


def unknown_key(config: ml_collections.ConfigDict, key: str) -> str | None:
    """Why ``--config.KEY`` names nothing in `config`, or None when it names a key.

    Args:
      config: the loaded config.
      key: the dotted key of an override, without the --config. prefix.

    Returns:
      One line naming the first part of `key` that is not a key of its level,
      and the closest keys of that level (difflib), or a few of its keys when
      none is close.
    """
    node, parts = config, key.split(".")
    for depth, part in enumerate(parts):
        level = ".".join(["config", *parts[:depth]])
        if not isinstance(node, ml_collections.ConfigDict):
            return (f"--config.{key}: {level} is a value ({node!r}), not a group of keys; "
                    f"give it as --config.{'.'.join(parts[:depth])}=VALUE")
        if part not in node:
            return (f"--config.{key}: {part!r} is not a key of {level}; "
                    f"{_closest(node, parts, depth)}")
        node = node[part]
    return None


def _closest(node: ml_collections.ConfigDict, parts: list[str], depth: int) -> str:
    """The close keys of one config level, as overrides to use; else a few of its keys.

    Args:
      node: the config level that lacks parts[depth].
      parts: the override's dotted key, split.
      depth: the index of the missing part.

    Returns:
      "did you mean --config.A or --config.B?", or "its keys are ...".
    """
    keys = sorted(node.keys())
    close = difflib.get_close_matches(parts[depth], keys, n=3)
    if close:
        options = [".".join([*parts[:depth], c, *parts[depth + 1:]]) for c in close]
        return "did you mean " + " or ".join(f"--config.{o}" for o in options) + "?"
    shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
    return f"its keys are {shown}"


def config_argument(argv: Sequence[str]) -> str | None:
    """The value of --config on a command line (``file.py`` or ``file.py:arg``), if given.

    Args:
      argv: the command line.

    Returns:
      The argument as given, or None.
    """
    for previous, token in zip(["", *argv], argv):
        if token.startswith("--config="):
            return token[len("--config="):]
        if previous == "--config":
            return token
    return None


def _override_error(argv: Sequence[str], error: BaseException) -> str:
    """The one-line message of an override absl or ml_collections refused.

    Args:
      argv: the command line.
      error: what parsing it raised.

    Returns:
      For a key that does not exist, `unknown_key`'s line (its level and the
      closest keys; the config file is loaded again to find them); for
      anything else (a value of the wrong type), the library's own message.
    """
    argument = config_argument(argv)
    if argument:
        path, _, arg = argument.partition(":")
        try:
            config = load_config_file(path, arg or None)
        except Exception:  # noqa: BLE001 - the library's message is the fallback
            config = None
        for token in argv:
            key = token[len("--config."):].split("=", 1)[0] if token.startswith(
                "--config.") else None
            reason = key and config is not None and unknown_key(config, key)
            if reason:
                return reason
    return f"bad --config override: {_one_line(error)}"


def run_config_command(
    command: Callable[[ml_collections.ConfigDict, str], Any], workdir_help: str
) -> None:
    """Parses --config and --workdir and calls command(config, workdir).

    An override of a key the config does not have (a typo: its level and the
    closest keys are named), a value of the wrong type or a key given twice is
    rejected in one line before the command runs; a `ConfigError` raised by
    the command, or a write the disk refused, is printed as one message,
    without a traceback (`run_command`). Both exit with status 2.

    Args:
      command: the work to do.
      workdir_help: help text of --workdir.
    """
    from absl import app, flags, logging

    argv = sys.argv[1:]
    define_flags(workdir_help, flags.FLAGS, sys.argv[0])
    if HELP_FLAGS & set(argv):
        print(help_text(flags.FLAGS, sys.argv[0]))
        sys.exit(0)
    if config_argument(argv):
        path = config_argument(argv).split(":", 1)[0]  # file.py:arg
        if not os.path.isfile(path):
            _fail(f"--config={config_argument(argv)}: there is no file {path!r} (from "
                  f"{os.getcwd()}); give a config .py file, e.g. --config=configs/default.py")
        importable_configs(path)

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
            _fail(_override_error(argv, e))

    def run(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        logging.set_verbosity(logging.WARNING)  # orbax and TFDS log every file at INFO
        # A preempted job gets SIGTERM: exit through `finally` blocks, so the workdir's
        # lock is released and the checkpoint manager closed.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        run_command(command, flags.FLAGS.config, flags.FLAGS.workdir)

    app.run(run, flags_parser=parse)


def run_command(command: Callable[[ml_collections.ConfigDict, str], Any],
                config: ml_collections.ConfigDict, workdir: str) -> None:
    """Calls command(config, workdir); a user's mistake or a refusing disk exits with status 2.

    A `ConfigError` (its message says the fix) and a write the disk refused
    (full, over quota, read-only, not permitted, anywhere in the run; see
    `force_jax.runs.disk.disk_error`) are printed as one ``error:`` line on stderr,
    without a traceback. Anything else propagates.

    Args:
      command: the work to do.
      config: the parsed config.
      workdir: the parsed --workdir.
    """
    try:
        command(config, workdir)
    except ConfigError as e:  # a user's mistake: the message says the fix
        _fail(str(e))
    except Exception as e:
        refused = disk_error(e)
        if refused is None:
            raise
        _fail(disk_message(refused, workdir))


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
