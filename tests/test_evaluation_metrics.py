"""Tests of contextnet_tf.evaluation.metrics: hand-computed confusion matrices, and agreement with the official Cityscapes
evaluator (cityscapesscripts, a test extra) on the same predictions."""

import os

import cv2
import numpy as np
import pytest

from contextnet_tf import build_model, data
from contextnet_tf.evaluation import metrics as evaluation
from contextnet_tf.evaluation import prediction

INFO = data.get_info("cityscapes")


def test_confusion_matrix_by_hand():
    labels = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    preds = np.array([[0, 1, 1, 1], [2, 0, 2, 2]])
    # Rows ground truth, columns prediction; the 255 pixel is not counted whatever its prediction.
    expected = np.array([[1, 1, 0], [0, 2, 1], [1, 0, 1]])
    np.testing.assert_array_equal(evaluation.confusion_matrix(labels, preds, 3), expected)
    # IoU = TP / (TP + FP + FN): class 0: 1 / (1 + 1 + 1), class 1: 2 / (2 + 1 + 1), class 2: 1 / (1 + 1 + 1).
    np.testing.assert_allclose(evaluation.iou_from_confusion(expected), [1 / 3, 1 / 2, 1 / 3])


def test_iou_conventions_absent_and_false_positive_classes():
    matrix = np.zeros((4, 4), np.int64)
    matrix[0, 0], matrix[0, 2], matrix[1, 1] = 5, 3, 4  # Class 2 only predicted, class 3 never seen at all.
    iou = evaluation.iou_from_confusion(matrix)
    assert iou[0] == pytest.approx(5 / 8) and iou[1] == 1.0 and iou[2] == 0.0 and np.isnan(iou[3])
    info = data.DatasetInfo(
        name="toy", num_classes=4, ignore_label=255, class_names=("a", "b", "c", "d"),
        palette=np.zeros((4, 3), np.uint8), category_names=("ab", "cd"), class_to_category=np.array([0, 0, 1, 1]),
        mean_rgb=(0, 0, 0),
    )
    metrics = evaluation.metrics_from_confusion(matrix, info)
    assert metrics["class_iou"]["d"] is None  # null in JSON, left out of the mean
    assert metrics["miou"] == pytest.approx((5 / 8 + 1 + 0) / 3)
    # Categories: ab has TP 9, FN 3 (a predicted as c); cd has TP 0, FP 3.
    assert metrics["category_iou"] == {"ab": pytest.approx(9 / 12), "cd": 0.0}
    assert metrics["pixel_accuracy"] == pytest.approx(9 / 12)


def test_labels_outside_the_classes_are_an_error():
    with pytest.raises(ValueError, match="outside"):
        evaluation.confusion_matrix(np.array([0, 19]), np.array([0, 0]), 19)


def _cityscapes_scores(prediction_paths, ground_truth_paths):
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs

    args = cs.CArgs()
    for name, value in vars(cs.args).items():
        setattr(args, name, value)
    args.evalInstLevelScore = False  # needs instance PNGs; not part of class / category IoU
    args.quiet = True
    args.JSONOutput = False
    return cs.evaluateImgLists(list(prediction_paths), list(ground_truth_paths), args)


def _assert_same_as_cityscapes(metrics, result):
    for name, value in metrics["class_iou"].items():
        official = result["classScores"][name]
        assert (value is None and np.isnan(official)) or value == pytest.approx(official, abs=1e-12), name
    for name, value in metrics["category_iou"].items():
        assert value == pytest.approx(result["categoryScores"][name], abs=1e-12), name
    assert metrics["miou"] == pytest.approx(result["averageScoreClasses"], abs=1e-12)
    assert metrics["category_miou"] == pytest.approx(result["averageScoreCategories"], abs=1e-12)


def test_metrics_match_cityscapesscripts_on_random_label_maps(tmp_path):
    rng = np.random.default_rng(0)
    # Label ids as stored in gtFine *_labelIds.png: all 34, so void and ignored-in-eval ids (0-6, 9, 10, 14-16, 18,
    # 29, 30) occur too; predictions use only the 19 evaluated classes minus two that never occur anywhere.
    train_to_id = prediction.cityscapes_label_ids(np.arange(19))
    id_to_train = data.id_to_train_id("cityscapes")
    matrix = np.zeros((19, 19), np.int64)
    predictions, ground_truths = [], []
    for i in range(3):
        gt_ids = rng.integers(0, 34, (40, 60)).astype(np.uint8)
        gt_ids[gt_ids == 31] = 26  # "train" never in the ground truth; it is still predicted (IoU 0)
        gt_ids[gt_ids == 17] = 21  # "pole" neither in the ground truth ...
        pred_train = np.where(rng.random((40, 60)) < 0.5, id_to_train[gt_ids], rng.integers(0, 19, (40, 60)))
        pred_train = np.where((pred_train == 255) | (pred_train == 5), 0, pred_train)  # ... nor predicted (NaN)
        gt_path, pred_path = tmp_path / f"x_{i:06d}_000019_gtFine_labelIds.png", tmp_path / f"x_{i:06d}_pred.png"
        cv2.imwrite(str(gt_path), gt_ids)
        cv2.imwrite(str(pred_path), train_to_id[pred_train])
        ground_truths.append(str(gt_path))
        predictions.append(str(pred_path))
        matrix += evaluation.confusion_matrix(id_to_train[gt_ids], pred_train, 19)
    metrics = evaluation.metrics_from_confusion(matrix, INFO)
    assert metrics["class_iou"]["pole"] is None and metrics["class_iou"]["train"] == 0.0
    _assert_same_as_cityscapes(metrics, _cityscapes_scores(predictions, ground_truths))


@pytest.fixture(scope="module")
def synthetic_city(tmp_path_factory):
    root = tmp_path_factory.mktemp("city")
    data.generate_synthetic_city(str(root), num_train=2, num_val=3, image_size=(96, 160), seed=3)
    return str(root)


def test_evaluate_and_predicted_labelids_match_cityscapesscripts(synthetic_city, tmp_path):
    """End to end: our loader + model + evaluate() against the official evaluator on our labelIds PNGs."""
    model = build_model("fast_scnn", (64, 128, 3), num_classes=19)  # built at another size: rebuilt at 96x160
    dataset = data.make_dataset("synthetic", synthetic_city, "val", training=False, batch_size=2)
    metrics = evaluation.evaluate(model, dataset, INFO)
    assert metrics["num_images"] == 3 and metrics["scales"] == [1.0] and metrics["flip"] is False
    written = prediction.predict_files(
        model, os.path.join(synthetic_city, "leftImg8bit", "val"), str(tmp_path), "labelids", INFO
    )
    ground_truths = [label for _, label in data.list_examples("synthetic", synthetic_city, "val")]
    assert [os.path.basename(p).split("_leftImg8bit")[0] for p in written] == [
        os.path.basename(p).split("_gtFine")[0] for p in ground_truths
    ]
    _assert_same_as_cityscapes(metrics, _cityscapes_scores(written, ground_truths))


@pytest.mark.slow
def test_evaluate_streams_batches_and_honours_max_images(synthetic_city):
    model = build_model("cn14", (96, 160, 3), num_classes=19)
    one_batch = data.make_dataset("synthetic", synthetic_city, "val", training=False, batch_size=3)
    by_one = data.make_dataset("synthetic", synthetic_city, "val", training=False, batch_size=1)
    whole = evaluation.evaluate(model, one_batch, INFO)
    streamed = evaluation.evaluate(model, by_one, INFO)
    assert streamed["confusion_matrix"] == whole["confusion_matrix"]
    assert whole["num_pixels"] > 0.5 * 3 * 96 * 160
    two = evaluation.evaluate(model, by_one, INFO, max_images=2)
    assert two["num_images"] == 2 and 0 < two["num_pixels"] < whole["num_pixels"]


@pytest.mark.slow
def test_flip_and_multiscale_evaluation(synthetic_city):
    model = build_model("fast_scnn", (96, 160, 3), num_classes=19)
    dataset = data.make_dataset("synthetic", synthetic_city, "val", training=False, batch_size=1)
    plain = evaluation.evaluate(model, dataset, INFO)
    augmented = evaluation.evaluate(model, dataset, INFO, flip=True, scales=(0.75, 1.0, 1.25))
    assert augmented["scales"] == [0.75, 1.0, 1.25] and augmented["flip"] is True
    assert augmented["num_pixels"] == plain["num_pixels"]
    assert augmented["confusion_matrix"] != plain["confusion_matrix"]  # the averaging changes predictions


def test_format_table_and_json(tmp_path):
    matrix = np.eye(19, dtype=np.int64) * 10
    matrix[0, 1] = 10
    metrics = evaluation.metrics_from_confusion(matrix, INFO)
    table = evaluation.format_table(metrics)
    assert "road" in table and " 50.00" in table and "category mIoU" in table
    path = tmp_path / "m.json"
    evaluation.write_json(metrics, path)
    import json

    loaded = json.loads(path.read_text())
    assert loaded["class_iou"]["road"] == 0.5 and len(loaded["class_iou"]) == 19 and len(loaded["category_iou"]) == 7
