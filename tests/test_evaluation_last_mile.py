"""Tests of contextnet_tf.evaluation.last_mile: labels from the 1/8 logits equal argmax(resize(logits)), ties aside,
in the Keras path (`Predictor.labels`), the exports' serving function and the TFLite / ONNX ``cls`` exports."""

import os

import numpy as np
import pytest
import tensorflow as tf

from contextnet_tf import data
from contextnet_tf.deploy import export, export_check
from contextnet_tf.evaluation import last_mile
from contextnet_tf.evaluation.prediction import Predictor, read_image
from contextnet_tf.models import build_model, load_model

CAMVID_DIR = os.environ.get("CONTEXTNET_CAMVID_DIR")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _smooth_logits(seed, batch, height, width, classes, noise=0.3):
    """Low-frequency random fields plus noise: class regions with boundaries, as a network's logits have."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(batch, max(1, height // 6), max(1, width // 6), classes)).astype(np.float32) * 4
    fields = tf.image.resize(coarse, (height, width), method="bicubic").numpy()
    return fields + noise * rng.normal(size=fields.shape).astype(np.float32)


@pytest.mark.parametrize("shape", [(2, 5, 7, 4), (1, 1, 1, 3), (1, 1, 9, 19), (3, 16, 24, 19), (1, 20, 30, 300)])
def test_fused_labels_equal_the_argmax_of_the_upsampled_logits(shape):
    logits = _smooth_logits(sum(shape), *shape)
    size = (shape[1] * 8, shape[2] * 8)
    expected = last_mile.plain_upsample_argmax(logits, size).numpy()
    fused = last_mile.fused_upsample_argmax(logits).numpy()
    assert fused.shape == expected.shape == (shape[0], *size)
    np.testing.assert_array_equal(fused, expected)
    # The dispatcher takes the fused path for a static x8 size, and for a run-time one (inside a graph).
    np.testing.assert_array_equal(last_mile.upsample_argmax(logits, size).numpy(), expected)
    dynamic = tf.function(lambda x: last_mile.upsample_argmax(x, tf.shape(x)[1:3] * 8),
                          input_signature=[tf.TensorSpec([None, None, None, shape[3]])])
    np.testing.assert_array_equal(dynamic(logits).numpy(), expected)
    uint8 = last_mile.fused_upsample_argmax(logits, output_type=tf.uint8) if shape[3] <= 256 else None
    if uint8 is not None:
        assert uint8.dtype == tf.uint8 and np.array_equal(uint8.numpy(), expected)


def test_other_sizes_take_the_plain_path_and_odd_factors_are_refused():
    logits = _smooth_logits(1, 1, 5, 7, 6)
    for size in [(37, 53), (40, 57), (20, 28)]:  # not x8 of the logits: tf.image.resize decides every pixel
        np.testing.assert_array_equal(last_mile.upsample_argmax(logits, size).numpy(),
                                      last_mile.plain_upsample_argmax(logits, size).numpy())
    with pytest.raises(ValueError, match="even integer"):
        last_mile.fused_upsample_argmax(logits, factor=3)


def test_a_cell_whose_corners_agree_is_filled_and_a_boundary_cell_interpolated():
    # Two corners prefer class 0 and two class 1, but class 2 wins in between: a class no corner's argmax names.
    logits = np.zeros((1, 2, 2, 3), np.float32)
    logits[0, 0, :] = [10.0, 0.0, 9.0]
    logits[0, 1, :] = [0.0, 10.0, 9.0]
    labels = last_mile.fused_upsample_argmax(logits).numpy()[0]
    np.testing.assert_array_equal(labels, last_mile.plain_upsample_argmax(logits, (16, 16)).numpy()[0])
    assert set(np.unique(labels)) == {0, 1, 2}
    np.testing.assert_array_equal(labels[:4], 0)  # rows before the first centre copy the top row (clamped edge)


def test_boundary_share_counts_the_cells_whose_corners_disagree():
    """By hand on a 2x3 grid, and against a NumPy count of the edge-padded grid's disagreeing cells."""
    one_hot = np.eye(3, dtype=np.float32)
    assert last_mile.boundary_share(one_hot[np.zeros((1, 2, 3), int)]) == 0.0  # one class everywhere
    # Winners [[0, 0, 1], [0, 0, 1]]: the padded grid repeats the edges, its 3x4 cells disagree only in the column
    # between classes 0 and 1 (3 of 12 cells).
    assert last_mile.boundary_share(one_hot[np.array([[[0, 0, 1], [0, 0, 1]]])]) == 0.25
    # A checkerboard: every cell except the four corner cells, whose corners are one repeated value.
    checker = (np.arange(4)[:, None] + np.arange(4)[None, :]) % 2
    assert last_mile.boundary_share(one_hot[checker[None]]) == pytest.approx(21 / 25)
    logits = np.random.default_rng(3).normal(size=(2, 5, 7, 4)).astype(np.float32)
    winners = np.pad(logits.argmax(-1), [(0, 0), (1, 1), (1, 1)], mode="edge")
    corners = np.stack([winners[:, :-1, :-1], winners[:, 1:, :-1], winners[:, :-1, 1:], winners[:, 1:, 1:]])
    expected = np.mean(~(corners == corners[0]).all(axis=0))
    assert 0 < expected < 1 and last_mile.boundary_share(logits) == pytest.approx(expected, abs=1e-6)


def test_eighth_logits_model_shares_the_network_and_stops_before_the_upsampling():
    model = build_model("fast_scnn", (64, 96, 3), 5)
    eighth = last_mile.eighth_logits_model(model)
    images = tf.random.uniform((1, 64, 96, 3), maxval=255.0, seed=2)
    small = eighth(images, training=False)
    assert tuple(small.shape) == (1, 8, 12, 5)
    np.testing.assert_allclose(tf.image.resize(small, (64, 96)).numpy(), model(images, training=False).numpy(),
                               atol=1e-5)
    import keras

    plain = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 1, name="conv")])
    with pytest.raises(ValueError, match="no layer named 'logits'"):
        last_mile.eighth_logits_model(plain)


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
@pytest.mark.slow
def test_cls_exports_give_the_plain_labels(fmt, tmp_path):
    model = build_model("cn14", (64, 128, 3), 11)
    path = str(tmp_path / ("model.onnx" if fmt == "onnx" else "model.tflite"))
    export.export(model, path, fmt, "cls", input_size=(64, 128))
    run = export_check.onnx_runner(path) if fmt == "onnx" else export_check.tflite_runner(open(path, "rb").read())
    image = np.random.default_rng(0).integers(0, 256, (1, 64, 128, 3)).astype(np.uint8)
    plain, _ = export.head_function(export.fold_batch_norm(model), "cls", last_mile="plain")
    fused, _ = export.head_function(export.fold_batch_norm(model), "cls", last_mile="fused")
    expected = plain(tf.constant(image)).numpy()
    np.testing.assert_array_equal(fused(tf.constant(image)).numpy(), expected)
    labels = run(image)
    assert labels.dtype == np.uint8 and labels.shape == (1, 64, 128)
    np.testing.assert_array_equal(labels, expected)


def _decisive(logits, tolerance):
    top2 = np.sort(logits, axis=-1)[..., -2:]
    return (top2[..., 1] - top2[..., 0]) > tolerance


@pytest.mark.skipif(not CAMVID_DIR, reason="CONTEXTNET_CAMVID_DIR is not set")
@pytest.mark.parametrize("name", ["cn14_camvid", "fast_scnn_camvid"])
def test_real_frames_get_the_same_labels_from_the_fused_last_mile(name):
    model = load_model(os.path.join(REPO, "pretrained", f"{name}.keras"))
    examples = data.list_examples("camvid", CAMVID_DIR, "val")[::25]  # 5 frames of val
    images = np.stack([read_image(image) for image, _ in examples])  # 360x480: 1/8 logits 45x60, exactly x8
    predictor = Predictor(model, scales=[1.0])  # the network at the frames' own size: the fused path
    logits = predictor.logits_or_probabilities(images).numpy()
    plain = logits.argmax(-1)
    fused = predictor.labels(images)
    decisive = _decisive(logits, 1e-5 * np.abs(logits).max())
    assert decisive.mean() > 0.999
    np.testing.assert_array_equal(fused[decisive], plain[decisive])
    # The exports' serving function (folded network, uint8 labels) agrees too.
    network = export.fold_batch_norm(model.rebuild(input_shape=(None, None, 3), aux=False))
    serve, _ = export.serving_function(network, "cls", 1.0, last_mile="fused")
    served = serve(tf.constant(images.astype(np.uint8))).numpy()
    assert (served[decisive] == plain[decisive]).mean() > 0.9999  # folding moves the logits by ~1e-6
