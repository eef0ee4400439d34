"""Exports: any-size uint8 SavedModel signatures, TFLite float / int8, ONNX, reloaded in fresh processes; bad input."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from contextnet_tf import build_model, fold_batch_norm
from contextnet_tf.deploy import export
from contextnet_tf.deploy import export_check

SHAPE = (64, 96, 3)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model():
    """Fast-SCNN at a small size with batch-norm statistics far from identity (see test_folding)."""
    keras.utils.set_random_seed(0)
    net = build_model("fast_scnn", SHAPE, num_classes=19)
    rng = np.random.default_rng(0)
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, c), rng.normal(0, 1, c), rng.normal(0, 2, c), rng.uniform(0.2, 5, c)])
    return net


@pytest.fixture(scope="module")
def saved_model(model, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("export") / "saved_model")
    export.export_saved_model(fold_batch_norm(model), path)
    return path


def test_saved_model_signatures_take_any_size(saved_model):
    loaded = tf.saved_model.load(saved_model)
    assert set(loaded.signatures) == {"serving_default", "probabilities"}
    rng = np.random.default_rng(3)
    for height, width in ((1000, 1500), (37, 53)):
        image = tf.constant(rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8))
        labels = loaded.signatures["serving_default"](image=image)["labels"]
        probabilities = loaded.signatures["probabilities"](image=image)["probabilities"]
        assert labels.dtype == tf.uint8 and labels.shape == (1, height, width)
        assert probabilities.dtype == tf.float32 and probabilities.shape == (1, height, width, 19)
        np.testing.assert_allclose(probabilities.numpy().sum(-1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(labels.numpy(), probabilities.numpy().argmax(-1))


def test_saved_model_fresh_process_matches_keras_on_odd_sizes(model, saved_model):
    images = export_check.check_images(model, "saved_model", count=1)
    assert [im.shape[1:3] for im in images] == [(64, 96), (37, 53), (1000, 1500)]
    report = export_check.verify_export(model, saved_model, "saved_model", images)
    assert report["passed"], report
    assert report["max_abs_diff"] <= 1e-4
    assert report["label_agreement"] > 0.999


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((1, 40, 50, 4), np.uint8), "not grey, not RGBA"),
        (np.zeros((1, 40, 50, 1), np.uint8), "not grey, not RGBA"),
        (np.zeros((1, 0, 50, 3), np.uint8), "must not be empty"),
        (np.zeros((1, 40, 50, 3), np.float32), "uint8"),
    ],
)
def test_saved_model_rejects_bad_images_with_a_clear_message(saved_model, image, message):
    serve = tf.saved_model.load(saved_model).signatures["serving_default"]
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError, TypeError), match=message):
        serve(image=tf.constant(image))


@pytest.mark.parametrize("fmt, head", [("tflite", "logits"), ("onnx", "logits")])
def test_tflite_and_onnx_fresh_process_match_keras(model, tmp_path, fmt, head):
    path = str(tmp_path / f"model.{fmt}")
    export.export(fold_batch_norm(model), path, fmt, head)
    report = export_check.verify_export(model, path, fmt, export_check.check_images(model, fmt, count=2), head)
    assert report["passed"], report
    if head == "logits":
        assert report["max_abs_diff"] <= export_check.TOLERANCES[fmt]
    assert report["label_agreement"] > 0.999


COLOURS = np.array([[20, 20, 20], [230, 40, 40], [40, 200, 60], [50, 70, 220]], np.float32)


def synthetic_scenes(count, rng):
    """Noisy images of coloured rectangles on a dark background; the label is the rectangle's colour."""
    labels = np.zeros((count, *SHAPE[:2]), np.int32)
    for i in range(count):
        for _ in range(3):
            y, x = rng.integers(0, SHAPE[0] - 8), rng.integers(0, SHAPE[1] - 8)
            labels[i, y : y + rng.integers(8, 40), x : x + rng.integers(8, 56)] = rng.integers(1, 4)
    images = np.clip(COLOURS[labels] + rng.normal(0, 20, (count, *SHAPE)), 0, 255).astype(np.float32)
    return images, labels


@pytest.mark.slow
def test_int8_runs_and_agrees_with_float_on_a_trained_model(tmp_path):
    rng = np.random.default_rng(0)
    images, labels = synthetic_scenes(64, rng)
    net = build_model("fast_scnn", SHAPE, num_classes=4)
    for layer in net.layers:  # Moving statistics that catch up within the few steps of this test.
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.5
    net.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    net.fit(images, labels, batch_size=8, epochs=3, verbose=0)
    test_images, test_labels = synthetic_scenes(4, rng)
    assert (net.predict(test_images, verbose=0).argmax(-1) == test_labels).mean() > 0.8  # Trained enough.

    path = str(tmp_path / "int8.tflite")
    export.export_tflite(fold_batch_norm(net), path, int8=True, calibration_images=[x[None] for x in images[:16]])
    checks = [x[None].astype(np.uint8) for x in test_images]
    report = export_check.verify_export(net, path, "tflite_int8", checks)
    print(export_check.format_report(report))  # docs/export.md quotes it (pytest -s).
    assert report["label_agreement"] > 0.9, report
    interpreter = tf.lite.Interpreter(model_path=path)
    tensor_types = {d["dtype"] for d in interpreter.get_tensor_details()}
    assert np.int8 in tensor_types  # Really quantised, not a float model.


def test_int8_without_calibration_is_a_clear_error(model, tmp_path):
    with pytest.raises(ValueError, match="calibration"):
        export.export_tflite(model, str(tmp_path / "q.tflite"), int8=True)


@pytest.mark.parametrize(
    "image, error, message",
    [
        (np.zeros((40, 50), np.uint8), ValueError, "greyscale"),
        (np.zeros((40, 50, 1), np.uint8), ValueError, "greyscale"),
        (np.zeros((40, 50, 4), np.uint8), ValueError, "RGBA"),
        (np.zeros((0, 50, 3), np.uint8), ValueError, "zero size"),
        (np.zeros((40, 50, 3), np.float64), TypeError, "uint8"),
    ],
)
def test_check_image_errors(image, error, message):
    with pytest.raises(error, match=message):
        export.check_image(image)


def test_check_image_adds_the_batch_axis():
    assert export.check_image(np.zeros((5, 7, 3), np.uint8)).shape == (1, 5, 7, 3)


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export.load_model(str(tmp_path / "missing.keras"))
    with pytest.raises(FileNotFoundError, match="weights file"):
        export.load_model("cn14-160", (64, 64, 3), weights=str(tmp_path / "missing.weights.h5"))
    with pytest.raises(ValueError, match="neither a variant"):
        export.load_model("resnet50")


def test_export_program_reports_a_missing_model_clearly(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "experiments", "export.py"), f"--model={tmp_path}/missing.keras",
         "--format=onnx", f"--output={tmp_path}/x.onnx"],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )
    assert result.returncode != 0
    assert "missing.keras' does not exist" in result.stderr
    assert "Traceback" not in result.stderr
