"""Tests of contextnet_tf.training.run_dir: the run's record is append-only."""

import json

import pytest

from contextnet_tf.training import TrainConfig
from contextnet_tf.training.run_dir import BOOKKEEPING_FIELDS, RESULT_FIELDS, RunDir, RunRecordError


def _config(workdir, **overrides):
    fields = dict(model="fast_scnn", dataset="synthetic", data_dir="/data/a", workdir=str(workdir), steps=40,
                  batch_size=4, crop=(64, 96), lr=0.045, seed=1)
    fields.update(overrides)
    return TrainConfig(**fields)


def test_every_field_is_either_bookkeeping_or_changes_the_result():
    fields = set(TrainConfig.__dataclass_fields__)
    assert set(RESULT_FIELDS) | set(BOOKKEEPING_FIELDS) == fields
    assert not set(RESULT_FIELDS) & set(BOOKKEEPING_FIELDS)
    for name in ("steps", "batch_size", "lr", "lr_power", "end_lr", "seed", "crop", "scale_range", "class_weighting",
                 "model", "dataset", "weight_decay", "eval_scales"):
        assert name in RESULT_FIELDS, name


def test_a_changed_setting_is_refused_naming_each_one(tmp_path):
    run = RunDir(str(tmp_path))
    first = _config(tmp_path)
    assert run.check_resume(first, 0) == {}  # a new run
    run.record(first, 0, {})
    original = (tmp_path / "config.json").read_bytes()
    # Bookkeeping differs freely: data moved, other logging and checkpoint cadence.
    assert run.check_resume(_config(tmp_path, data_dir="/data/b", log_every=1, checkpoint_every=7), 24) == {}
    changed = _config(tmp_path, steps=60, lr=0.01, crop=(96, 96), class_weighting="enet")
    with pytest.raises(RunRecordError) as error:
        run.check_resume(changed, 24)
    message = str(error.value)
    for text in ("steps 40 -> 60", "lr 0.045 -> 0.01", "crop (64, 96) -> (96, 96)", "class_weighting 'none' -> 'enet'",
                 "24 steps done", "--allow_changes", "new --workdir"):
        assert text in message, (text, message)
    assert "data_dir" not in message
    assert (tmp_path / "config.json").read_bytes() == original


def test_structural_changes_are_refused_even_when_allowed(tmp_path):
    run = RunDir(str(tmp_path))
    run.record(_config(tmp_path), 0, {})
    with pytest.raises(RunRecordError, match=r"other model, dataset .*'fast_scnn' -> 'cn14'"):
        run.check_resume(_config(tmp_path, model="cn14", dataset="camvid", allow_changes=True), 5)


def test_allowed_changes_are_appended_with_their_step_and_config_json_is_kept(tmp_path):
    run = RunDir(str(tmp_path))
    first = _config(tmp_path)
    run.record(first, 0, {})
    original = (tmp_path / "config.json").read_bytes()
    changed = _config(tmp_path, steps=60, lr=0.01, allow_changes=True)
    changes = run.check_resume(changed, 24)
    assert changes == {"steps": (40, 60), "lr": (0.045, 0.01)}
    run.record(changed, 24, changes)
    assert (tmp_path / "config.json").read_bytes() == original
    (entry,) = run.config_changes()
    assert entry["step"] == 24 and entry["changes"] == {"steps": {"from": 40, "to": 60}, "lr": {"from": 0.045, "to": 0.01}}
    # The settings in force now are the changed ones: the same command again changes nothing more.
    assert run.recorded_config().lr == 0.01 and run.recorded_config().steps == 60
    assert run.check_resume(_config(tmp_path, steps=60, lr=0.01), 30) == {}
    # Going back to the original lr is another change, refused without the flag and appended with it.
    with pytest.raises(RunRecordError, match="lr 0.01 -> 0.045"):
        run.check_resume(_config(tmp_path, steps=60), 30)
    back = _config(tmp_path, steps=60, allow_changes=True)
    run.record(back, 30, run.check_resume(back, 30))
    assert [e["step"] for e in run.config_changes()] == [24, 30]
    assert json.loads(original)["lr"] == 0.045 and run.recorded_config().lr == 0.045


def test_non_chief_workers_write_nothing(tmp_path):
    run = RunDir(str(tmp_path), chief=False)
    run.record(_config(tmp_path), 0, {})
    assert not (tmp_path / "config.json").exists()
