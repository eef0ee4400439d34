"""Prediction on images of any size, at the model's own input scale, with optional flip / multi-scale averaging.

The networks take their sizes from the input at run time (`contextnet_tf.models.layers`), so one model predicts
images of any size with no rebuilding or resizing wrapper. A `SegmentationModel` carries the scale it is meant to
run at (`input_scale`): `Predictor` runs it there by default, resizing each image by that factor (keeping its aspect
ratio) and the logits back to the image's size, exactly as `evaluate` and the exports do.

Output formats of `predict_files`:
* ``color``: the class colours of the dataset's palette (ignored pixels black);
* ``overlay``: the colours blended with the image (alpha 0.5);
* ``labelids``: single-channel uint8 label PNGs; for Cityscapes (and the synthetic city) the official label ids
  (`*_labelIds.png` convention: road = 7, ...) that the Cityscapes test server and `cityscapesscripts` read, for
  other datasets the train ids. Files keep the input's name (``.png``) and relative folder, e.g.
  ``OUT/berlin/berlin_000000_000019_leftImg8bit.png``. The model must predict the dataset's own classes
  (`check_label_ids`): a 19-class Cityscapes model has no CamVid label ids.
"""

import dataclasses
import os

import cv2
import numpy as np
import tensorflow as tf

from contextnet_tf import data
from contextnet_tf.evaluation import last_mile
from contextnet_tf.models import SegmentationModel, logits_only

FORMATS = ("color", "overlay", "labelids")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
MIN_SIDE = 32  # The networks' smallest input side (`build_model`).


def model_dataset_info(model, dataset=None):
    """The `data.DatasetInfo` whose palette and class names are the model's own (`model.palette`,
    `model.class_names`, `model.dataset`); for a model that carries none, that of `dataset`.

    Raises:
        ValueError: the model has no palette and `dataset` is None.
    """
    palette = getattr(model, "palette", None)
    name = getattr(model, "dataset", None) or dataset
    if palette is None:
        if name is None:
            raise ValueError(f"model {model.name!r} carries no palette: name the dataset it was trained on")
        return data.get_info(name)
    palette = np.asarray(palette, np.uint8)
    class_names = getattr(model, "class_names", None) or [str(i) for i in range(len(palette))]
    base = data.get_info(name) if name in data.DATASET_NAMES else data.get_info("cityscapes")
    same_classes = base.num_classes == len(palette)
    return dataclasses.replace(
        base,
        name=name or "unknown",
        num_classes=len(palette),
        class_names=tuple(class_names),
        palette=palette,
        category_names=base.category_names if same_classes else None,
        class_to_category=base.class_to_category if same_classes else None,
    )


def model_classes(model):
    """The number of classes `model` predicts (`num_classes` of a `SegmentationModel`, else its logits' channels)."""
    classes = getattr(model, "num_classes", None)
    if classes is None:
        output = model.output["logits"] if isinstance(model.output, dict) else model.output
        classes = output.shape[-1]
    return int(classes)


@dataclasses.dataclass(frozen=True)
class ClassMismatch:
    """How a model's classes differ from a dataset's (`class_mismatch`): the model's class count, the dataset it was
    trained on (None if it names none), and the differing ``"model name / dataset name"`` pairs when the counts agree
    (empty when the counts differ)."""

    classes: int
    trained_on: str | None
    differ: tuple


def class_mismatch(model, info):
    """None when `model` predicts exactly the classes of `info` (as many and, when it carries its class names, the
    same in the same order); else a `ClassMismatch`. The one comparison behind every check that a model fits a dataset
    (`metrics.check_model_fits`, `check_label_ids`, evaluate.py); each caller words its own message."""
    classes = model_classes(model)
    trained_on = getattr(model, "dataset", None)
    if classes != info.num_classes:
        return ClassMismatch(classes, trained_on, ())
    names = getattr(model, "class_names", None)
    if names is not None and list(names) != list(info.class_names):
        differ = tuple(f"{a} / {b}" for a, b in zip(names, info.class_names) if a != b)
        return ClassMismatch(classes, trained_on, differ)
    return None


def check_label_ids(model, info, name=None):
    """Raises ValueError unless the ``labelids`` PNGs of `info`'s dataset can be written from `model`'s classes.

    The label ids of a dataset (Cityscapes' official ids, CamVid's train ids) are defined for its own train classes:
    the model must predict exactly those, as many and (when it carries its class names) the same ones in the same
    order, and the dataset must be one whose ids are known (`data.DATASET_NAMES`). The message names the model (`name`,
    e.g. its file; default its Keras name) and the dataset.
    """
    name = name or repr(model.name)
    trained_on = getattr(model, "dataset", None)
    origin = f" (trained on {trained_on})" if trained_on else ""
    if info.name not in data.DATASET_NAMES:
        raise ValueError(
            f"label ids are defined for {', '.join(data.DATASET_NAMES)}; model {name}{origin} names no such dataset: "
            "name the dataset whose label ids to write (predict.py: --dataset)"
        )
    mismatch = class_mismatch(model, info)
    if mismatch is not None and not mismatch.differ:
        raise ValueError(
            f"model {name}{origin} predicts {mismatch.classes} classes, which do not map to {info.name}'s label ids "
            f"({info.num_classes} classes): write the label ids of {trained_on or 'the dataset it was trained on'}"
        )
    if mismatch is not None:
        raise ValueError(
            f"model {name}{origin} predicts other classes than {info.name}'s label ids are for "
            f"({', '.join(mismatch.differ[:3])}): write the label ids of {trained_on or 'the dataset it was trained on'}"
        )


def default_scales(model):
    """``(model.input_scale,)`` for a model that carries one, else ``(1.0,)``."""
    return (float(getattr(model, "input_scale", 1.0)),)


def scaled_size(height, width, scale):
    """The (height, width) a scale gives, keeping the aspect ratio, at least `MIN_SIDE` on each side."""
    return max(MIN_SIDE, round(height * scale)), max(MIN_SIDE, round(width * scale))


def _any_size(model):
    """`model`, or for a `SegmentationModel` built at a static size its any-size rebuild (same weights)."""
    if isinstance(model, SegmentationModel) and any(d is not None for d in model.input_shape[1:3]):
        return model.rebuild(input_shape=(None, None, 3))
    return model


class Predictor:
    """Class probabilities and label maps of image batches of any size.

    Args:
        model: a segmentation model (logits, or a dict with ``logits``); it runs at any input size.
        flip: also predict on the horizontally flipped image and average the probabilities.
        scales: input scales whose probabilities are averaged (multi-scale evaluation), e.g. (0.75, 1.0, 1.25);
            None (the default) runs the model at its own `input_scale` (`default_scales`).
    """

    def __init__(self, model, flip=False, scales=None):
        if scales is None:
            scales = default_scales(model)
        if not scales or min(scales) <= 0:
            raise ValueError(f"scales must be positive, got {scales}")
        self.model = _any_size(model)
        self.flip = flip
        self.scales = tuple(float(s) for s in scales)
        self._forward = {}
        self._labels = None

    def _logits_fn(self, height, width):
        key = (height, width)
        if key not in self._forward:
            model = self.model

            @tf.function
            def forward(images):
                outputs = model(images, training=False)
                return outputs["logits"] if isinstance(outputs, dict) else outputs

            self._forward[key] = forward
        return self._forward[key]

    def logits_or_probabilities(self, images):
        """Logits [B, H, W, C] with one scale and no flip; otherwise averaged softmax probabilities."""
        images = tf.convert_to_tensor(images, tf.float32)
        height, width = int(images.shape[1]), int(images.shape[2])
        if self.scales == (1.0,) and not self.flip:
            return self._logits_fn(height, width)(images)
        total, count = 0.0, 0
        for scale in self.scales:
            size = scaled_size(height, width, scale)
            x = images if size == (height, width) else tf.image.resize(images, size, method="bilinear")
            forward = self._logits_fn(*size)
            probs = tf.nn.softmax(forward(x), axis=-1)
            if self.flip:
                flipped = tf.nn.softmax(forward(tf.reverse(x, axis=[2])), axis=-1)
                probs = (probs + tf.reverse(flipped, axis=[2])) / 2.0
            if size != (height, width):
                probs = tf.image.resize(probs, (height, width), method="bilinear")
            total += probs
            count += 1
        return total / count

    def labels(self, images):
        """Predicted train ids, int32 numpy array [B, H, W].

        With one scale of 1 and no flip, the labels come from the network's 1/8-resolution logits through
        `last_mile.upsample_argmax` (the full-resolution logits are never made; same labels, ties aside); otherwise
        they are the argmax of `logits_or_probabilities`.
        """
        if self.scales == (1.0,) and not self.flip:
            labels_fn = self._fused_labels_fn()
            if labels_fn is not None:
                return labels_fn(tf.convert_to_tensor(images, tf.float32)).numpy()
        return tf.argmax(self.logits_or_probabilities(images), axis=-1, output_type=tf.int32).numpy()

    def _fused_labels_fn(self):
        if self._labels is None:
            try:
                eighth = last_mile.eighth_logits_model(logits_only(self.model))
            except ValueError:  # not a network of this package: no final `logits` upsampling to fuse
                self._labels = False
                return None

            # autograph=False: no Python control flow on tensors here (upsample_argmax uses tf.cond), and AutoGraph
            # cannot convert a closure over `eighth` (it warned "closure mismatch" on every Predictor).
            @tf.function(reduce_retracing=True, autograph=False)
            def labels_fn(images):
                return last_mile.upsample_argmax(eighth(images, training=False), tf.shape(images)[1:3])

            self._labels = labels_fn
        return self._labels or None


def overlay(image, labels, info, alpha=0.5):
    """The class colours of `labels` (`data.colorize`) blended over the RGB `image` [H, W, 3], as uint8."""
    colors = data.colorize(labels, info).astype(np.float32)
    blended = (1.0 - alpha) * np.asarray(image, np.float32) + alpha * colors
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def cityscapes_label_ids(train_ids):
    """Cityscapes label ids (uint8, as in `*_labelIds.png`) of a train-id map; train id 255 becomes 0
    (unlabeled). The official table is `contextnet_tf.data.CITYSCAPES_LABELS`."""
    table = np.zeros(256, np.uint8)
    for label in data.CITYSCAPES_LABELS:
        if label.train_id != 255:
            table[label.train_id] = label.id
    return table[np.asarray(train_ids).astype(np.uint8)]


def read_image(path):
    """float32 RGB array [H, W, 3] in [0, 255] of an image file."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32)


def list_images(input_path):
    """[(path, path relative to the input)] of an image file or of every image under a folder, sorted."""
    if os.path.isfile(input_path):
        return [(input_path, os.path.basename(input_path))]
    if not os.path.isdir(input_path):
        raise FileNotFoundError(f"no image or folder at {input_path}")
    found = []
    for root, _, files in os.walk(input_path):
        for name in files:
            if name.lower().endswith(IMAGE_EXTENSIONS):
                path = os.path.join(root, name)
                found.append((path, os.path.relpath(path, input_path)))
    return sorted(found, key=lambda item: item[1])


def render(image, labels, fmt, info):
    """The output array of one format (see the module docstring): RGB [H, W, 3] or single-channel [H, W]."""
    if fmt == "color":
        return data.colorize(labels, info)
    if fmt == "overlay":
        return overlay(image, labels, info)
    if fmt == "labelids":
        if info.name in ("cityscapes", "synthetic"):
            return cityscapes_label_ids(labels)
        return np.asarray(labels).astype(np.uint8)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def write_png(path, array):
    """Writes an RGB [H, W, 3] or single-channel [H, W] uint8 array as PNG, creating folders."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(path, array):
        raise OSError(f"cannot write {path}")


def predict_files(model, input_path, output_dir, fmt, info, flip=False, scales=None):
    """Predicts every image of a file or folder and writes one PNG per image in `fmt`.

    Args:
        model: a segmentation model; images of any size are handled.
        input_path: an image file or a folder searched recursively.
        output_dir: where PNGs go, mirroring the input's relative paths with a ``.png`` extension.
        fmt: ``color``, ``overlay`` or ``labelids``.
        info: the `DatasetInfo` the model was trained on (palette, classes).
        flip, scales: test-time augmentation (see `Predictor`; scales default to the model's input scale).

    Returns:
        The list of written paths.

    Raises:
        ValueError: ``labelids`` of a dataset whose classes are not the model's (`check_label_ids`).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "labelids":
        check_label_ids(model, info)
    predictor = Predictor(model, flip=flip, scales=scales)
    written = []
    for path, relative in list_images(input_path):
        image = read_image(path)
        labels = predictor.labels(image[None])[0]
        out_path = os.path.join(output_dir, os.path.splitext(relative)[0] + ".png")
        write_png(out_path, render(image, labels, fmt, info))
        written.append(out_path)
    return written
