"""The programs as a user meets them: user errors end in one line naming the file or flag (status 1), checked before
long work; a run folder's record survives being resumed with other flags."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from contextnet_tf import build_model, data, load_model
from contextnet_tf.models import dataset_recipe

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVALUATE_PY = os.path.join(REPO, "experiments", "evaluate.py")
TRAIN_PY = os.path.join(REPO, "experiments", "train.py")
PREDICT_PY = os.path.join(REPO, "experiments", "predict.py")
EXPORT_PY = os.path.join(REPO, "experiments", "export.py")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("verified_cache")
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CONTEXTNET_CACHE_DIR=str(cache), CUDA_VISIBLE_DEVICES="")


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = tmp_path_factory.mktemp("city")
    data.generate_synthetic_city(str(root), num_train=4, num_val=2, image_size=(64, 96), seed=4)
    return str(root)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for name in ("synthetic", "camvid"):
        paths[name] = str(folder / f"{name}.keras")
        build_model("fast_scnn", **dataset_recipe(data.get_info(name))).save(paths[name])
    paths["corrupt"] = str(folder / "corrupt.keras")
    with open(paths["synthetic"], "rb") as f, open(paths["corrupt"], "wb") as g:
        g.write(f.read()[:5000])
    return paths


def _run(argv, env):
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, timeout=600)


def _one_line_error(result, program):
    """The error line of a program that failed with a user error (status 1, no traceback)."""
    assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"{program}: error: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


@pytest.mark.slow
def test_evaluate_checks_output_model_and_classes_before_the_pass(city, models, tmp_path, env):
    base = [EVALUATE_PY, "--dataset=synthetic", f"--data_dir={city}"]
    # --output is checked first: the model named here does not even exist.
    line = _one_line_error(_run([*base, "--model=/nowhere.keras", f"--output={tmp_path}/missing/m.json"], env),
                           "evaluate.py")
    assert "--output" in line and f"{tmp_path}/missing" in line and "does not exist" in line
    line = _one_line_error(_run([*base, "--model=/nowhere.keras"], env), "evaluate.py")
    assert "/nowhere.keras" in line
    line = _one_line_error(_run([*base, f"--model={models['corrupt']}"], env), "evaluate.py")
    assert models["corrupt"] in line and "corrupt" in line and "not found" not in line.lower()
    line = _one_line_error(_run([*base, f"--model={models['camvid']}", f"--output={tmp_path}/m.json"], env),
                           "evaluate.py")
    assert "predicts 11 classes, trained on camvid, but synthetic has 19" in line
    assert not (tmp_path / "m.json").exists()


@pytest.mark.slow
def test_evaluate_checks_every_label_and_verbose_shows_the_traceback(models, tmp_path, env):
    import cv2

    root = str(tmp_path / "city")
    data.generate_synthetic_city(root, num_train=2, num_val=2, image_size=(64, 96), seed=5)
    label = data.list_examples("synthetic", root, "val")[1][1]
    values = cv2.imread(label, cv2.IMREAD_UNCHANGED)
    values[::2] = 200
    cv2.imwrite(label, values)
    argv = [EVALUATE_PY, "--dataset=synthetic", f"--data_dir={root}", f"--model={models['synthetic']}"]
    line = _one_line_error(_run(argv, env), "evaluate.py")
    assert "1 bad files" in line
    result = _run([*argv, "--verbose"], env)
    assert result.returncode != 0 and "Traceback" in result.stderr and label in result.stderr


@pytest.mark.slow
def test_evaluate_writes_the_metrics_of_a_model_that_fits(city, models, tmp_path, env):
    output = tmp_path / "metrics.json"
    result = _run([EVALUATE_PY, "--dataset=synthetic", f"--data_dir={city}", f"--model={models['synthetic']}",
                   f"--output={output}"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(output.read_text())
    # The written confusion matrix is the model's argmax against the val labels, counted here independently of
    # contextnet_tf.evaluation (the model called on each decoded image, np.bincount over the labelled pixels).
    info = data.get_info("synthetic")
    model = load_model(models["synthetic"])
    expected = np.zeros((info.num_classes, info.num_classes), np.int64)
    for images, labels in data.make_dataset("synthetic", city, "val", training=False, batch_size=1):
        predicted = np.argmax(keras.ops.convert_to_numpy(model(images, training=False)), axis=-1).ravel()
        labels = np.asarray(labels).ravel()
        valid = labels != info.ignore_label
        expected += np.bincount(info.num_classes * labels[valid] + predicted[valid],
                                minlength=info.num_classes**2).reshape(info.num_classes, info.num_classes)
    confusion = np.asarray(metrics["confusion_matrix"], np.int64)
    np.testing.assert_array_equal(confusion, expected)
    assert confusion.sum() == metrics["num_pixels"] and metrics["num_images"] == 2
    # The mIoU and the per-class IoUs are those of the matrix: classes absent from labels and predictions are None.
    union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    iou = np.diag(confusion) / np.maximum(union, 1)
    assert list(metrics["class_iou"].values()) == [None if u == 0 else pytest.approx(v) for u, v in zip(union, iou)]
    assert metrics["miou"] == pytest.approx(np.mean(iou[union > 0]))


@pytest.mark.slow  # five launches of train.py (two minutes on two busy cores)
def test_train_keeps_the_run_record_and_refuses_impossible_values(city, tmp_path, env):
    workdir = tmp_path / "run"
    base = [TRAIN_PY, "--model=fast_scnn", "--dataset=synthetic", f"--data_dir={city}", f"--workdir={workdir}",
            "--batch_size=2", "--crop=64x96", "--eval_every=-1", "--checkpoint_every=2", "--noprogress", "--seed=1"]
    first = _run([*base, "--steps=2"], env)
    assert first.returncode == 0, first.stderr[-3000:]
    config_json = (workdir / "config.json").read_bytes()
    final_time = (workdir / "final.keras").stat().st_mtime_ns
    # Resuming with another learning rate and more steps: refused, naming both; nothing written.
    refused = _run([*base, "--steps=4", "--lr=0.01"], env)
    assert refused.returncode != 0
    assert "steps 2 -> 4" in refused.stderr and "lr 0.045 -> 0.01" in refused.stderr, refused.stderr[-3000:]
    assert "--allow_changes" in refused.stderr
    # As many steps as done, or fewer: already complete, exit 0, final.keras not rewritten.
    for steps in (2, 1):
        again = _run([*base, f"--steps={steps}"], env)
        assert again.returncode == 0 and "completed" in again.stdout, again.stderr[-3000:]
    assert (workdir / "final.keras").stat().st_mtime_ns == final_time
    assert (workdir / "config.json").read_bytes() == config_json and not (workdir / "config_changes.jsonl").exists()
    # Impossible values are refused before anything runs, naming the flag.
    for flag, text in (("--lr=-1", "lr must be positive"),):
        bad = _run([*base[:4], f"--workdir={tmp_path / 'other'}", "--steps=2", flag], env)
        assert bad.returncode != 0 and text in bad.stderr, (flag, bad.stderr[-2000:])
        assert not (tmp_path / "other" / "config.json").exists()


@pytest.mark.slow
def test_train_and_export_check_their_output_before_anything_runs(city, tmp_path, env):
    """A --workdir or --output that cannot be created (under a file) ends the program in one line naming the flag,
    before the data is read or the model loads (the model named does not even exist)."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    line = _one_line_error(_run([TRAIN_PY, "--model=fast_scnn", "--dataset=synthetic", f"--data_dir={city}",
                                 f"--workdir={blocker}/run", "--steps=2", "--crop=64x96"], env), "train.py")
    assert f"--workdir {blocker}/run" in line and "is a file" in line
    assert blocker.read_text() == "not a folder"
    line = _one_line_error(_run([EXPORT_PY, "--model=/nowhere.keras", "--format=saved_model",
                                 f"--output={blocker}/saved_model"], env), "export.py")
    assert f"--output {blocker}/saved_model" in line and "is a file, not a folder" in line


@pytest.mark.slow
def test_predict_refuses_labelids_the_model_cannot_write_and_an_empty_input(city, models, tmp_path, env):
    images = os.path.dirname(data.list_examples("synthetic", city, "val")[0][0])
    output_dir = tmp_path / "out"
    # A 19-class model (trained on the synthetic city, Cityscapes classes) asked for CamVid label ids.
    line = _one_line_error(_run([PREDICT_PY, f"--model={models['synthetic']}", f"--input={images}",
                                 f"--output_dir={output_dir}", "--format=labelids", "--dataset=camvid"], env),
                           "predict.py")
    assert "--format=labelids --dataset=camvid" in line and models["synthetic"] in line
    assert "(trained on synthetic) predicts 19 classes, which do not map to camvid's label ids (11 classes)" in line
    assert not output_dir.exists()
    # An input folder without images: said before the model loads (the model named does not exist).
    empty = tmp_path / "empty"
    empty.mkdir()
    line = _one_line_error(_run([PREDICT_PY, "--model=/nowhere.keras", f"--input={empty}",
                                 f"--output_dir={output_dir}"], env), "predict.py")
    assert f"--input {empty}: no image files" in line


@pytest.mark.slow
def test_export_int8_says_where_its_calibration_frames_come_from(models, tmp_path, env):
    argv = [EXPORT_PY, f"--model={models['camvid']}", "--format=tflite_int8", f"--output={tmp_path / 'm.tflite'}"]
    line = _one_line_error(_run(argv, env), "export.py")
    assert "--data_dir" in line and "--calibration_images" in line and "training split" in line
    line = _one_line_error(_run([*argv, f"--data_dir={tmp_path / 'missing'}"], env), "export.py")
    assert "--data_dir" in line and "missing" in line
