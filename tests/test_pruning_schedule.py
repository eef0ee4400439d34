"""The 2x -> 1.5x -> 1.25x -> 1x schedule end to end on a tiny synthetic city."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest

from contextnet_tf import build_model, data, evaluate, load_model
from contextnet_tf.pruning import filters as pruning
from contextnet_tf.pruning import schedule as prune_schedule
from contextnet_tf.models.profiling import count_trainable_params
from contextnet_tf.training import TrainConfig
from contextnet_tf.training.run_dir import RunRecordError


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = tmp_path_factory.mktemp("city")
    data.generate_synthetic_city(root, num_train=6, num_val=2, image_size=(64, 128), seed=1)
    return str(root)


@pytest.mark.slow
def test_schedule_runs_end_to_end_and_each_stage_is_the_width_build(city, tmp_path):
    config = TrainConfig(model="cn14-160", dataset="synthetic", data_dir=city, workdir=str(tmp_path / "prune"),
                         steps=2, batch_size=2, crop=(64, 128), eval_every=0, checkpoint_every=100, progress=False,
                         num_prediction_images=0)
    rows = prune_schedule.run_schedule(config, wide_steps=3, finetune_steps=2, finetune_lr=0.01,
                                       importance="bn_scaled_l1")
    info = data.get_info("synthetic")
    assert [r["width"] for r in rows] == [2.0, 1.5, 1.25, 1.0]
    assert [r["importance"] for r in rows] == [None, "bn_scaled_l1", "bn_scaled_l1", "bn_scaled_l1"]
    assert [r["lr"] for r in rows] == [config.lr, 0.01, 0.01, 0.01]
    assert [r["steps"] for r in rows] == [3, 2, 2, 2]
    for row in rows:
        expected = count_trainable_params(build_model("cn14-160", (64, 128, 3), 19, width=row["width"]))
        assert row["params"] == expected
        # The stage's mIoU is that of its saved final model: evaluated again here, the same confusion matrix.
        final = load_model(os.path.join(row["workdir"], "final.keras"))
        assert count_trainable_params(final) == expected
        metrics = evaluate(final, data.make_dataset("synthetic", city, "val", training=False, batch_size=1), info)
        with open(os.path.join(row["workdir"], "val_metrics.json")) as f:
            stored = json.load(f)
        assert metrics["num_images"] == 2
        np.testing.assert_array_equal(stored["confusion_matrix"], metrics["confusion_matrix"])
        assert row["miou"] == pytest.approx(metrics["miou"], abs=1e-12)
    params = [r["params"] for r in rows]
    assert params == sorted(params, reverse=True)
    with open(tmp_path / "prune" / "pruning.json") as f:
        assert json.load(f) == rows
    table = prune_schedule.markdown_table(rows)
    assert table.count("\n") == 5 and "| 3 | 1x |" in table

    # Running again skips the finished stages and reports the same rows.
    again = prune_schedule.run_schedule(config, wide_steps=3, finetune_steps=2, finetune_lr=0.01,
                                        importance="bn_scaled_l1")
    assert [r["params"] for r in again] == params
    assert [r["miou"] for r in again] == pytest.approx([r["miou"] for r in rows])


def test_schedule_rejects_non_decreasing_widths(city, tmp_path):
    config = TrainConfig(model="cn14", dataset="synthetic", data_dir=city, workdir=str(tmp_path), steps=1)
    with pytest.raises(ValueError, match="strictly decrease"):
        prune_schedule.run_schedule(config, widths=(1.0, 1.5))


@pytest.mark.parametrize("importance", pruning.IMPORTANCES)
def test_each_stage_starts_from_the_previous_final_model_pruned_by_the_chosen_importance(tmp_path, importance):
    wide = build_model("cn14-detail", (64, 128, 3), num_classes=3, width=1.5)
    rng = np.random.default_rng(0)
    for layer in wide.layers:  # batch norms far from identity, so the two importances choose differently
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.1, 2, n), rng.normal(0, 0.3, n), rng.normal(0, 0.3, n),
                               rng.uniform(0.1, 4, n)])
    path = str(tmp_path / "final.keras")
    wide.save(path)
    model = prune_schedule.pruned_model_fn(path, 1.0, importance)((64, 128, 3), False)
    source = load_model(path)
    expected = {name: pruning.transfer_pruned_weights(source, build_model("cn14-detail", (64, 128, 3), 3), name)
                for name in pruning.IMPORTANCES}
    assert [w.shape for w in model.weights] == [w.shape for w in expected[importance].weights]
    for name, want in expected.items():
        same = all(np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
                   for a, b in zip(model.weights, want.weights, strict=True))
        assert same == (name == importance), name


def test_schedule_rejects_an_unknown_importance(city, tmp_path):
    config = TrainConfig(model="cn14", dataset="synthetic", data_dir=city, workdir=str(tmp_path), steps=1)
    with pytest.raises(ValueError, match="filter importance must be one of l1, bn_scaled_l1, got 'L1'"):
        prune_schedule.run_schedule(config, importance="L1")


@pytest.mark.slow
def test_recalibration_and_variants_sharing_a_wide_stage(city, tmp_path):
    config = TrainConfig(model="cn14-160", dataset="synthetic", data_dir=city, steps=2, batch_size=2, crop=(64, 128),
                         eval_every=0, checkpoint_every=100, progress=False, num_prediction_images=0)
    widths = (1.5, 1.0)
    results = prune_schedule.run_variants(
        config, str(tmp_path), [5], {"l1": {"recalibrate_batches": 2}, "bn": {"importance": "bn_scaled_l1"}},
        widths=widths, wide_steps=2, finetune_steps=1)
    (rows,), (rows_bn,) = results["l1"], results["bn"]
    info = data.get_info("synthetic")
    assert rows[0]["miou_before_recalibration"] is None and rows[0]["recalibrate_batches"] == 0
    stage = rows[1]["workdir"]
    final = load_model(os.path.join(stage, "final.keras"))
    recalibrated = load_model(os.path.join(stage, "recalibrated.keras"))
    with open(os.path.join(stage, "val_metrics.json")) as f:
        assert rows[1]["miou_before_recalibration"] == json.load(f)["miou"]
    # Same weights except the batch norms' moving statistics, and the row's mIoU is the recalibrated model's.
    for a, b in zip(final.weights, recalibrated.weights, strict=True):
        same = np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
        assert same == (a.path.split("/")[-1] not in ("moving_mean", "moving_variance")), a.path
    metrics = evaluate(recalibrated, data.make_dataset("synthetic", city, "val", training=False, batch_size=1), info)
    assert rows[1]["miou"] == pytest.approx(metrics["miou"], abs=1e-12)
    assert "val mIoU before" in prune_schedule.markdown_table(rows)
    # The second variant pruned the same wide network (not trained again), with its own importance.
    assert rows_bn[0]["workdir"] == rows[0]["workdir"] == str(tmp_path / "l1_s5" / "stage0_w1.5")
    assert rows_bn[0]["miou"] == rows[0]["miou"] and [r["importance"] for r in rows_bn] == [None, "bn_scaled_l1"]
    assert sorted(os.listdir(tmp_path / "bn_s5")) == ["pruning.json", "stage1_w1"]
    with open(tmp_path / "l1_s5" / "stage0_w1.5" / "config.json") as f:
        assert json.load(f)["seed"] == 5
    # Resuming a folder with another importance or recalibration is refused (its stages were not pruned so).
    again = dataclasses.replace(config, seed=5, workdir=str(tmp_path / "l1_s5"))
    with pytest.raises(ValueError, match="importance l1, not bn_scaled_l1"):
        prune_schedule.run_schedule(again, widths=widths, wide_steps=2, finetune_steps=1, recalibrate_batches=2,
                                    importance="bn_scaled_l1")
    with pytest.raises(ValueError, match="recalibrate_batches 2, not 0"):
        prune_schedule.run_schedule(again, widths=widths, wide_steps=2, finetune_steps=1)
    # A wide run trained with other settings is not pruned as if it were this schedule's stage 0.
    with pytest.raises(RunRecordError, match="steps 2 -> 3"):
        prune_schedule.run_schedule(dataclasses.replace(again, workdir=str(tmp_path / "x")), widths=widths,
                                    wide_steps=3, finetune_steps=1, wide_dir=rows[0]["workdir"])
