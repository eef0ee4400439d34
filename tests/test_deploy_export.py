"""Exports: any-size uint8 SavedModel signatures at the model's input scale, TFLite float / int8 and ONNX at a static
size, each agreeing with `Predictor`; reloaded in fresh processes; bad input. The published Fast-SCNN's SavedModel
on real CamVid frames: tests/test_pretrained.py."""

import json
import os
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

import contextnet_tf
from contextnet_tf import Predictor, build_model, data
from contextnet_tf.deploy import export
from contextnet_tf.deploy import export_check
from contextnet_tf.evaluation import metrics

SHAPE = (64, 96, 3)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAMVID_DIR = os.environ.get("CONTEXTNET_CAMVID_DIR")


def _far_from_identity(net, seed=0):
    """Sets every batch norm's statistics far from identity (logits of order 10; see test_deploy_folding)."""
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, c), rng.normal(0, 1, c), rng.normal(0, 2, c), rng.uniform(0.2, 5, c)])
    return net


@pytest.fixture(scope="module")
def model():
    """Fast-SCNN built at a small static size, input scale 1."""
    keras.utils.set_random_seed(0)
    return _far_from_identity(build_model("fast_scnn", SHAPE, num_classes=19))


@pytest.fixture(scope="module")
def scaled():
    """Fast-SCNN of any input size meant to run at twice the input's size (as the published CamVid model).

    Initial batch norms: random batch-norm statistics make a random network predict one class everywhere, and
    these tests compare label maps (this one predicts 5 of its 7 classes on noise)."""
    keras.utils.set_random_seed(1)
    return build_model("fast_scnn", num_classes=7, input_scale=2.0)


@pytest.fixture(scope="module")
def saved_model(model, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("export") / "saved_model")
    export.export_saved_model(model, path)
    return path


@pytest.fixture(scope="module")
def scaled_saved_model(scaled, tmp_path_factory):
    """The scaled model's SavedModel, unfolded: the same float32 ops as `Predictor`, so labels are equal exactly."""
    path = str(tmp_path_factory.mktemp("export") / "scaled_saved_model")
    export.export_saved_model(scaled, path, fold=False)
    return path


@pytest.mark.slow
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


def test_saved_model_signatures_say_they_want_a_batch_of_rgb_images(saved_model):
    """An unbatched (h, w, 3) image, RGBA or an empty batch fails with a message saying what the signature wants and
    the shape given, not inside a resize or a convolution."""
    loaded = tf.saved_model.load(saved_model)
    for signature in ("serving_default", "probabilities"):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"image must be a batch \(batch, height, width, 3\).*image\[None\].*\] \[37 53 3\]"):
            loaded.signatures[signature](image=tf.zeros((37, 53, 3), tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image must be RGB.*RGBA.*\] \[1 37 53 4\]"):
        loaded.signatures["serving_default"](image=tf.zeros((1, 37, 53, 4), tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image must not be empty.*\] \[0 37 53 3\]"):
        loaded.signatures["serving_default"](image=tf.zeros((0, 37, 53, 3), tf.uint8))


@pytest.mark.slow
def test_saved_model_fresh_process_matches_keras_on_odd_sizes(model, saved_model):
    images = export_check.check_images(model, "saved_model", count=1)
    assert [im.shape[1:3] for im in images] == [export_check.FALLBACK_CHECK_SIZE, *export_check.ODD_SIZES]
    report = export_check.verify_export(model, saved_model, "saved_model", images)
    assert report["passed"], report
    assert report["max_abs_diff"] <= report["tolerance"]
    assert report["label_agreement"] > 0.999


@pytest.mark.slow
def test_scaled_saved_model_has_an_any_size_signature_and_gives_predictors_labels(scaled, scaled_saved_model):
    serve = tf.saved_model.load(scaled_saved_model).signatures["serving_default"]
    (spec,) = serve.structured_input_signature[1].values()
    assert spec.shape.as_list() == [None, None, None, 3] and spec.dtype == tf.uint8
    predictor = Predictor(scaled)
    assert predictor.scales == (2.0,)
    rng = np.random.default_rng(5)
    # An odd size, its transpose (portrait) and a wide strip: each runs at twice its own size, not distorted to one.
    for height, width in ((97, 131), (131, 97), (40, 200)):
        image = rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8)
        labels = serve(image=tf.constant(image))["labels"].numpy()
        assert labels.shape == (1, height, width)
        np.testing.assert_array_equal(labels, predictor.labels(image.astype(np.float32)))


def test_scaled_saved_model_is_not_the_model_at_scale_1(scaled, scaled_saved_model):
    """The exported labels differ from running the network at the input's own size (the old export's behaviour)."""
    image = np.random.default_rng(6).integers(0, 256, (1, 97, 131, 3), dtype=np.uint8)
    labels = tf.saved_model.load(scaled_saved_model).signatures["serving_default"](image=tf.constant(image))["labels"]
    at_scale_1 = Predictor(scaled, scales=(1.0,)).labels(image.astype(np.float32))
    assert len(np.unique(labels.numpy())) >= 3
    assert np.mean(labels.numpy() == at_scale_1) < 0.9


@pytest.mark.slow
def test_check_fails_an_export_that_ignores_the_input_scale(scaled, tmp_path):
    path = str(tmp_path / "scale_1")
    export.export_saved_model(scaled.rebuild(input_scale=1.0), path)
    images = export_check.check_images(scaled, "saved_model", count=1)
    report = export_check.verify_export(scaled, path, "saved_model", images)
    assert not report["passed"] and report["decisive_disagreements"] > 0, report


@pytest.mark.parametrize("fmt, head", [("tflite", "logits"), ("onnx", "logits"), ("tflite", "cls"), ("onnx", "prob")])
@pytest.mark.slow
def test_scaled_tflite_and_onnx_agree_with_predictor_at_their_size(scaled, tmp_path, fmt, head):
    size = (45, 71)  # Runs the network at 90x142.
    path = str(tmp_path / f"model.{fmt}")
    export.export(scaled, path, fmt, head, input_size=size)
    images = export_check.check_images(scaled, fmt, count=2, input_size=size)
    assert [im.shape[1:3] for im in images] == [size, size]
    report = export_check.verify_export(scaled, path, fmt, images, head)
    assert report["passed"], report
    assert report["input_scale"] == 2.0 and report["label_agreement"] > 0.999
    # Independently of the check's reference: the artifact's labels against Predictor's.
    image = images[0]
    feed = image.astype(np.float32) if head == "logits" else image
    run = export_check.tflite_runner(path) if fmt == "tflite" else export_check.onnx_runner(path)
    output = run(feed)[0]
    labels = output if head == "cls" else output.argmax(-1)
    assert labels.shape == size
    expected = Predictor(scaled).labels(image.astype(np.float32))[0]
    assert np.mean(labels == expected) > 0.999


@pytest.mark.skipif(not CAMVID_DIR, reason="CONTEXTNET_CAMVID_DIR is not set")
@pytest.mark.slow
def test_published_fast_scnn_saved_model_scores_what_its_card_scores_on_the_held_out_sequence(tmp_path):
    """The weights behind the published Fast-SCNN card's number (`fast_scnn_camvid_selection.keras`, the same network
    and input scale as the published file) exported as `experiments/export.py` does (folded), loaded with plain
    `tf.saved_model.load` and called on the native 360x480 uint8 frames of the 101 held-out frames (sequence 0006R0),
    give the card's mIoU to 0.1 point (at near-ties the folding's round-off flips a few pixels): the export runs the
    model as its card measured it."""
    with open(os.path.join(ROOT, "pretrained", "fast_scnn_camvid.json")) as f:
        card = json.load(f)
    model = contextnet_tf.load_model(os.path.join(ROOT, "pretrained", card["evaluated_model"]))
    published = contextnet_tf.load_model(os.path.join(ROOT, "pretrained", "fast_scnn_camvid.keras"))
    assert model.input_scale == published.input_scale == card["plain"]["scales"][0]
    path = str(tmp_path / "saved_model")
    export.export(model, path, "saved_model")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    info = data.get_info("camvid")
    matrix = np.zeros((info.num_classes, info.num_classes), np.int64)
    examples = data.list_examples("camvid", CAMVID_DIR, card["split"])
    for image_path, label_path in examples:
        rgb = cv2.cvtColor(cv2.imread(image_path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert rgb.shape == (360, 480, 3) and rgb.dtype == np.uint8
        labels = serve(image=tf.constant(rgb[None]))["labels"].numpy()[0]
        truth = data.read_train_ids("camvid", label_path)
        matrix += metrics.confusion_matrix(truth, labels, info.num_classes, info.ignore_label)
    exported = metrics.metrics_from_confusion(matrix, info)["miou"]
    print(f"CamVid {card['split']} ({len(examples)} frames) mIoU: SavedModel {100 * exported:.2f}%, "
          f"card {100 * card['plain']['miou']:.2f}%")
    assert len(examples) == 101
    assert abs(exported - card["plain"]["miou"]) <= 1e-3


def test_tflite_and_onnx_of_a_model_of_no_dataset_need_an_input_size(scaled, tmp_path):
    with pytest.raises(ValueError, match="no native frame size.*input_size"):
        export.export(scaled, str(tmp_path / "m.onnx"), "onnx")


def test_default_input_size_is_the_datasets_native_frame_size():
    camvid = build_model("cn14-160", num_classes=11, dataset="camvid")
    assert export.default_input_size(camvid) == (360, 480)


def test_saved_model_of_a_static_plain_model_is_a_clear_error(model, tmp_path):
    plain = keras.Model(model.input, model.output)  # No recipe to rebuild it at any size.
    with pytest.raises(ValueError, match="plain Keras model built at"):
        export.export_saved_model(plain, str(tmp_path / "sm"))


@pytest.mark.parametrize("fmt, head", [("tflite", "logits"), ("onnx", "logits")])
@pytest.mark.slow
def test_tflite_and_onnx_fresh_process_match_keras(model, tmp_path, fmt, head):
    path = str(tmp_path / f"model.{fmt}")
    export.export(model, path, fmt, head, input_size=SHAPE[:2])
    images = export_check.check_images(model, fmt, count=2, input_size=SHAPE[:2])
    report = export_check.verify_export(model, path, fmt, images, head)
    assert report["passed"], report
    assert report["max_abs_diff"] <= report["tolerance"]
    assert report["label_agreement"] > 0.999


@pytest.mark.parametrize("fmt", ["saved_model", "tflite"])
@pytest.mark.parametrize("name", contextnet_tf.models.OFF_PAPER_NAMES)
@pytest.mark.slow
def test_off_paper_variants_export_and_match_keras(name, fmt, tmp_path):
    """The instance-normalised variants export like the papers' networks (folded: the instance norms stay as layers),
    and the artifacts, reloaded in a fresh process, agree with the Keras model: the any-size SavedModel on odd
    sizes too, TFLite at its static size."""
    keras.utils.set_random_seed(2)
    net = _far_from_identity(build_model(name, SHAPE, num_classes=19))
    rng = np.random.default_rng(3)
    norms = [net.get_layer(name) for name in ("ltd_conv1_in", "ltd_dsconv2_in")]
    for layer in norms:  # an affine map far from identity, so that a dropped or misplaced norm shows
        layer.set_weights([rng.uniform(0.5, 2, w.shape) if i == 0 else rng.normal(0, 1, w.shape)
                           for i, w in enumerate(layer.get_weights())])
    path = str(tmp_path / ("saved_model" if fmt == "saved_model" else "model.tflite"))
    export.export(net, path, fmt, "logits", input_size=None if fmt == "saved_model" else SHAPE[:2])
    images = export_check.check_images(net, fmt, count=2, input_size=SHAPE[:2])
    report = export_check.verify_export(net, path, fmt, images, "logits")
    assert report["passed"], report
    assert report["label_agreement"] > 0.999
    if fmt == "saved_model":
        assert len(report["images"]) > 2  # the odd sizes were checked too


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
    export.export_tflite(net, path, int8=True, calibration_images=[x[None] for x in images[:16]], input_size=SHAPE[:2])
    checks = [x[None].astype(np.uint8) for x in test_images]
    report = export_check.verify_export(net, path, "tflite_int8", checks)
    print(export_check.format_report(report))  # docs/export.md quotes it (pytest -s).
    assert report["label_agreement"] > 0.9, report
    interpreter = tf.lite.Interpreter(model_path=path)
    tensor_types = {d["dtype"] for d in interpreter.get_tensor_details()}
    assert np.int8 in tensor_types  # Really quantised, not a float model.


def test_int8_without_calibration_is_a_clear_error(model, tmp_path):
    with pytest.raises(ValueError, match="calibration"):
        export.export_tflite(model, str(tmp_path / "q.tflite"), int8=True, input_size=SHAPE[:2])


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
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match="corrupt.keras"):
        export.load_model(str(corrupt))


def test_load_model_keeps_the_recipe_of_a_keras_file(tmp_path):
    path = str(tmp_path / "scaled.keras")
    build_model("cn14-160", num_classes=11, input_scale=2.0, dataset="camvid").save(path)
    loaded = export.load_model(path)
    assert (loaded.variant, loaded.num_classes, loaded.input_scale, loaded.dataset) == ("cn14-160", 11, 2.0, "camvid")
    assert export.input_scale(loaded) == 2.0 and export.default_input_size(loaded) == (360, 480)
    assert export.load_model("cn14-160").input_shape == (None, None, None, 3)  # A variant name: any size.


def test_export_program_reports_a_missing_model_clearly(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "experiments", "export.py"), f"--model={tmp_path}/missing.keras",
         "--format=onnx", f"--output={tmp_path}/x.onnx"],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )
    assert result.returncode != 0
    assert "missing.keras' does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_int8_calibrates_on_frames_spread_over_the_models_training_split(tmp_path):
    from contextnet_tf import data as data_lib
    from contextnet_tf.models import dataset_recipe

    root = str(tmp_path / "city")
    data_lib.generate_synthetic_city(root, num_train=10, num_val=2, image_size=(64, 96), seed=3)
    model = build_model("cn14", **dataset_recipe(data_lib.get_info("synthetic")))
    paths, record = export.calibration_files(model, root, "train", count=4)
    train = [image for image, _ in data_lib.list_examples("synthetic", root, "train")]
    assert paths == [train[i] for i in (0, 3, 6, 9)]  # evenly spread, first and last included
    assert record["dataset"] == "synthetic" and record["split"] == "train" and record["of"] == 10
    assert record["files"] == [os.path.basename(p) for p in paths]
    images = export.representative_images(paths, (32, 48))
    assert len(images) == 4 and images[0].shape == (1, 32, 48, 3) and images[0].dtype == np.float32
    with pytest.raises(ValueError, match="names no dataset"):
        export.calibration_files(build_model("cn14", num_classes=5), root)


@pytest.mark.slow
def test_evaluate_export_counts_the_same_confusion_as_the_keras_model(tmp_path):
    from contextnet_tf import data as data_lib
    from contextnet_tf.evaluation import metrics as metrics_lib
    from contextnet_tf.evaluation.prediction import Predictor, read_image
    from contextnet_tf.models import dataset_recipe

    root = str(tmp_path / "city")
    data_lib.generate_synthetic_city(root, num_train=2, num_val=3, image_size=(64, 96), seed=5)
    info = data_lib.get_info("synthetic")
    model = build_model("cn14", **dataset_recipe(info))
    path = str(tmp_path / "m.tflite")
    export.export(model, path, "tflite", "cls", input_size=(64, 96))
    result = export_check.evaluate_export(path, "tflite", "synthetic", root, "val", (64, 96))
    predictor = Predictor(model)
    table = data_lib.id_to_train_id("synthetic")
    expected = sum(
        metrics_lib.confusion_matrix(data_lib.read_train_ids("synthetic", label, table),
                                     predictor.labels(read_image(image)[None])[0], info.num_classes)
        for image, label in data_lib.list_examples("synthetic", root, "val"))
    matrix = np.asarray(result["confusion_matrix"])
    assert result["num_images"] == 3 and matrix.sum() == expected.sum()
    assert np.abs(matrix - expected).sum() <= 0.002 * expected.sum()  # folding: near-ties may flip
