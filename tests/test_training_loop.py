"""Tests of contextnet_tf.training.loop: NaN stop, kill-and-resume equality, mixed precision, run folder."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from contextnet_tf import data
from contextnet_tf.training import NonFiniteLossError, TrainConfig, loop, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_PY = os.path.join(REPO, "experiments", "train.py")


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = tmp_path_factory.mktemp("city")
    data.generate_synthetic_city(str(root), num_train=8, num_val=2, image_size=(96, 160), seed=1)
    return str(root)


def _config(city, workdir, **overrides):
    fields = dict(
        model="fast_scnn", dataset="synthetic", data_dir=city, workdir=str(workdir), steps=6, batch_size=2,
        crop=(64, 96), eval_every=-1, checkpoint_every=2, log_every=1, progress=False, seed=3,
    )
    fields.update(overrides)
    return TrainConfig(**fields)


def _records(workdir, split="train"):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["split"] == split]


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(city, tmp_path, monkeypatch):
    real_make_dataset = data.make_dataset

    def poisoned(*args, **kwargs):
        dataset = real_make_dataset(*args, **kwargs)
        if kwargs.get("training"):  # The 4th training batch (step 4) carries a NaN image.
            dataset = dataset.enumerate().map(lambda i, b: (tf.where(i >= 3, np.nan, b[0]), b[1]))
        return dataset

    monkeypatch.setattr(data, "make_dataset", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at step 4.*ckpt-2"):
        train(_config(city, tmp_path))
    checkpoint_dir = tmp_path / "checkpoints"
    assert tf.train.latest_checkpoint(str(checkpoint_dir)).endswith("ckpt-2")
    assert not (checkpoint_dir / "ckpt-4.index").exists()
    reader = tf.train.load_checkpoint(str(checkpoint_dir / "ckpt-2"))
    values = [reader.get_tensor(k) for k in reader.get_variable_to_shape_map()]
    assert all(np.all(np.isfinite(v)) for v in values if np.issubdtype(np.asarray(v).dtype, np.floating))
    records = _records(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3, 4] and records[-1]["loss"] is None  # NaN logged as null


def _checkpoint_tensors(workdir):
    path = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    # Variable values only: not the save counter, nor the object graph (it names Keras' global seed generators).
    names = [k for k in reader.get_variable_to_shape_map() if not k.startswith(("save_counter", "_CHECKPOINTABLE"))]
    return path, {k: reader.get_tensor(k) for k in names}


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(city, tmp_path):
    """SIGKILL a training process after its first checkpoint, run it again, compare with an uninterrupted run."""
    fields = dict(model="cn14", steps=16, seed=5)  # cn14 with its auxiliary head and two dropout layers
    uninterrupted = train(_config(city, tmp_path / "a", **fields))
    assert uninterrupted.completed and uninterrupted.step == 16

    killed = tmp_path / "b"
    argv = [
        sys.executable, TRAIN_PY, "--model=cn14", "--dataset=synthetic", f"--data_dir={city}", f"--workdir={killed}",
        "--steps=16", "--batch_size=2", "--crop=64,96", "--eval_every=-1", "--checkpoint_every=2", "--log_every=1",
        "--noprogress", "--seed=5",
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while tf.train.latest_checkpoint(str(killed / "checkpoints")) is None:
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    latest = tf.train.latest_checkpoint(str(killed / "checkpoints"))
    killed_at = int(latest.rsplit("-", 1)[1])
    assert 2 <= killed_at < 16 and not (killed / "final.keras").exists()

    resumed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "completed" in resumed.stdout

    path_a, tensors_a = _checkpoint_tensors(str(tmp_path / "a"))
    path_b, tensors_b = _checkpoint_tensors(str(killed))
    assert path_a.endswith("ckpt-16") and path_b.endswith("ckpt-16")
    assert tensors_a.keys() == tensors_b.keys()
    assert any("dropout_rng" in k for k in tensors_a) and any("optimizer" in k for k in tensors_a)
    different = [key for key in tensors_a if not np.array_equal(tensors_a[key], tensors_b[key])]
    assert not different, f"{len(different)} of {len(tensors_a)} checkpoint values differ, e.g. {different[:5]}"
    # metrics.jsonl: each step once, the replayed steps rewritten with the same losses.
    records_a, records_b = _records(str(tmp_path / "a")), _records(str(killed))
    assert [r["step"] for r in records_b] == list(range(1, 17))
    assert [r["loss"] for r in records_a] == [r["loss"] for r in records_b]


def test_mixed_precision_bfloat16_trains(city, tmp_path):
    config = _config(city, tmp_path, steps=2, mixed_precision=True, precision="bfloat16", aux_weight=0.0)
    assert loop.precision_policy(config) == "mixed_bfloat16"
    result = train(config)
    assert result.completed and np.isfinite(_records(str(tmp_path))[-1]["loss"])
    assert result.model.get_layer("cls_conv").compute_dtype == "bfloat16"
    assert result.model.get_layer("cls_conv").kernel.dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert not isinstance(result.model.output, dict)  # aux_weight=0: no auxiliary heads


def test_class_weighting_is_computed_once_and_stored(city, tmp_path):
    config = _config(city, tmp_path, steps=2, class_weighting="median_frequency")
    train(config)
    with open(os.path.join(str(tmp_path), "class_weights.json")) as f:
        stored = json.load(f)
    info = data.get_info("synthetic")
    assert stored["method"] == "median_frequency" and stored["classes"] == list(info.class_names)
    expected = loop.losses.class_weights(stored["pixels"], stored["image_pixels"], "median_frequency")
    np.testing.assert_allclose(stored["weights"], expected, rtol=1e-6)
    present = np.array(stored["pixels"]) > 0
    assert present.sum() >= 5 and np.median(np.array(stored["weights"])[present]) == pytest.approx(1.0, rel=1e-5)
    assert loop.run_class_weights(loop.RunDir(str(tmp_path)), config, info).tolist() == pytest.approx(
        stored["weights"])
    with pytest.raises(ValueError, match="class_weighting"):
        _config(city, tmp_path, class_weighting="inverse")


def test_init_from_copies_weights_by_layer_name(city, tmp_path):
    first = train(_config(city, tmp_path / "a", steps=2, aux_weight=0.0))
    source = os.path.join(str(tmp_path / "a"), "final.keras")
    model = keras.saving.load_model(source, compile=False)
    # A training model with auxiliary heads, initialised from the inference model: shared layers equal it.
    config = _config(city, tmp_path / "b", steps=1, init_from=source, lr=0.0, weight_decay=0.0)
    target = loop.build_model("fast_scnn", (64, 96, 3), model.output_shape[-1], aux=True)
    loop.initialise_from(target, source)
    for layer in model.layers:
        for w, v in zip(layer.get_weights(), target.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(w, v)
    assert first.completed and train(config).completed
    with pytest.raises(FileNotFoundError, match="init_from"):
        loop.initialise_from(target, str(tmp_path / "missing.keras"))
    other = loop.build_model("cn14", (64, 96, 3), model.output_shape[-1])
    with pytest.raises(ValueError, match="not in .*same network"):
        loop.initialise_from(other, source)
    wider = loop.build_model("fast_scnn", (64, 96, 3), model.output_shape[-1], width=2.0)
    with pytest.raises(ValueError, match="has weights"):
        loop.initialise_from(wider, source)
