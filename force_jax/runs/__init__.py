"""A run's files, in one place: local folders and gs:// alike.

`files` is the path layer (every read and write of a run goes through it,
atomically), `lock` keeps one process per workdir, `workdir` guards a
workdir's config (a rerun never mixes two configs), `checkpoint` holds the
orbax checkpoints and the JSON records, `metrics` the metric writers, and
`disk` the message of a write the disk refused.
"""
