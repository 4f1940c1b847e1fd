"""`--help` of each command: its usage paragraph, --config and --workdir with their help."""

from __future__ import annotations

import os
import subprocess
import sys

from absl import flags

from force_jax.experiments import cli

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
    level = os.environ.get(cli.LIBRARY_LOG_LEVEL[0])
    import force_jax.sweep  # noqa: F401
    import force_jax.train  # noqa: F401

    assert "config" not in flags.FLAGS and "workdir" not in flags.FLAGS
    assert os.environ.get(cli.LIBRARY_LOG_LEVEL[0]) == level  # quieted by the commands only


def test_each_command_s_help_lists_its_usage_and_flags():
    """python -m force_jax.<command> --help, the three at once (each imports TensorFlow)."""
    # As a user starts it: no log level set (this process's jax set one).
    env = {k: v for k, v in os.environ.items() if k != cli.LIBRARY_LOG_LEVEL[0]}
    runs = {command: subprocess.Popen(
        [sys.executable, "-m", f"force_jax.{command}", "--help"], cwd=ROOT, text=True, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for command in WORKDIR_HELP}
    for command, run in runs.items():
        output = run.communicate(timeout=600)[0]
        assert "Traceback" not in output, output
        usage = (f"usage: python -m force_jax.{command} --config=configs/"
                 if command != "sweep" else "usage: python -m force_jax.sweep --config=")
        assert usage in output and "[--config.KEY=VALUE ...]" in output, output
        assert "--config: Experiment config file" in output, output
        assert "--config.KEY=VALUE, e.g. --config.prune.sparsity=0.98" in output, output
        assert f"--workdir: {WORKDIR_HELP[command]}" in output, output
        # Nothing before the usage but the command's one-line description.
        assert output.splitlines()[2].startswith(f"usage: python -m force_jax.{command} ")
