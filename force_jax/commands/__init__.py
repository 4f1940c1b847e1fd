"""The commands: `python -m force_jax.train`, `.prune` and `.sweep`.

`cli` parses --config and --workdir and prints a one-line error; `train`,
`prune_command` and `sweep` orchestrate a run from a config with the other
application packages (`config`, `runs`, `reports`, `training`).
"""
