"""Tests of contextnet_tf.evaluation.prediction: any input size, flip / multi-scale averaging, output formats, predict.py."""

import os
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from contextnet_tf import build_model, data
from contextnet_tf.evaluation import prediction

INFO = data.get_info("cityscapes")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)


@pytest.mark.parametrize("name,aux,width", [("cn14-500", False, 1.0), ("fast_scnn", True, 2.0)])
def test_one_model_predicts_any_size_like_a_model_built_at_that_size(name, aux, width):
    model = build_model(name, num_classes=5, aux=aux, width=width)
    for height, width_px in ((64, 96), (80, 113)):
        static = model.rebuild(input_shape=(height, width_px, 3))
        x = _images((1, height, width_px, 3), seed=height)
        expected = static(x)["logits"] if aux else static(x)
        got = prediction.Predictor(model).logits_or_probabilities(x)
        assert got.shape == (1, height, width_px, 5)
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_predictor_runs_a_model_at_its_own_input_scale_by_default():
    model = build_model("cn14-160", num_classes=4, input_scale=1.5)
    x = _images((1, 64, 96, 3))
    default = prediction.Predictor(model)
    assert default.scales == (1.5,)
    np.testing.assert_array_equal(default.labels(x), prediction.Predictor(model, scales=(1.5,)).labels(x))
    assert not np.array_equal(
        default.logits_or_probabilities(x), prediction.Predictor(model, scales=(1.0,)).logits_or_probabilities(x)
    )
    assert prediction.Predictor(model, scales=(1.0,)).labels(x).shape == (1, 64, 96)


def test_flip_and_scales_average_probabilities():
    model = build_model("fast_scnn", num_classes=4)
    x = _images((2, 64, 96, 3), seed=1)
    flipped = prediction.Predictor(model, flip=True).logits_or_probabilities(x)
    by_hand = (tf.nn.softmax(model(x)) + tf.reverse(tf.nn.softmax(model(tf.reverse(x, [2]))), [2])) / 2
    np.testing.assert_allclose(flipped, by_hand, atol=1e-5)
    multi = prediction.Predictor(model, scales=(0.5, 1.0)).logits_or_probabilities(x)
    half = model(tf.image.resize(x, (32, 48)))
    by_hand = (tf.image.resize(tf.nn.softmax(half), (64, 96)) + tf.nn.softmax(model(x))) / 2
    np.testing.assert_allclose(multi, by_hand, atol=1e-5)
    np.testing.assert_allclose(tf.reduce_sum(multi, -1), 1.0, atol=1e-5)


def test_cityscapes_label_ids_match_cityscapesscripts():
    from cityscapesscripts.helpers.labels import trainId2label

    ids = prediction.cityscapes_label_ids(np.array([*range(19), 255]))
    assert ids.dtype == np.uint8
    assert list(ids[:19]) == [trainId2label[t].id for t in range(19)]
    assert ids[19] == 0  # ignore -> unlabeled


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    os.makedirs(root / "city")
    cv2.imwrite(str(root / "a.png"), _images((70, 90, 3)).astype(np.uint8))
    cv2.imwrite(str(root / "city" / "b_leftImg8bit.jpg"), _images((48, 128, 3), seed=2).astype(np.uint8))
    return root


@pytest.mark.slow
def test_predict_files_writes_every_format_at_the_input_size(image_folder, tmp_path):
    model = build_model("cn14", (64, 64, 3), num_classes=19)
    outputs = {}
    for fmt in prediction.FORMATS:
        written = prediction.predict_files(model, str(image_folder), str(tmp_path / fmt), fmt, INFO)
        assert sorted(os.path.relpath(p, tmp_path / fmt) for p in written) == ["a.png", "city/b_leftImg8bit.png"]
        outputs[fmt] = [cv2.imread(p, cv2.IMREAD_UNCHANGED) for p in sorted(written)]
    for fmt in prediction.FORMATS:
        assert outputs[fmt][0].shape[:2] == (70, 90) and outputs[fmt][1].shape[:2] == (48, 128)
    label_ids = outputs["labelids"][0]
    assert label_ids.ndim == 2 and set(np.unique(label_ids)) <= set(prediction.cityscapes_label_ids(np.arange(19)))
    # The colour image is the palette of the predicted train ids; the overlay blends it with the image.
    id_to_train = {int(label_id): t for t, label_id in enumerate(prediction.cityscapes_label_ids(np.arange(19)))}
    expected_color = INFO.palette[np.vectorize(id_to_train.get)(label_ids)]
    np.testing.assert_array_equal(cv2.cvtColor(outputs["color"][0], cv2.COLOR_BGR2RGB), expected_color)
    image = cv2.cvtColor(cv2.imread(str(image_folder / "a.png")), cv2.COLOR_BGR2RGB).astype(np.float32)
    blend = np.round(0.5 * image + 0.5 * expected_color).astype(np.uint8)
    np.testing.assert_allclose(cv2.cvtColor(outputs["overlay"][0], cv2.COLOR_BGR2RGB), blend, atol=1)


@pytest.mark.slow
def test_predict_cli(image_folder, tmp_path):
    model_path = tmp_path / "model.keras"
    build_model("fast_scnn", (64, 64, 3), num_classes=11).save(model_path)
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "experiments", "predict.py"), f"--model={model_path}",
         f"--input={image_folder / 'a.png'}", f"--output_dir={tmp_path / 'out'}", "--format=labelids",
         "--dataset=camvid", "--flip"],
        capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    labels = cv2.imread(str(tmp_path / "out" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (70, 90) and labels.max() < 11  # CamVid: train ids


def test_labelids_need_a_model_of_the_datasets_classes(image_folder, tmp_path):
    """Label ids are written only for the dataset whose classes the model predicts: a 19-class Cityscapes model has no
    CamVid label ids, an 11-class model none of Cityscapes, and a CamVid model none of a same-size other table."""
    from contextnet_tf.models import dataset_recipe

    cityscapes = build_model("fast_scnn", **dataset_recipe(data.get_info("cityscapes")))
    camvid_info = data.get_info("camvid")
    with pytest.raises(ValueError, match=r"model 'fs.keras' \(trained on cityscapes\) predicts 19 classes, which do "
                                         r"not map to camvid's label ids \(11 classes\)"):
        prediction.check_label_ids(cityscapes, camvid_info, name="'fs.keras'")
    with pytest.raises(ValueError, match="predicts 11 classes, which do not map to cityscapes's label ids"):
        prediction.check_label_ids(build_model("fast_scnn", num_classes=11), INFO)
    renamed = build_model("fast_scnn", num_classes=11, dataset="camvid",
                          class_names=[f"class{i}" for i in range(11)], palette=camvid_info.palette)
    with pytest.raises(ValueError, match="other classes than camvid's label ids are for"):
        prediction.check_label_ids(renamed, camvid_info)
    with pytest.raises(ValueError, match="camvid's label ids"):  # predict_files checks before writing anything
        prediction.predict_files(cityscapes, str(image_folder), str(tmp_path / "out"), "labelids", camvid_info)
    assert not (tmp_path / "out").exists()
    prediction.check_label_ids(cityscapes, data.get_info("synthetic"))  # the same classes and ids: fine
    prediction.check_label_ids(build_model("fast_scnn", num_classes=11), camvid_info)
