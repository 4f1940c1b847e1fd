"""An ml_collections config, checked and turned into what a run needs.

`validate` checks a config's keys and values before any work, `setup` builds
the model, variables, pruning examples and method of a config, and
`sweep_grid` expands a sweep config into its cells.
"""
