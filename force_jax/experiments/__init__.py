"""Config-driven applications: an ml_collections config -> runs and reports.

`setup` builds what every command needs from a config (model, variables,
pruning examples, scoring loss, mask); `train`, `prune_command` and `sweep`
are the commands (`python -m force_jax.train`, `.prune`, `.sweep`);
`sweep_report`, `sweep_compare` and `plots` turn runs into tables and
figures; `workdir` and `lock` keep one config per output folder.
"""
