"""Tables and figures over runs and sweep folders.

`sweep_report` writes a sweep's results.csv and summary.md, `plots` the PNG
figures and `tables` the markdown and CSV text they share; `sweep_compare`,
`scale_report` and `mask_paths` are studies over finished sweep folders, and
`seed_ranking` says how stable a ranking of methods is over seeds.
"""
