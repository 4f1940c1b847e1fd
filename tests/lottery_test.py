"""Lottery tickets on LeNet-5 and Fashion-MNIST: rounds, rewinding, resume by rounds."""

from __future__ import annotations

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from train_test import final_state, needs_real_data, tiny_config

from force_jax import optim
from force_jax.commands import lottery
from force_jax.core import masks
from force_jax.errors import ConfigError


def test_a_round_keeps_the_largest_trained_weights_among_those_kept():
    params = {"w": jnp.asarray([[3.0, -5.0, 1.0], [-2.0, 2.0, 0.5]]), "b": jnp.zeros(3)}
    mask = {"w": jnp.asarray([[1, 0, 1], [1, 1, 1]], bool), "b": jnp.ones((), bool)}
    new = lottery.prune_trained(params, mask, 3)  # |-5| is pruned already; 2 and -2 tie
    np.testing.assert_array_equal(new["w"], [[1, 0, 0], [1, 1, 0]])


def test_the_rounds_reach_the_sparsity_geometrically():
    config = tiny_config(**{"lottery.rounds": 3, "prune.sparsity": 0.992})
    sparsities = [lottery.round_config(config, r).prune.sparsity for r in range(4)]
    assert sparsities[0] == 0 and sparsities[3] == 0.992
    np.testing.assert_allclose(1 - np.asarray(sparsities), 0.008 ** (np.arange(4) / 3))


@pytest.mark.parametrize("overrides, message", [
    ({"lottery.rounds": 0}, r"lottery.rounds=0: expected an integer >= 1"),
    ({"lottery.rounds": 2, "lottery.rewind_step": 6},
     r"lottery.rewind_step=6: expected a step before the end of training \(6 steps\)"),
    ({"lottery.rounds": 2, "lottery.rewind_step": -2}, r"lottery.rewind_step=-2"),
    ({"lottery.rounds": 2, "train.mask_changes.method": "set"},
     r"mask_changes.method='set': a lottery run trains each round at a fixed mask"),
])
def test_a_bad_lottery_setting_fails_before_any_work(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        lottery.run_lottery(tiny_config(**overrides), str(tmp_path))
    assert not os.listdir(tmp_path)


@pytest.mark.slow
@needs_real_data
def test_two_rounds_rewind_prune_for_good_and_resume_by_rounds(tmp_path):
    config = tiny_config(**{"lottery.rounds": 2, "lottery.rewind_step": 2,
                            "prune.sparsity": 0.9})
    results = lottery.run_lottery(config, str(tmp_path))
    assert [r["round"] for r in results] == [0, 1, 2]
    assert json.loads((tmp_path / "lottery.json").read_text())["rounds"] == results
    assert (tmp_path / "round_0" / "rewind_point").is_dir()
    round_masks = []
    for r in range(3):
        state, step = final_state(lottery.round_config(config, r), str(tmp_path / f"round_{r}"))
        assert step == 6
        round_masks.append(optim.mask_from_state(state.opt_state))
        for p, m in zip(jax.tree.leaves(state.params), jax.tree.leaves(round_masks[-1])):
            if masks.is_prunable_leaf(m):
                assert not np.any(np.asarray(p)[~np.asarray(m)])
    n = masks.num_prunable(round_masks[0])
    assert [int(masks.num_kept(m)) for m in round_masks] == [n, int(0.1 ** 0.5 * n), n // 10]
    for before, after in zip(round_masks[1:], round_masks[2:]):
        for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
            assert not np.any(np.asarray(b) & ~np.asarray(a))  # a pruned weight stays pruned
    record = json.loads((tmp_path / "round_1" / "prune.json").read_text())
    assert record["rewind_step"] == 2 and record["report"]["kept"] == int(0.1 ** 0.5 * n)

    final = results[-1]["test_accuracy"]
    shutil.rmtree(tmp_path / "round_2")  # the last round lost: only it runs again
    # Its start: round 1's trained weights pruned, the rest rewound to step 2 of round 0.
    round_2 = lottery.round_config(config, 2)
    lottery._start_round(round_2, str(tmp_path / "round_2"), str(tmp_path / "round_1"))
    start, step = final_state(round_2, str(tmp_path / "round_2"))
    assert step == 2 and int(start.step) == 2
    with ocp.StandardCheckpointer() as ckpt:
        rewound = ckpt.restore(str(tmp_path / "round_0" / "rewind_point"))
    expected = masks.apply_mask(rewound["params"], round_masks[2])
    jax.tree.map(np.testing.assert_array_equal, start.params, expected)
    counts = [v for _, v in optax.tree_utils.tree_get_all_with_path(start.opt_state, "count")]
    assert counts and all(int(c) == 2 for c in counts)  # the schedule goes on from step 2
    # A kill before the start was whole (no prune.json): the rerun makes it again.
    (tmp_path / "round_2" / "prune.json").unlink()
    again = lottery.run_lottery(config, str(tmp_path))
    assert again[:2] == results[:2] and again[-1]["test_accuracy"] == final


@needs_real_data
def test_one_shot_after_training_as_a_sweep_cell(tmp_path):
    """One round without rewinding, run as a sweep cell: the last round's record at the root."""
    config = tiny_config(**{"lottery.rounds": 1, "lottery.rewind_step": -1,
                            "prune.sparsity": 0.9})
    metrics = lottery.run_as_one_run(config, str(tmp_path))
    last = tmp_path / "round_1"
    for name in ("metrics.json", "prune.json", "metrics.jsonl"):
        assert (tmp_path / name).read_text() == (last / name).read_text(), name
    assert metrics == json.loads((last / "metrics.json").read_text())
    record = json.loads((tmp_path / "prune.json").read_text())
    n = record["report"]["total"]
    assert record["method"] == "lottery" and record["rewind_step"] == -1
    assert record["report"]["kept"] == n // 10  # floor((1 - 0.9) n), as every method keeps
    assert metrics["step"] == 6 and metrics["global_density"] == pytest.approx((n // 10) / n)
