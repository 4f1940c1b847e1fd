"""`--help` of each command: its usage paragraph, --config and --workdir with their help."""

from __future__ import annotations

import os
import subprocess
import sys

from absl import flags

from force_jax.commands import cli, startup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Each command's --workdir help (see its main()).
WORKDIR_HELP = {
    "train": "Output folder; rerun on it to resume.",
    "prune": "Output folder: the mask, prune.json and layer_density.png.",
    "sweep": "Sweep folder; rerun on it to resume.",
}


def test_the_two_flags_are_key_flags_of_the_main_module():
    flag_values = flags.FlagValues()  # not absl's global FLAGS: the test process keeps none
    cli.define_flags("Output folder.", flag_values, "/somewhere/force_jax/train.py")
    text = flag_values.module_help("/somewhere/force_jax/train.py")
    assert "--config: Experiment config file" in text and "--config.KEY=VALUE" in text
    assert "--workdir: Output folder." in text
    assert sorted(flag_values) == ["config", "workdir"]  # in the given FlagValues only


def test_importing_the_commands_defines_no_flag_and_leaves_the_environment():
    level = os.environ.get(startup.LIBRARY_LOG_LEVEL[0])
    import force_jax.sweep  # noqa: F401
    import force_jax.train  # noqa: F401

    assert "config" not in flags.FLAGS and "workdir" not in flags.FLAGS
    assert os.environ.get(startup.LIBRARY_LOG_LEVEL[0]) == level  # quieted by the commands only


def test_each_command_s_help_lists_its_usage_and_flags():
    """python -m force_jax.<command> --help, the three at once (each imports TensorFlow)."""
    # As a user starts it: no log level set (this process's jax set one).
    env = {k: v for k, v in os.environ.items() if k != startup.LIBRARY_LOG_LEVEL[0]}
    runs = {command: subprocess.Popen(
        [sys.executable, "-m", f"force_jax.{command}", "--help"], cwd=ROOT, text=True, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for command in WORKDIR_HELP}
    for command, run in runs.items():
        output = run.communicate(timeout=600)[0]
        assert run.returncode == 0, output  # asking for help is no error
        assert "Traceback" not in output, output
        assert "(default: 'None')" not in output and "(required)" in output, output
        usage = (f"usage: python -m force_jax.{command} --config=configs/"
                 if command != "sweep" else "usage: python -m force_jax.sweep --config=")
        assert usage in output and "[--config.KEY=VALUE ...]" in output, output
        assert "--config: Experiment config file" in output, output
        assert "--config.KEY=VALUE, e.g. --config.prune.sparsity=0.98" in output, output
        assert f"--workdir: {WORKDIR_HELP[command]}" in output, output
        assert ("--[no]report_only: Rewrite results.csv" in output) == (command == "sweep")
        # Nothing before the usage but the command's one-line description.
        assert output.splitlines()[2].startswith(f"usage: python -m force_jax.{command} ")


def _example_commands(doc: str) -> list[list[str]]:
    """The `python -m force_jax....` examples of a docstring, as argument lists."""
    joined = doc.replace("\\\n", " ")
    return [line.split()[3:] for line in joined.splitlines()
            if line.strip().startswith("python -m force_jax.")]


def _apply(config, token: str) -> None:
    """Applies one --config.KEY=VALUE override, cast to the key's type."""
    key, value = token[len("--config."):].split("=", 1)
    *parents, leaf = key.split(".")
    for parent in parents:
        config = config[parent]
    old = config[leaf]
    if old is None:  # a key without a default (data_dir): the string as given
        config[leaf] = value
    else:
        config[leaf] = (value == "True") if isinstance(old, bool) else type(old)(value)


def test_every_example_in_a_command_s_help_passes_the_config_checks():
    import importlib.util

    from configs import default
    from force_jax.config import validate

    checked = 0
    for command in ("train", "prune"):
        spec = importlib.util.find_spec(f"force_jax.{command}")
        with open(spec.origin) as f:
            doc = f.read().split('"""')[1]
        for example in _example_commands(doc):
            assert "--config=configs/default.py" in example
            config = default.get_config()
            for token in example:
                if token.startswith("--config."):
                    _apply(config, token)
            validate.validate_config(config)
            checked += 1
    assert checked >= 2


def test_a_missing_config_file_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != startup.LIBRARY_LOG_LEVEL[0]}
    result = subprocess.run(
        [sys.executable, "-m", "force_jax.prune", "--config=configs/nope.py",
         f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: --config=configs/nope.py: there is no file 'configs/nope.py' (from {ROOT}); "
        "give a config .py file, e.g. --config=configs/default.py"]
