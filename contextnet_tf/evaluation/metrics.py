"""Evaluation: a streaming confusion matrix over a split, class and category IoU, a printed table and JSON.

Conventions are those of the official Cityscapes evaluator (`cityscapesscripts.evaluation.
evalPixelLevelSemanticLabeling`, checked in tests/test_evaluation_metrics.py):

* rows are ground truth, columns predictions; pixels labelled `ignore_label` are not counted;
* IoU = TP / (TP + FP + FN) per class; a class with TP + FP + FN = 0 (never present, never predicted) has no IoU
  (NaN, ``null`` in JSON) and is left out of the mean; a class predicted but never present has IoU 0;
* category IoU is the IoU of the confusion matrix summed over the classes of each category (7 for Cityscapes).
"""

import json
import math

import keras
import numpy as np

from contextnet_tf.evaluation.prediction import Predictor, class_mismatch


def confusion_matrix(labels, predictions, num_classes, ignore_label=255):
    """int64 [C, C] counts of (ground truth row, prediction column) over pixels not labelled `ignore_label`.

    Raises:
        ValueError: if a label other than `ignore_label` lies outside [0, num_classes).
    """
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    predictions = np.asarray(predictions).reshape(-1).astype(np.int64)
    valid = labels != ignore_label
    labels, predictions = labels[valid], predictions[valid]
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels outside [0, {num_classes}) other than the ignore label {ignore_label}")
    if predictions.size and (predictions.min() < 0 or predictions.max() >= num_classes):
        raise ValueError(f"predictions outside [0, {num_classes})")
    counts = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def iou_from_confusion(matrix):
    """float64 [C] IoU per class of a confusion matrix; NaN where TP + FP + FN = 0."""
    matrix = np.asarray(matrix, np.float64)
    true_positive = np.diag(matrix)
    denominator = matrix.sum(axis=0) + matrix.sum(axis=1) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, true_positive / denominator, np.nan)


def category_confusion(matrix, class_to_category, num_categories):
    """The [K, K] confusion matrix of categories: class counts summed over each category's classes."""
    onehot = np.zeros((len(class_to_category), num_categories), np.int64)
    onehot[np.arange(len(class_to_category)), np.asarray(class_to_category)] = 1
    return onehot.T @ np.asarray(matrix, np.int64) @ onehot


def _mean(values):
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def _or_none(value):
    return None if math.isnan(value) else float(value)


def metrics_from_confusion(matrix, info):
    """The metrics dict of a confusion matrix (see `evaluate`)."""
    matrix = np.asarray(matrix, np.int64)
    class_iou = iou_from_confusion(matrix)
    total = matrix.sum()
    metrics = {
        "dataset": info.name,
        "miou": _or_none(_mean(class_iou)),
        "class_iou": {name: _or_none(v) for name, v in zip(info.class_names, class_iou)},
        "pixel_accuracy": float(np.trace(matrix) / total) if total else None,
        "num_pixels": int(total),
    }
    if info.category_names is not None and info.class_to_category is not None:
        categories = category_confusion(matrix, info.class_to_category, len(info.category_names))
        category_iou = iou_from_confusion(categories)
        metrics["category_miou"] = _or_none(_mean(category_iou))
        metrics["category_iou"] = {name: _or_none(v) for name, v in zip(info.category_names, category_iou)}
    metrics["confusion_matrix"] = matrix.tolist()
    return metrics


def check_model_fits(model, info):
    """Raises ValueError if `model` (a `SegmentationModel`, or any model's logits) cannot label `info`'s classes
    (`prediction.class_mismatch`)."""
    mismatch = class_mismatch(model, info)
    if mismatch is None:
        return
    if not mismatch.differ:
        raise ValueError(
            f"model {model.name!r} predicts {mismatch.classes} classes but dataset {info.name!r} has "
            f"{info.num_classes}"
        )
    raise ValueError(
        f"model {model.name!r} was trained on {mismatch.trained_on or 'another dataset'} with classes "
        f"{', '.join(model.class_names)}, not {info.name!r}'s {', '.join(info.class_names)}"
    )


def evaluate(model, dataset, info, *, flip=False, scales=None, max_images=None, verbose=False):
    """Evaluates a segmentation model over a dataset with a streaming confusion matrix.

    Args:
        model: a segmentation model (logits or an aux dict); it runs at the images' size. Or a `Predictor` of one,
            to reuse across calls (it keeps the functions it traced: training validates this way every few hundred
            steps); its own flip and scales then apply, and `flip` and `scales` must be left at their defaults.
        dataset: iterable of (images float32 [B, H, W, 3] in [0, 255], labels int [B, H, W]), e.g.
            `contextnet_tf.data.make_dataset(..., training=False)`.
        info: the dataset's `DatasetInfo` (classes, categories, ignore label).
        flip: average with the prediction on the horizontally flipped image.
        scales: average over these input scales (multi-scale evaluation); None (the default) runs the model at
            its own input scale (`model.input_scale`, 1 for models that carry none).
        max_images: stop after this many images (None: the whole dataset).
        verbose: show a progress bar.

    Returns:
        ``{"dataset", "miou", "class_iou": {name: IoU}, "pixel_accuracy", "num_pixels", "category_miou",
        "category_iou": {name: IoU}, "confusion_matrix": [[int]], "num_images", "flip", "scales"}`` with IoUs as
        fractions in [0, 1] (``None`` for classes absent from both labels and predictions); the category entries
        only for datasets with categories (Cityscapes, synthetic).
    """
    if isinstance(model, Predictor):
        if flip or scales is not None:
            raise ValueError("evaluate: give flip and scales to the Predictor, not beside it")
        predictor = model
    else:
        predictor = Predictor(model, flip=flip, scales=scales)
    check_model_fits(predictor.model, info)
    matrix = np.zeros((info.num_classes, info.num_classes), np.int64)
    num_images = 0
    progbar = keras.utils.Progbar(max_images, unit_name="image") if verbose else None
    for images, labels in dataset:
        if max_images is not None:
            remaining = max_images - num_images
            if remaining <= 0:
                break
            images, labels = images[:remaining], labels[:remaining]
        predictions = predictor.labels(images)
        matrix += confusion_matrix(np.asarray(labels), predictions, info.num_classes, info.ignore_label)
        num_images += int(predictions.shape[0])
        if progbar is not None:
            progbar.update(num_images)
    metrics = metrics_from_confusion(matrix, info)
    metrics.update(num_images=num_images, flip=bool(predictor.flip), scales=list(predictor.scales))
    return metrics


def format_table(metrics):
    """A printable table of per-class (and per-category) IoU in percent, with the means."""

    def pct(value):
        return "   n/a" if value is None else f"{100 * value:6.2f}"

    width = max(len(name) for name in metrics["class_iou"]) + 2
    lines = [f"{'class':<{width}}   IoU %", "-" * (width + 8)]
    lines += [f"{name:<{width}} {pct(value)}" for name, value in metrics["class_iou"].items()]
    lines += ["-" * (width + 8), f"{'mIoU':<{width}} {pct(metrics['miou'])}"]
    if "category_iou" in metrics:
        lines += ["", f"{'category':<{width}}   IoU %", "-" * (width + 8)]
        lines += [f"{name:<{width}} {pct(value)}" for name, value in metrics["category_iou"].items()]
        lines += ["-" * (width + 8), f"{'category mIoU':<{width}} {pct(metrics['category_miou'])}"]
    return "\n".join(lines)


def write_json(metrics, path):
    """Writes the metrics dict as indented JSON."""
    with open(path, "w") as f:
        json.dump(metrics, f, indent=2)
        f.write("\n")
