"""Tests of contextnet_tf.training.checkpoints: restore falls back to the newest readable checkpoint and says so."""

import logging
import os

import keras
import numpy as np
import pytest

from contextnet_tf.training import checkpoints


def _state(directory):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    return checkpoints.RunCheckpoints(str(directory), model, optimizer, max_to_keep=5), model


def _save_steps(directory, steps):
    state, model = _state(directory)
    for step in steps:
        model.get_layer("dense").kernel.assign(np.full((3, 2), float(step), np.float32))
        state.save(step)
    return state


def _truncate(path):
    (data_file,) = [f"{path}.{n}" for n in ("data-00000-of-00001",) if os.path.exists(f"{path}.{n}")]
    size = os.path.getsize(data_file)
    with open(data_file, "r+b") as f:
        f.truncate(size // 2)


def test_restore_falls_back_to_the_newest_readable_checkpoint(tmp_path, caplog):
    _save_steps(tmp_path, [2, 4, 6])
    _truncate(str(tmp_path / "ckpt-6"))
    state, model = _state(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert state.restore_latest() == 4
    assert float(model.get_layer("dense").kernel.numpy()[0, 0]) == 4.0  # ckpt-4's values, not a mix
    text = caplog.text
    assert "ckpt-6 cannot be restored" in text and "restored" in text and "ckpt-4" in text
    # The unreadable one is set aside, so the list and the next save do not meet it again.
    assert (tmp_path / "unreadable" / "ckpt-6.index").exists() and not (tmp_path / "ckpt-6.index").exists()
    assert checkpoints.list_checkpoints(str(tmp_path))[-1].endswith("ckpt-4")
    state.save(6)
    assert state.latest.endswith("ckpt-6")
    again, _ = _state(tmp_path)
    assert again.restore_latest() == 6


def test_a_damaged_checkpoint_list_still_finds_the_files(tmp_path):
    _save_steps(tmp_path, [1, 2])
    (tmp_path / "checkpoint").write_text("this is not a checkpoint list {{{")
    state, _ = _state(tmp_path)
    assert checkpoints.steps_done(str(tmp_path)) == 2
    assert state.restore_latest() == 2


def test_no_readable_checkpoint_names_each_one(tmp_path):
    _save_steps(tmp_path, [1, 2])
    _truncate(str(tmp_path / "ckpt-1"))
    _truncate(str(tmp_path / "ckpt-2"))
    state, _ = _state(tmp_path)
    with pytest.raises(ValueError, match=r"no checkpoint .* can be restored:\n  .*ckpt-2: .*\n  .*ckpt-1: "):
        state.restore_latest()


def test_fresh_directory_restores_step_0_and_discard_keeps_older_ones(tmp_path):
    state, _ = _state(tmp_path / "new")
    assert state.restore_latest() == 0 and checkpoints.steps_done(str(tmp_path / "new")) == 0
    state = _save_steps(tmp_path / "run", [2, 4, 6])
    kept = state.discard_from(4)
    assert kept.endswith("ckpt-2") and state.latest.endswith("ckpt-2")
    assert [os.path.basename(p) for p in checkpoints.list_checkpoints(str(tmp_path / "run"))] == ["ckpt-2"]
    assert state.discard_from(1) is None and checkpoints.steps_done(str(tmp_path / "run")) == 0
