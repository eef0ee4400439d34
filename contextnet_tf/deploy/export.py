"""Export for deployment: SavedModel, TFLite float32 and int8, ONNX, each running the model as it was measured.

A `SegmentationModel` carries the input scale ``s`` it runs at (`model.input_scale`: 1 for the published CamVid
models, 2 for the Fast-SCNN published before 2026-12-06). Every export runs it exactly as `Predictor` and `evaluate`
do (`serving_function`):

* an image of (h, w) is resized bilinearly to ``scaled_size(h, w, s)`` (`contextnet_tf.evaluation.prediction`: the
  aspect ratio kept, the same rounding), the network runs there, and the result comes back at (h, w);
* ``s == 1``: labels are the argmax of the logits, probabilities their softmax (no resize at all);
* ``s != 1``: the softmax probabilities are resized bilinearly back to (h, w) and the labels are their argmax.

Formats:

* `export_saved_model`: a SavedModel whose ``serving_default`` signature takes a uint8 RGB batch of **any** height and
  width, ``image: (batch, h, w, 3)``, and returns ``labels: (batch, h, w) uint8``; the ``probabilities`` signature
  returns ``(batch, h, w, classes) float32``. The network inside is the model rebuilt at ``(None, None, 3)``.
* `export_tflite`: TFLite float32, or int8 by post-training full-integer quantisation with a representative dataset
  (`int8=True`): Keras' `ExportArchive` writes a SavedModel that `tf.lite.TFLiteConverter` converts (the route of
  Keras' own LiteRT export, which takes only Keras models, where `keras.ops.argmax` does not convert).
* `export_onnx`: ONNX through `tf2onnx.convert.from_function`, as Keras' own ONNX export does.

TFLite and ONNX take one static input size, chosen at export (`input_size`; default `default_input_size`: the native
frame size of the model's dataset, CamVid 360x480, Cityscapes 1024x2048); the network inside is the model rebuilt at
``scaled_size(input_size, s)`` (`SegmentationModel.rebuild`). What they compute is chosen by `head`:
``"logits"`` (float32 RGB in [0, 255] -> float32 logits at the input size, resized back bilinearly when ``s != 1``),
``"cls"`` (uint8 image -> uint8 labels, the papers' "cls") or ``"prob"`` (uint8 image -> float32 probabilities, the
papers' "prob"). `export_check` reloads every artifact in a fresh process and compares it with `Predictor`.

A `SegmentationModel` is folded here (`fold_batch_norm`, ``fold=False`` to keep the batch norms): export the model
itself, not a folded copy, which is a plain Keras model that has lost its recipe. A plain Keras model (no recipe) is
exported as it is, at input scale 1 (what `Predictor` does with it), at its own static size for TFLite / ONNX.

Exports need the TensorFlow backend (TFLite and tf2onnx convert TensorFlow graphs).
"""

import glob
import os
import tempfile

import cv2
import keras
import numpy as np

from contextnet_tf.data.files import NATIVE_SIZE
from contextnet_tf.deploy.folding import fold_batch_norm
from contextnet_tf.evaluation.prediction import MIN_SIDE, default_scales, scaled_size
from contextnet_tf.models import MODEL_NAMES, SegmentationModel, build_model, logits_only
from contextnet_tf.models import load_model as load_keras_model

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
    """Returns a model from a variant name (`build_model`) or a saved ``.keras`` file (`contextnet_tf.load_model`).

    Args:
        model: a name in `MODEL_NAMES` or the path of a ``.keras`` file (which carries its own recipe).
        input_shape: (h, w, 3) of a model built by name (default: any size, ``(None, None, 3)``).
        num_classes: classes of a model built by name.
        weights: optional ``.weights.h5`` file loaded into the model.

    Raises:
        FileNotFoundError: `model` or `weights` names a file that does not exist.
        ValueError: `model` is neither a variant name nor a ``.keras`` file, or the file is corrupt.
    """
    if model in MODEL_NAMES:
        result = build_model(model, input_shape or (None, None, 3), num_classes=num_classes)
    elif str(model).endswith(".keras"):
        if not os.path.isfile(model):
            raise FileNotFoundError(f"model file {model!r} does not exist")
        result = load_keras_model(model)
    else:
        raise ValueError(f"model {model!r} is neither a variant ({', '.join(MODEL_NAMES)}) nor a .keras file")
    if weights:
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"weights file {weights!r} does not exist")
        result.load_weights(weights)
    return result


def input_scale(model):
    """The scale an export runs `model` at: its own `input_scale` (1 for a model that carries none, as `Predictor`)."""
    (scale,) = default_scales(model)
    return scale


def default_input_size(model):
    """The static (h, w) of a TFLite / ONNX export when none is given: the native frame size of the model's dataset
    (CamVid 360x480, Cityscapes 1024x2048), else the static input size of a plain Keras model.

    Raises:
        ValueError: no size is known (a model of no dataset with a graph of any size): give one (``--input_size``).
    """
    dataset = getattr(model, "dataset", None)
    if NATIVE_SIZE.get(dataset):
        return tuple(NATIVE_SIZE[dataset])
    static = tuple(logits_only(model).input_shape[1:3])
    if not isinstance(model, SegmentationModel) and None not in static:
        return static
    raise ValueError(
        f"model {model.name!r} (dataset {dataset!r}) has no native frame size: choose the static input size of the "
        "TFLite / ONNX export (input_size=(h, w), --input_size=HxW)"
    )


def deployable_network(model, input_shape, fold=True):
    """The logits-only network that an export runs at `input_shape` ((h, w, 3), None for run-time sizes).

    A `SegmentationModel` is rebuilt from its recipe at `input_shape` without auxiliary heads and folded (`fold`).
    A plain Keras model is used as it is, and must take `input_shape`.
    """
    if isinstance(model, SegmentationModel):
        network = model.rebuild(input_shape=tuple(input_shape), aux=False)
        return fold_batch_norm(network) if fold else network
    network = logits_only(model)
    static = tuple(network.input_shape[1:3])
    for given, built in zip(input_shape[:2], static):
        if built is not None and given != built:
            raise ValueError(
                f"model {model.name!r} is a plain Keras model built at {static} (no recipe to rebuild it): it cannot "
                f"run at {tuple(input_shape[:2])}; export the SegmentationModel it came from"
            )
    return network


def head_function(model, head="logits", last_mile="fused"):
    """Returns a TensorFlow function computing `head` on top of the logits of `model`, at the input's own size.

    The network alone (no input scale): what `contextnet_tf.deploy.timing` times. TensorFlow ops (``tf.argmax``)
    rather than `keras.ops` (whose TensorFlow argmax adds a sign-of-zero fix-up that costs a pass over the
    full-resolution logits and does not convert to TFLite).

    Args:
        model: a model of this package (an ``aux`` model keeps only its logits).
        head: ``"logits"``: float32 (batch, h, w, 3) in [0, 255] -> logits; ``"cls"``: uint8 (batch, h, w, 3) ->
            uint8 labels (batch, h, w); ``"prob"``: uint8 (batch, h, w, 3) -> float32 softmax (batch, h, w, classes).

    Returns:
        (fn, input_dtype): the function of one image batch, and the dtype it takes.
    """
    return serving_function(logits_only(model), head, 1.0, last_mile=last_mile)


def serving_function(network, head, scale, last_mile="fused"):
    """Returns a TensorFlow function running `network` at input scale `scale` as `Predictor` does (module docstring).

    Args:
        network: the logits-only Keras network (see `deployable_network`).
        head: ``"logits"``, ``"cls"`` or ``"prob"`` (see `head_function`).
        scale: the input scale; the function's input (batch, h, w, 3) is resized to ``scaled_size(h, w, scale)``
            (static sizes are computed in Python, run-time sizes in the graph, with the same round-half-to-even).
        last_mile: for ``"cls"`` at scale 1, ``"fused"`` takes the labels from the network's 1/8-resolution logits
            (`contextnet_tf.evaluation.last_mile.upsample_argmax`: the full-resolution logits are never made; same
            labels, ties aside) and ``"plain"`` is the argmax of the upsampled logits. Other heads and scales always
            take the plain path.

    Returns:
        (fn, input_dtype).
    """
    import tensorflow as tf

    from contextnet_tf.evaluation import last_mile as last_mile_lib

    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    if head == "cls":
        _check_label_range(network.output_shape[-1])
    if last_mile not in ("fused", "plain"):
        raise ValueError(f"last_mile must be fused or plain, got {last_mile!r}")
    scale = float(scale)
    eighth = None
    if head == "cls" and scale == 1.0 and last_mile == "fused":
        try:
            eighth = last_mile_lib.eighth_logits_model(network)
        except ValueError:  # not a network of this package (no final `logits` upsampling): the plain path
            eighth = None

    def fn(image):
        image = tf.cast(image, tf.float32)
        if eighth is not None:
            size, _ = _sizes(image, 1.0)
            return last_mile_lib.upsample_argmax(eighth(image, training=False), size, output_type=tf.uint8)
        if scale == 1.0:
            logits = network(image, training=False)
            scores = logits
        else:
            size, scaled = _sizes(image, scale)
            logits = network(tf.image.resize(image, scaled, method="bilinear"), training=False)
            if head == "logits":
                return tf.image.resize(logits, size, method="bilinear")
            scores = tf.image.resize(tf.nn.softmax(logits, axis=-1), size, method="bilinear")
        if head == "cls":
            return tf.cast(tf.argmax(scores, axis=-1), tf.uint8)
        if head == "prob":
            return tf.nn.softmax(scores, axis=-1) if scale == 1.0 else scores
        return logits

    return fn, (tf.float32 if head == "logits" else tf.uint8)


def _sizes(image, scale):
    """(h, w) of `image` and `scaled_size(h, w, scale)`: Python ints for a static shape, int32 tensors otherwise."""
    import tensorflow as tf

    static = image.shape[1:3]
    if static.is_fully_defined():
        size = tuple(static.as_list())
        return size, scaled_size(*size, scale)
    size = tf.shape(image)[1:3]
    # Python's round() and tf.round both round half to even; float64 as in Python.
    scaled = tf.cast(tf.round(tf.cast(size, tf.float64) * scale), tf.int32)
    return size, tf.maximum(scaled, MIN_SIDE)


def _check_batch(image):
    """`image` after run-time checks that it is a non-empty RGB batch (batch, h, w, 3), each failing with a message
    that says so and shows the shape given.

    A SavedModel signature checks the dtype but not the rank: an unbatched (h, w, 3) image reaches the graph, which
    would fail in a resize or a convolution. A check on ``tf.shape(image)`` does not help either, since TensorFlow
    infers rank 4 from the signature and folds it to a constant; the shape is passed through a serialise / parse
    round trip that no shape inference sees through, so the checks see the shape actually given.
    """
    import tensorflow as tf

    shape = tf.io.parse_tensor(tf.io.serialize_tensor(tf.shape(image, out_type=tf.int32)), tf.int32)
    checks = []
    for ok, message in (
        (tf.equal(tf.size(shape), 4),
         "image must be a batch (batch, height, width, 3) of uint8 RGB images: add the batch axis to one "
         "(height, width, 3) image (image[None], tf.expand_dims(image, 0)); got shape"),
        (tf.reduce_all(tf.equal(shape[-1:], 3)),
         "image must be RGB, (batch, height, width, 3): not greyscale, not RGBA; got shape"),
        (tf.reduce_all(shape > 0), "image must not be empty (zero batch, height or width); got shape"),
    ):
        with tf.control_dependencies(checks):  # in this order: the rank is reported first
            checks.append(tf.debugging.Assert(ok, [message, shape], summarize=8))
    with tf.control_dependencies(checks):
        return tf.identity(image)


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


def export_saved_model(model, path, fold=True):
    """Writes a SavedModel with any-size uint8 ``serving_default`` and ``probabilities`` signatures.

    Args:
        model: a `SegmentationModel` (rebuilt at any size and folded, run at its `input_scale`), or a plain Keras
            model whose graph takes any size (run at scale 1).
        path: output directory.
        fold: fold the batch norms of a `SegmentationModel` first.

    Signatures (both take ``image``: uint8 (batch, h, w, 3), any h, w >= 1):
        ``serving_default`` -> ``{"labels": uint8 (batch, h, w)}``;
        ``probabilities`` -> ``{"probabilities": float32 (batch, h, w, classes)}``.
    Another shape (an unbatched (h, w, 3) image, greyscale, RGBA, zero size) fails with an ``InvalidArgumentError``
    whose message says what the signature wants and shows the shape given (`_check_batch`).
    """
    _require_tensorflow()
    import tensorflow as tf

    network = deployable_network(model, (None, None, 3), fold)
    _check_label_range(network.output_shape[-1])
    scale = input_scale(model)
    labels_fn, _ = serving_function(network, "cls", scale)
    probabilities_fn, _ = serving_function(network, "prob", scale)
    spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name="image")

    archive = keras.export.ExportArchive()
    archive.track(network)
    archive.add_endpoint(
        "serving_default", lambda image: {"labels": labels_fn(_check_batch(image))}, input_signature=[spec]
    )
    archive.add_endpoint(
        "probabilities", lambda image: {"probabilities": probabilities_fn(_check_batch(image))}, input_signature=[spec]
    )
    archive.write_out(path, verbose=False)
    return path


# ----------------------------------------------------------------------------------------------- TFLite and ONNX


def calibration_files(model, data_dir, split="train", count=100):
    """The int8 calibration images of `model` by default: `count` frames spread evenly over the `split` split of the
    model's own dataset (its ``dataset`` field), so the quantiser sees the scenes the model was trained on.

    Returns:
        (paths, record): the image paths and a JSON-able record of where they came from (dataset, split, data_dir,
        count and file names), which `experiments/export.py` writes beside the int8 model.

    Raises:
        ValueError: the model names no dataset (give calibration images), or the split has no image.
    """
    from contextnet_tf import data

    dataset = getattr(model, "dataset", None)
    if not dataset:
        raise ValueError(f"model {model.name!r} names no dataset, so there is no training split to calibrate on: "
                         "give --calibration_images (a glob of real images)")
    examples = data.list_examples(dataset, data_dir, split)
    if not examples:
        raise ValueError(f"{dataset} {split} in {data_dir} has no image to calibrate on")
    picks = np.unique(np.linspace(0, len(examples) - 1, min(count, len(examples))).round().astype(int))
    paths = [examples[i][0] for i in picks]
    record = dict(source="dataset split", dataset=dataset, split=split, data_dir=os.path.abspath(data_dir),
                  count=len(paths), of=len(examples), files=[os.path.basename(p) for p in paths])
    return paths, record


def representative_images(pattern, input_size, count=100):
    """Loads up to `count` RGB images matching the glob `pattern` (or given as a list of paths), resized to
    `input_size` (h, w), as float32 (1, h, w, 3) arrays: the representative dataset of int8 post-training
    quantisation.

    Raises:
        FileNotFoundError: no file matches `pattern`.
    """
    paths = (sorted(glob.glob(pattern)) if isinstance(pattern, str) else list(pattern))[:count]
    if not paths:
        raise FileNotFoundError(f"no calibration image matches {pattern!r}")
    height, width = input_size[:2]
    images = []
    for path in paths:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"calibration file {path!r} is not a readable image")
        rgb = cv2.cvtColor(cv2.resize(bgr, (width, height), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
        images.append(rgb[None].astype(np.float32))
    return images


def _static_function(model, head, input_size, fold):
    """(fn, input_dtype, (h, w)): the head at the static `input_size` (default `default_input_size`), the network
    rebuilt at ``scaled_size(h, w, scale)``."""
    height, width = tuple(input_size) if input_size else default_input_size(model)
    scale = input_scale(model)
    network = deployable_network(model, (*scaled_size(height, width, scale), 3), fold)
    fn, input_dtype = serving_function(network, head, scale)
    return fn, input_dtype, (height, width), network


def export_tflite(model, path, head="logits", int8=False, calibration_images=None, input_size=None, fold=True):
    """Writes a TFLite model taking one static input size (batch 1).

    Args:
        model: a `SegmentationModel` (or a plain Keras model, run at scale 1 at its own size).
        path: output ``.tflite`` file.
        head: ``"logits"``, ``"cls"`` or ``"prob"`` (see the module docstring).
        int8: full-integer post-training quantisation: int8 weights and activations, with the input as uint8
            (an image in [0, 255] quantises exactly) and a float32 output (``"cls"`` outputs uint8 labels).
        calibration_images: for `int8`, an iterable of float32 (1, h, w, 3) RGB arrays in [0, 255] at the input
            size (see `representative_images`), about 100 real images.
        input_size: (h, w) of the input; default `default_input_size`.
        fold: fold the batch norms of a `SegmentationModel` first.

    Raises:
        ValueError: `int8` without calibration images, an unknown head, no input size known.
    """
    _require_tensorflow()
    import tensorflow as tf

    if not str(path).endswith(".tflite"):
        raise ValueError(f"a TFLite file name must end with .tflite, got {path!r}")
    calibration = list(calibration_images or [])
    if int8 and not calibration:
        raise ValueError("int8 quantisation needs calibration images (a representative dataset)")
    fn, input_dtype, size, network = _static_function(model, head, input_size, fold)
    with tempfile.TemporaryDirectory() as saved_model_dir:
        archive = keras.export.ExportArchive()  # Keras' own route to TFLite: SavedModel, then the converter.
        archive.track(network)
        archive.add_endpoint("serve", fn, input_signature=[tf.TensorSpec((1, *size, 3), input_dtype, name="image")])
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


def export_onnx(model, path, head="logits", input_size=None, fold=True, opset=ONNX_OPSET):
    """Writes an ONNX model (through tf2onnx) taking one static input size and a dynamic batch.

    Args:
        model, head, input_size, fold: as `export_tflite`.
        path: output ``.onnx`` file.
        opset: ONNX opset version.
    """
    _require_tensorflow()
    import tensorflow as tf
    import tf2onnx

    fn, input_dtype, size, _ = _static_function(model, head, input_size, fold)
    spec = [tf.TensorSpec((None, *size, 3), input_dtype, name="image")]
    tf2onnx.convert.from_function(
        tf.function(fn, input_signature=spec), spec, opset=opset, output_path=str(path),
        custom_op_handlers={"ResizeBilinear": (_onnx_resize_to_size, [])},
    )
    return path


def _onnx_resize_to_size(ctx, node, name, args):
    """tf2onnx handler: a half-pixel ``ResizeBilinear`` as an ONNX ``Resize`` given its output *size*.

    tf2onnx turns a resize to a constant size into a ``Resize`` by float32 *scales* (out / in), which ONNX Runtime
    multiplies back and floors: 5 rows x float32(18 / 5) = 17.99... -> 17, so a network run at a size that is not a
    multiple of 32 fails to load ("Incompatible dimensions" at the feature fusion's Add). This is tf2onnx's own
    run-time-size branch (`tf2onnx.onnx_opset.nn.Resize.version_11`), used for every size: the output size is exact
    and the sampling grid is TensorFlow's (in / out), not that of a rounded scale.
    """
    del name, args
    from onnx import TensorProto
    from tf2onnx import constants, utils
    from tf2onnx.onnx_opset.nn import Resize

    if not node.get_attr_value("half_pixel_centers", 0) or node.get_attr_value("align_corners", 0):
        return Resize.version_11(ctx, node)
    int64 = lambda value: ctx.make_const(utils.make_name("const"), np.array(value, np.int64)).output[0]  # noqa: E731
    empty = ctx.make_const(utils.make_name("const_empty_float"), np.array([], np.float32)).output[0]
    nchw = ctx.make_node("Transpose", [node.input[0]], {"perm": constants.NHWC_TO_NCHW})
    batch_channels = ctx.make_node("Slice", [ctx.make_node("Shape", [nchw.output[0]]).output[0], int64([0]), int64([2])])
    target = ctx.make_node("Cast", [node.input[1]], attr={"to": TensorProto.INT64})
    sizes = ctx.make_node("Concat", [batch_channels.output[0], target.output[0]], {"axis": 0})
    attr = {"mode": "linear", "nearest_mode": "floor", "coordinate_transformation_mode": "half_pixel",
            "exclude_outside": False}
    resize = ctx.make_node("Resize", [nchw.output[0], empty, empty, sizes.output[0]], attr=attr)
    shapes, dtypes = node.output_shapes, node.output_dtypes
    ctx.remove_node(node.name)
    ctx.make_node("Transpose", resize.output, {"perm": constants.NCHW_TO_NHWC}, name=node.name, outputs=node.output,
                  shapes=shapes, dtypes=dtypes)


def export(model, path, fmt, head="logits", calibration_images=None, input_size=None, fold=True):
    """Writes `model` in format `fmt` (one of `FORMATS`), run at its input scale; see the format-specific functions.

    `input_size` (h, w) is the static size of TFLite and ONNX (the SavedModel takes any size and refuses one).
    """
    if fmt == "saved_model":
        if head != "logits":
            raise ValueError("the SavedModel always carries both the labels and the probabilities signatures")
        if input_size is not None:
            raise ValueError("the SavedModel takes any input size: input_size is for tflite and onnx only")
        return export_saved_model(model, path, fold)
    if fmt in ("tflite", "tflite_int8"):
        return export_tflite(
            model, path, head, int8=fmt == "tflite_int8", calibration_images=calibration_images,
            input_size=input_size, fold=fold,
        )
    if fmt == "onnx":
        return export_onnx(model, path, head, input_size=input_size, fold=fold)
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
