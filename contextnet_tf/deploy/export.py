"""Export for deployment: SavedModel with any-size uint8 signatures, TFLite float32 and int8, ONNX.

* `export_saved_model`: a SavedModel whose ``serving_default`` signature takes a uint8 RGB batch of any height and
  width, ``image: (batch, h, w, 3)``, resizes it bilinearly to the model's resolution, runs the network, resizes the
  logits bilinearly back to (h, w) and returns ``labels: (batch, h, w) uint8`` (the argmax); ``probabilities``
  returns the softmax of the same resized logits, ``(batch, h, w, classes) float32``.
* `export_tflite`: TFLite float32, or int8 by post-training full-integer quantisation with a representative dataset
  (`int8=True`): Keras' `ExportArchive` writes a SavedModel that `tf.lite.TFLiteConverter` converts (the route of
  Keras' own LiteRT export, which takes only Keras models, where `keras.ops.argmax` does not convert).
* `export_onnx`: ONNX through `tf2onnx.convert.from_function`, as Keras' own ONNX export does.

TFLite and ONNX keep the model's fixed input size. What they compute is chosen by `head`:
``"logits"`` (the Keras model: float32 RGB in [0, 255] -> float32 logits), ``"cls"`` (uint8 image -> uint8 labels,
the papers' "cls") or ``"prob"`` (uint8 image -> float32 softmax, the papers' "prob"). `export_check` reloads every
artifact in a fresh process and compares it with the Keras model.

Exports need the TensorFlow backend (TFLite and tf2onnx convert TensorFlow graphs).
"""

import glob
import os
import tempfile

import cv2
import keras
import numpy as np

from contextnet_tf.deploy.folding import logits_only
from contextnet_tf.models import MODEL_NAMES, build_model

FORMATS = ("saved_model", "tflite", "tflite_int8", "onnx")
HEADS = ("logits", "cls", "prob")
ONNX_OPSET = 17


# ----------------------------------------------------------------------------------------------- inputs and models


def check_image(image, dtype="uint8", name="image"):
    """Checks that `image` is an RGB image or batch of images and returns it as a (batch, h, w, 3) numpy array.

    Args:
        image: array-like (h, w, 3) or (batch, h, w, 3).
        dtype: the required numpy dtype (``"uint8"`` for the exported signatures, ``"float32"`` for the Keras model),
            or None to accept any real dtype.
        name: what to call the argument in error messages.

    Raises:
        ValueError: greyscale, RGBA or any other channel count, a zero-size image, a wrong rank.
        TypeError: a wrong dtype.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        raise ValueError(f"{name} has shape {image.shape}: a greyscale image; the models need RGB (h, w, 3)")
    if image.ndim not in (3, 4):
        raise ValueError(f"{name} must be (h, w, 3) or (batch, h, w, 3), got shape {image.shape}")
    if image.ndim == 3:
        image = image[None]
    channels = image.shape[-1]
    if channels != 3:
        kind = {1: "greyscale", 4: "RGBA (drop alpha with image[..., :3])"}.get(channels, f"{channels}-channel")
        raise ValueError(f"{name} has shape {image.shape[1:]}: a {kind} image; the models need RGB (h, w, 3)")
    if min(image.shape[:3]) == 0:
        raise ValueError(f"{name} has shape {image.shape}: an empty image or batch (zero size)")
    if dtype is not None and image.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must be {np.dtype(dtype).name}, got {image.dtype.name}")
    if dtype is None and not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise TypeError(f"{name} must hold numbers, got dtype {image.dtype.name}")
    return image


def load_model(model, input_shape=None, num_classes=19, weights=None):
    """Returns a Keras model from a variant name or a saved ``.keras`` file, with a clear error for bad paths.

    Args:
        model: a name in `MODEL_NAMES` (built with `build_model`) or the path of a ``.keras`` file.
        input_shape: (h, w, 3) for a model built by name (default: the papers' 1024 x 2048).
        num_classes: classes of a model built by name.
        weights: optional ``.weights.h5`` file loaded into the model.

    Raises:
        FileNotFoundError: `model` or `weights` names a file that does not exist.
        ValueError: `model` is neither a variant name nor a ``.keras`` file.
    """
    if model in MODEL_NAMES:
        result = build_model(model, input_shape or (1024, 2048, 3), num_classes=num_classes)
    elif str(model).endswith(".keras"):
        if not os.path.isfile(model):
            raise FileNotFoundError(f"model file {model!r} does not exist")
        result = keras.saving.load_model(model, compile=False)
    else:
        raise ValueError(f"model {model!r} is neither a variant ({', '.join(MODEL_NAMES)}) nor a .keras file")
    if weights:
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"weights file {weights!r} does not exist")
        result.load_weights(weights)
    return result


def head_function(model, head="logits"):
    """Returns a TensorFlow function computing `head` on top of the logits of `model`.

    TensorFlow ops (``tf.argmax``) rather than `keras.ops` (whose TensorFlow argmax adds a sign-of-zero fix-up that
    costs a pass over the full-resolution logits and does not convert to TFLite).

    Args:
        model: a model of this package (an ``aux`` model keeps only its logits).
        head: ``"logits"``: float32 (batch, h, w, 3) in [0, 255] -> logits; ``"cls"``: uint8 (batch, h, w, 3) ->
            uint8 labels (batch, h, w); ``"prob"``: uint8 (batch, h, w, 3) -> float32 softmax (batch, h, w, classes).

    Returns:
        (fn, input_dtype): the function of one image batch, and the dtype it takes.
    """
    import tensorflow as tf

    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    model = logits_only(model)
    if head == "cls":
        _check_label_range(model.output_shape[-1])

    def fn(image):
        logits = model(tf.cast(image, tf.float32), training=False)
        if head == "cls":
            return tf.cast(tf.argmax(logits, axis=-1), tf.uint8)
        if head == "prob":
            return tf.nn.softmax(logits, axis=-1)
        return logits

    return fn, (tf.float32 if head == "logits" else tf.uint8)


def _check_label_range(num_classes):
    if num_classes > 256:
        raise ValueError(f"uint8 label maps hold at most 256 classes, the model has {num_classes}")


def _require_tensorflow():
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"export needs KERAS_BACKEND=tensorflow (TFLite and tf2onnx convert TensorFlow graphs), "
            f"this process runs {keras.backend.backend()!r}"
        )


# ------------------------------------------------------------------------------------------------------ SavedModel


def export_saved_model(model, path):
    """Writes a SavedModel with any-size uint8 ``serving_default`` and ``probabilities`` signatures.

    Args:
        model: a model of this package (its logits are exported; fold it first for speed).
        path: output directory.

    Signatures (both take ``image``: uint8 (batch, h, w, 3), any h, w >= 1):
        ``serving_default`` -> ``{"labels": uint8 (batch, h, w)}``;
        ``probabilities`` -> ``{"probabilities": float32 (batch, h, w, classes)}``.
    """
    _require_tensorflow()
    import tensorflow as tf

    model = logits_only(model)
    _check_label_range(model.output_shape[-1])
    height, width = model.input_shape[1:3]
    spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name="image")

    def logits_at_input_size(image):
        # Concrete signatures check the dtype and the rank but not the sizes: say what is wrong before a convolution does.
        checks = [
            tf.debugging.assert_equal(
                tf.shape(image)[-1], 3, message="image must be RGB (batch, height, width, 3): not grey, not RGBA"
            ),
            tf.debugging.assert_positive(tf.size(image), message="image must not be empty (zero batch/height/width)"),
        ]
        size = tf.shape(image)[1:3]
        with tf.control_dependencies(checks):
            resized = tf.image.resize(tf.cast(image, tf.float32), (height, width), method="bilinear")
        logits = model(resized, training=False)
        return tf.image.resize(logits, size, method="bilinear")

    def labels(image):
        return {"labels": tf.cast(tf.argmax(logits_at_input_size(image), axis=-1), tf.uint8)}

    def probabilities(image):
        return {"probabilities": tf.nn.softmax(logits_at_input_size(image), axis=-1)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", labels, input_signature=[spec])
    archive.add_endpoint("probabilities", probabilities, input_signature=[spec])
    archive.write_out(path, verbose=False)
    return path


# ----------------------------------------------------------------------------------------------- TFLite and ONNX


def representative_images(pattern, input_shape, count=100):
    """Loads up to `count` RGB images matching the glob `pattern`, resized to (h, w), as float32 (1, h, w, 3) arrays.

    Used as the representative dataset of int8 post-training quantisation.

    Raises:
        FileNotFoundError: no file matches `pattern`.
    """
    paths = sorted(glob.glob(pattern))[:count]
    if not paths:
        raise FileNotFoundError(f"no calibration image matches {pattern!r}")
    height, width = input_shape[:2]
    images = []
    for path in paths:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"calibration file {path!r} is not a readable image")
        rgb = cv2.cvtColor(cv2.resize(bgr, (width, height), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
        images.append(rgb[None].astype(np.float32))
    return images


def export_tflite(model, path, head="logits", int8=False, calibration_images=None):
    """Writes a TFLite model at the model's fixed input size (batch 1).

    Args:
        model: a model of this package.
        path: output ``.tflite`` file.
        head: ``"logits"``, ``"cls"`` or ``"prob"`` (see the module docstring).
        int8: full-integer post-training quantisation: int8 weights and activations, with the input as uint8
            (an image in [0, 255] quantises exactly) and a float32 output (``"cls"`` outputs uint8 labels).
        calibration_images: for `int8`, an iterable of float32 (1, h, w, 3) RGB arrays in [0, 255] at the model's
            size (see `representative_images`), about 100 real images.

    Raises:
        ValueError: `int8` without calibration images, or an unknown head.
    """
    _require_tensorflow()
    import tensorflow as tf

    if not str(path).endswith(".tflite"):
        raise ValueError(f"a TFLite file name must end with .tflite, got {path!r}")
    fn, input_dtype = head_function(model, head)
    shape = (1,) + tuple(logits_only(model).input_shape[1:])
    calibration = list(calibration_images or [])
    if int8 and not calibration:
        raise ValueError("int8 quantisation needs calibration images (a representative dataset)")
    with tempfile.TemporaryDirectory() as saved_model_dir:
        archive = keras.export.ExportArchive()  # Keras' own route to TFLite: SavedModel, then the converter.
        archive.track(model)
        archive.add_endpoint("serve", fn, input_signature=[tf.TensorSpec(shape, input_dtype, name="image")])
        archive.write_out(saved_model_dir, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # No Flex op: plain runtimes work.
        if int8:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([x.astype(input_dtype.as_numpy_dtype)] for x in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
        content = converter.convert()
    with open(path, "wb") as file:
        file.write(content)
    return path


def export_onnx(model, path, head="logits", opset=ONNX_OPSET):
    """Writes an ONNX model (through tf2onnx) at the model's fixed input size and a dynamic batch.

    Args:
        model: a model of this package.
        path: output ``.onnx`` file.
        head: ``"logits"``, ``"cls"`` or ``"prob"`` (see the module docstring).
        opset: ONNX opset version.
    """
    _require_tensorflow()
    import tensorflow as tf
    import tf2onnx

    fn, input_dtype = head_function(model, head)
    spec = [tf.TensorSpec((None,) + tuple(logits_only(model).input_shape[1:]), input_dtype, name="image")]
    tf2onnx.convert.from_function(tf.function(fn, input_signature=spec), spec, opset=opset, output_path=str(path))
    return path


def export(model, path, fmt, head="logits", calibration_images=None):
    """Writes `model` in format `fmt` (one of `FORMATS`); see the format-specific functions."""
    if fmt == "saved_model":
        if head != "logits":
            raise ValueError("the SavedModel always carries both the labels and the probabilities signatures")
        return export_saved_model(model, path)
    if fmt in ("tflite", "tflite_int8"):
        return export_tflite(model, path, head, int8=fmt == "tflite_int8", calibration_images=calibration_images)
    if fmt == "onnx":
        return export_onnx(model, path, head)
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
