"""Compute and save a pruning mask only (no training).

    python -m force_jax.prune --config=configs/default.py --workdir=/tmp/mask \
        --config.data.data_dir=../shared/datasets/tfds

Writes workdir/mask (an orbax checkpoint of the mask pytree), prune.json
(per-layer table, schedule history, timing) and layer_density.png, and prints
the per-layer density table. `--config.prune.ablation=shuffle`, `shuffle_taps` or `invert`
writes the ablated mask (see `force_jax.core.sanity`); `reinit` concerns training
only and is refused here.
"""

from __future__ import annotations

import os
import time

import ml_collections
import orbax.checkpoint as ocp

from force_jax.config import pruning_run, setup, validate
from force_jax.core import density, masks
from force_jax.errors import ConfigError
from force_jax.reports import plots
from force_jax.runs import checkpoint, files
from force_jax.runs import workdir as workdir_lib


def prune_and_save(config: ml_collections.ConfigDict, workdir: str) -> density.SparsityReport:
    """Builds the configured model, prunes it and writes the mask and its report.

    Args:
      config: experiment config (same keys as for training).
      workdir: output folder.

    Returns:
      The sparsity report of the mask.

    Raises:
      ConfigError: for bad config values (a sparsity that keeps no weight
        included), or a workdir of another config or in use by another run;
        all before anything is written.
      OSError: naming the path, when the disk refuses a write (see
        `files.DISK_ERRNOS`).
    """
    validate.validate_config(config)
    if config.prune.get("ablation", "none") == "reinit":
        raise ConfigError("config.prune.ablation='reinit' changes the initial weights training "
                          "starts from, not the mask: run it with python -m force_jax.train")
    workdir_lib.check_location(workdir)
    # The dataset's description and the model, checked against the config (a sparsity that
    # keeps no weight, batches larger than the data) before the workdir is touched.
    exp = setup.experiment(config)
    with workdir_lib.claim(workdir, config):
        return _prune_and_save(config, workdir, exp)


def _prune_and_save(config: ml_collections.ConfigDict, workdir: str,
                    exp: setup.Experiment) -> density.SparsityReport:
    """The body of `prune_and_save`, on a locked workdir that answers to `config`."""
    start = time.perf_counter()
    mask, history = pruning_run.prune_at_init(config, exp.model, exp.variables, exp.prune_key)
    seconds = time.perf_counter() - start
    report = pruning_run.mask_report(exp.model, exp.variables, mask, exp.info.image_shape)
    mask_dir = files.absolute(os.path.join(workdir, "mask"))
    checkpoint.save_tree(mask_dir, mask)
    checkpoint.write_json(os.path.join(workdir, "prune.json"),
                          pruning_run.prune_record(config, seconds, report, history))
    plots.plot_layer_density(
        {config.prune.method: report}, os.path.join(workdir, "layer_density.png"),
        title=f"{config.model.name}, {config.prune.method}, sparsity {config.prune.sparsity}",
    )
    print(report)
    print(f"pruned in {seconds:.1f} s; mask written to {mask_dir}")
    return report


def load_mask(workdir: str, params: object) -> object:
    """Reads a mask written by `prune_and_save` for a model with these params."""
    template = masks.init_mask(params)
    with ocp.StandardCheckpointer() as ckpt:
        return ckpt.restore(files.absolute(os.path.join(workdir, "mask")), template)


def main() -> None:
    """Command line: --config=configs/x.py --workdir=DIR [--config.key=value ...]."""
    from force_jax.commands import cli

    cli.run_config_command(
        prune_and_save, "Output folder: the mask, prune.json and layer_density.png.")


if __name__ == "__main__":
    main()
