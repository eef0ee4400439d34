"""Tests of contextnet_tf.training.loop: divergence stops, kill-and-resume equality, the append-only run record, data
verification before step 1, mixed precision."""

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


# The smallest network (the detail branch alone, 23 layers): a train() call with it costs about a quarter of one with
# Fast-SCNN (tracing the train step dominates). For the tests where the network plays no part.
SMALLEST = "cn14-detail"


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
    with pytest.raises(NonFiniteLossError, match=r"diverged at step 4: ce is nan.*resumes from .*ckpt-2"):
        train(_config(city, tmp_path, model=SMALLEST))
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
    """SIGKILL a training process after its first checkpoint, run it again, compare with an uninterrupted run.

    The killed run is `experiments/train.py` in its own process; the uninterrupted run and the resumed one are
    `train` in this process, so the resumed run has only the killed process's checkpoint to go on."""
    steps = 8  # two epochs of the 8-image city: the resumed run replays part of epoch 1 and starts epoch 2
    # cn14 with its auxiliary head and two dropout layers; epochs unset, as on a command line that gives --steps.
    fields = dict(model="cn14", steps=steps, epochs=None, seed=5)
    uninterrupted = train(_config(city, tmp_path / "a", **fields))
    assert uninterrupted.completed and uninterrupted.step == steps

    killed = tmp_path / "b"
    argv = [
        sys.executable, TRAIN_PY, "--model=cn14", "--dataset=synthetic", f"--data_dir={city}", f"--workdir={killed}",
        f"--steps={steps}", "--batch_size=2", "--crop=64x96", "--eval_every=-1", "--checkpoint_every=2",
        "--log_every=1", "--noprogress", "--seed=5",
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
    assert 2 <= killed_at < steps and not (killed / "final.keras").exists()

    resumed = train(_config(city, killed, **fields))  # the same settings as the command line's
    assert resumed.completed and resumed.step == steps

    path_a, tensors_a = _checkpoint_tensors(str(tmp_path / "a"))
    path_b, tensors_b = _checkpoint_tensors(str(killed))
    assert path_a.endswith(f"ckpt-{steps}") and path_b.endswith(f"ckpt-{steps}")
    assert tensors_a.keys() == tensors_b.keys()
    assert any("dropout_rng" in k for k in tensors_a) and any("optimizer" in k for k in tensors_a)
    different = [key for key in tensors_a if not np.array_equal(tensors_a[key], tensors_b[key])]
    assert not different, f"{len(different)} of {len(tensors_a)} checkpoint values differ, e.g. {different[:5]}"
    # metrics.jsonl: each step once, the replayed steps rewritten with the same losses.
    records_a, records_b = _records(str(tmp_path / "a")), _records(str(killed))
    assert [r["step"] for r in records_b] == list(range(1, steps + 1))
    assert [r["loss"] for r in records_a] == [r["loss"] for r in records_b]


def test_mixed_precision_bfloat16_trains(city, tmp_path):
    config = _config(city, tmp_path, model=SMALLEST, steps=2, mixed_precision=True, precision="bfloat16",
                     aux_weight=0.0)
    assert loop.precision_policy(config) == "mixed_bfloat16"
    result = train(config)
    assert result.completed and np.isfinite(_records(str(tmp_path))[-1]["loss"])
    assert result.model.get_layer("cls_conv").compute_dtype == "bfloat16"
    assert result.model.get_layer("cls_conv").kernel.dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert not isinstance(result.model.output, dict)  # aux_weight=0: no auxiliary heads


def test_class_weighting_is_computed_once_and_stored(city, tmp_path):
    config = _config(city, tmp_path, model=SMALLEST, steps=2, class_weighting="median_frequency")
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


@pytest.mark.slow
def test_init_from_copies_weights_by_layer_name(city, tmp_path):
    first = train(_config(city, tmp_path / "a", steps=2, aux_weight=0.0))
    source = os.path.join(str(tmp_path / "a"), "final.keras")
    model = keras.saving.load_model(source, compile=False)
    # A training model with auxiliary heads, initialised from the inference model: shared layers equal it.
    config = _config(city, tmp_path / "b", steps=1, init_from=source, lr=1e-9, weight_decay=0.0)
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


@pytest.fixture(autouse=True)
def _verified_cache(tmp_path_factory, monkeypatch):
    # data.verify_examples' cache of verified files: one per test module, not the user's.
    monkeypatch.setenv("CONTEXTNET_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "verified_cache"))


def test_exploding_loss_stops_and_keeps_the_checkpoint_from_before_it(city, tmp_path, monkeypatch):
    real_schedule = loop.optim.poly_schedule

    class Exploding(keras.optimizers.schedules.LearningRateSchedule):
        """The poly schedule, except that the update of step 4 (iteration 3) on uses a learning rate of 1e4."""

        def __init__(self, schedule):
            self.schedule = schedule

        def __call__(self, iteration):
            return tf.where(iteration >= 3, 1e4, self.schedule(iteration))

    def exploding(*args, **kwargs):
        return Exploding(real_schedule(*args, **kwargs))

    monkeypatch.setattr(loop.optim, "poly_schedule", exploding)
    with pytest.raises(loop.DivergenceError, match=r"diverged at step 5: .*step 4 on were discarded.*ckpt-2") as error:
        train(_config(city, tmp_path, model=SMALLEST, steps=8))
    assert "nan" not in str(error.value).split("(lr")[0]  # caught by its size, not as NaN
    checkpoint_dir = tmp_path / "checkpoints"
    # ckpt-4 held finite but wrecked weights (step 4's update); only ckpt-2 is left.
    assert tf.train.latest_checkpoint(str(checkpoint_dir)).endswith("ckpt-2")
    assert not (checkpoint_dir / "ckpt-4.index").exists()
    records = _records(str(tmp_path))
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert np.isfinite(records[-1]["loss"]) and records[-1]["loss"] > 10 * max(r["loss"] for r in records[:4])


def test_run_record_is_append_only(city, tmp_path):
    workdir = tmp_path / "run"
    killed = train(_config(city, workdir, model=SMALLEST, stop_at_step=2))
    assert not killed.completed and killed.step == 2
    config_json = (workdir / "config.json").read_bytes()
    # Fewer steps than done (killed at 2 of 6, asked for 1): nothing to do, nothing written.
    short = train(_config(city, workdir, model=SMALLEST, steps=1))
    assert short.step == 2 and not short.completed and not (workdir / "final.keras").exists()
    with pytest.raises(loop.RunRecordError, match=r"lr 0.045 -> 0.01.*seed 3 -> 4.*--allow_changes"):
        train(_config(city, workdir, model=SMALLEST, lr=0.01, seed=4))
    assert (workdir / "config.json").read_bytes() == config_json
    # Allowed: trained to the end with the new lr, the change recorded at step 2, config.json untouched.
    done = train(_config(city, workdir, model=SMALLEST, lr=0.01, log_every=2, allow_changes=True))
    assert done.completed and done.step == 6
    assert (workdir / "config.json").read_bytes() == config_json
    (change,) = loop.RunDir(str(workdir)).config_changes()
    assert change["step"] == 2 and change["changes"] == {"lr": {"from": 0.045, "to": 0.01}}
    assert [r["lr"] for r in _records(str(workdir)) if r["step"] in (1, 4)][1] < 0.01  # the new schedule ran
    # Complete: running again (or asking for fewer steps) rewrites nothing.
    final = workdir / "final.keras"
    stamp = (final.stat().st_mtime_ns, (workdir / "metrics.jsonl").read_bytes())
    for steps in (6, 3):
        again = train(_config(city, workdir, model=SMALLEST, lr=0.01, steps=steps))
        assert again.completed and again.step == 6 and again.model is not None
    assert (final.stat().st_mtime_ns, (workdir / "metrics.jsonl").read_bytes()) == stamp
    assert len(loop.RunDir(str(workdir)).config_changes()) == 1


def test_bad_label_values_anywhere_and_corrupt_images_stop_before_step_1(tmp_path):
    import cv2

    root = str(tmp_path / "city")
    data.generate_synthetic_city(root, num_train=4, num_val=2, image_size=(64, 96), seed=2)
    pairs = data.list_examples("synthetic", root, "train")
    patch, rows = pairs[0][1], pairs[1][1]
    label = cv2.imread(patch, cv2.IMREAD_UNCHANGED)
    label[10:50, 10:50] = 200  # a patch a random crop may miss
    cv2.imwrite(patch, label)
    label = cv2.imread(rows, cv2.IMREAD_UNCHANGED)
    label[::2] = 200
    cv2.imwrite(rows, label)
    val_image = data.list_examples("synthetic", root, "val")[0][0]
    raw = bytearray(open(val_image, "rb").read())
    raw[len(raw) // 2: len(raw) // 2 + 16] = bytes(16)  # bad bytes in the middle; header and IEND intact
    open(val_image, "wb").write(raw)
    workdir = tmp_path / "run"
    with pytest.raises(data.DataError) as error:
        train(_config(root, workdir, steps=2, eval_every=0))
    message = str(error.value)
    assert "3 bad files" in message and patch in message and rows in message and "[200]" in message
    assert val_image in message and "corrupt" in message
    assert not (workdir / "config.json").exists() and not (workdir / "checkpoints").exists()


@pytest.mark.slow
def test_a_run_that_never_validates_saves_the_same_final_model_as_one_that_does(city, tmp_path):
    """eval_every=-1 used to save the crop-sized training graph as final.keras: a plain Functional model without the
    package's recipe (so it could not be pruned) and fixed to the crop size."""
    from contextnet_tf import load_model
    from contextnet_tf.models import SegmentationModel

    never = train(_config(city, tmp_path / "never", model="cn14-160", steps=2, eval_every=-1))
    final = load_model(tmp_path / "never" / "final.keras")
    assert isinstance(final, SegmentationModel) and tuple(final.input.shape) == (None, None, None, 3)
    assert final.get_config()["variant"] == "cn14-160"
    image = np.random.default_rng(0).uniform(0, 255, (1, 64, 96, 3)).astype(np.float32)
    np.testing.assert_allclose(final(image), never.model(image), rtol=1e-5, atol=1e-5)  # the trained weights
    assert final(np.zeros((1, 96, 160, 3), np.float32)).shape == (1, 96, 160, 19)  # not only the 64x96 crop


def test_ema_run_validates_and_saves_the_average_and_resumes_it(city, tmp_path):
    """--ema_momentum=0.5 over 4 steps, killed (stop_at_step) after step 2 and resumed: final.keras and best.keras hold
    w1/8 + w2/8 + w3/4 + w4/2 of the weights w_k each checkpoint holds (the average restarts as the weights after step
    1); the checkpoints keep the training weights. A resume that lost the average would break the sum."""
    from contextnet_tf import load_model

    fields = dict(model=SMALLEST, steps=4, checkpoint_every=1, keep_checkpoints=4, eval_every=0, ema_momentum=0.5,
                  lr=0.2)
    workdir = tmp_path / "ema"
    assert not train(_config(city, workdir, stop_at_step=2, **fields)).completed
    result = train(_config(city, workdir, **fields))
    assert result.completed and result.step == 4
    config = _config(city, workdir, **fields)
    model = loop.config_model_fn(config, data.get_info("synthetic"))((*config.crop, 3), config.aux_weight > 0)
    state = tf.train.Checkpoint(model=model)
    weights = []
    for step in (1, 2, 3, 4):
        state.restore(str(workdir / "checkpoints" / f"ckpt-{step}")).expect_partial()
        weights.append({v.path: v.numpy() for v in model.trainable_weights})
    expected = {k: weights[0][k] / 8 + weights[1][k] / 8 + weights[2][k] / 4 + weights[3][k] / 2 for k in weights[0]}
    for name in ("final.keras", "best.keras"):
        saved = {v.path: v.numpy() for v in load_model(workdir / name).trainable_weights}
        assert saved and set(saved) <= set(expected)
        for key, value in saved.items():
            np.testing.assert_allclose(value, expected[key], rtol=1e-5, atol=1e-6, err_msg=f"{name} {key}")
        assert any(not np.allclose(value, weights[3][key]) for key, value in saved.items())  # not the last weights
    with pytest.raises(ValueError, match="ema_momentum must be in"):
        _config(city, workdir, ema_momentum=1.5)
