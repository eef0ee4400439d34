"""Prediction on images of any size, with optional flip / multi-scale averaging, and the PNG outputs.

The networks are built for one static input size (their resize and pyramid-pooling layers need it), but no weight
depends on that size. `model_at_size` therefore rebuilds a model of this package at another size and copies the
weights; a model it cannot rebuild (a pruned one, say) is wrapped to resize its input and its logits instead.

Output formats of `predict_files`:
* ``color``: the class colours of the dataset's palette (ignored pixels black);
* ``overlay``: the colours blended with the image (alpha 0.5);
* ``labelids``: single-channel uint8 label PNGs; for Cityscapes (and the synthetic city) the official label ids
  (`*_labelIds.png` convention: road = 7, ...) that the Cityscapes test server and `cityscapesscripts` read, for
  other datasets the train ids. Files keep the input's name (``.png``) and relative folder, e.g.
  ``OUT/berlin/berlin_000000_000019_leftImg8bit.png``.
"""

import logging
import os

import cv2
import keras
import numpy as np
import tensorflow as tf

from contextnet_tf import data
from contextnet_tf.models import contextnet
from contextnet_tf.models import fast_scnn
from contextnet_tf.models.layers import Resize
from contextnet_tf.models import ABLATION_NAMES, MODEL_NAMES, build_model

FORMATS = ("color", "overlay", "labelids")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
_BASE_STEM_CHANNELS = 32  # ltd_conv1 (Fast-SCNN Table 1) and context_conv1 (ContextNet Table 2) both have 32.


def _variant(model):
    for name in MODEL_NAMES + ABLATION_NAMES:
        if model.name in (name, name.replace("-", "_")):
            return name
    return None


def _logits_shape(model):
    output = model.output["logits"] if isinstance(model.output, dict) else model.output
    return output.shape


def _weight_shapes(model):
    return [tuple(w.shape) for w in model.weights]


def _candidate_widths(model, variant):
    variants = {**fast_scnn.VARIANTS, **contextnet.VARIANTS, **contextnet.ABLATION_VARIANTS}
    variant_width = variants[variant].get("width", 1.0)
    widths = [1.0, 2.0]
    convs = [layer for layer in model.layers if type(layer) is keras.layers.Conv2D]
    if convs:
        widths.append(convs[0].filters / _BASE_STEM_CHANNELS / variant_width)
    return widths


def copy_weights_by_name(source, target):
    """Copies the weights of every layer of `target` from the layer of the same name in `source`."""
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())


def rebuild_at_size(model, height, width):
    """`model` rebuilt by `build_model` at (height, width) with its weights, or None if it is not one of ours.

    The variant comes from the model's name, the classes from its logits and the width multiplier from matching
    every weight shape. The result returns logits only (auxiliary heads are dropped).
    """
    variant = _variant(model)
    if variant is None:
        return None
    num_classes = _logits_shape(model)[-1]
    aux = isinstance(model.output, dict)
    shapes = _weight_shapes(model)
    for multiplier in _candidate_widths(model, variant):
        probe = build_model(variant, (64, 64, 3), num_classes, aux=aux, width=multiplier)
        if _weight_shapes(probe) == shapes:
            break
    else:
        return None
    rebuilt = build_model(variant, (height, width, 3), num_classes, aux=False, width=multiplier)
    copy_weights_by_name(model, rebuilt)
    return rebuilt


def model_at_size(model, height, width):
    """A model computing `model`'s logits for (height, width) inputs.

    Returns `model` itself when it is already built at that size; otherwise a rebuilt copy with the same weights
    (`rebuild_at_size`), or, for models that cannot be rebuilt, a wrapper that resizes the input to the model's
    size and the logits back (bilinear) with a warning.
    """
    if tuple(model.input_shape[1:3]) == (height, width):
        return model
    rebuilt = rebuild_at_size(model, height, width)
    if rebuilt is not None:
        return rebuilt
    logging.warning("cannot rebuild %s at %dx%d; resizing its inputs and outputs instead", model.name, height, width)
    image = keras.Input((height, width, 3))
    x = Resize(*model.input_shape[1:3])(image)
    logits = model(x)
    logits = logits["logits"] if isinstance(logits, dict) else logits
    return keras.Model(image, Resize(height, width, dtype="float32")(logits), name=f"{model.name}_resized")
class Predictor:
    """Class probabilities and label maps of image batches of any size.

    Args:
        model: a segmentation model (logits, or a dict with ``logits``) built at any input size.
        flip: also predict on the horizontally flipped image and average the probabilities.
        scales: input scales whose probabilities are averaged (multi-scale evaluation), e.g. (0.75, 1.0, 1.25).
    """

    def __init__(self, model, flip=False, scales=(1.0,)):
        if not scales or min(scales) <= 0:
            raise ValueError(f"scales must be positive, got {scales}")
        self.model = model
        self.flip = flip
        self.scales = tuple(float(s) for s in scales)
        self._forward = {}

    def _logits_fn(self, height, width):
        key = (height, width)
        if key not in self._forward:
            sized = model_at_size(self.model, height, width)

            @tf.function(reduce_retracing=True)
            def forward(images):
                outputs = sized(images, training=False)
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
            size = (max(32, round(height * scale)), max(32, round(width * scale)))
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
        """Predicted train ids, int32 numpy array [B, H, W]."""
        return tf.argmax(self.logits_or_probabilities(images), axis=-1, output_type=tf.int32).numpy()


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


def predict_files(model, input_path, output_dir, fmt, info, flip=False, scales=(1.0,)):
    """Predicts every image of a file or folder and writes one PNG per image in `fmt`.

    Args:
        model: a segmentation model; images of any size are handled (`model_at_size`).
        input_path: an image file or a folder searched recursively.
        output_dir: where PNGs go, mirroring the input's relative paths with a ``.png`` extension.
        fmt: ``color``, ``overlay`` or ``labelids``.
        info: the `DatasetInfo` the model was trained on (palette, classes).
        flip, scales: test-time augmentation (see `Predictor`).

    Returns:
        The list of written paths.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    predictor = Predictor(model, flip=flip, scales=scales)
    written = []
    for path, relative in list_images(input_path):
        image = read_image(path)
        labels = predictor.labels(image[None])[0]
        out_path = os.path.join(output_dir, os.path.splitext(relative)[0] + ".png")
        write_png(out_path, render(image, labels, fmt, info))
        written.append(out_path)
    return written
