"""Checks an exported artifact: reload it in a fresh process, run it, compare with `Predictor` on the Keras model.

A fresh process proves that the artifact stands alone (no Python object of this session is needed to load it) and
that the custom layers were fully converted. The references come from the Keras model in this process, run the way
it is measured (`contextnet_tf.evaluation.prediction.Predictor`, at the model's input scale), so the check covers
the export's semantics (the resize to the input scale and back, the argmax), not only its serialisation.

Tolerance, relative to the scale of the logits (`tolerance`): an output may differ from the reference by at most
``RTOL[fmt] * max|logit| + ATOL``, where ``max|logit|`` is the largest absolute logit the Keras network gives on the
check images. Folding the batch norms and another runtime's kernels reorder float32 sums, and float32 round-off
grows with the magnitude of what is summed, so an absolute tolerance fails a correct export of a model with large
logits (the published Fast-SCNN: 1.03e-4 against 1e-4) and passes a wrong export of a model with tiny ones (a random
network). Probabilities are held to the same number (a logit error d moves a softmax probability by at most d / 2).

Labels must agree on every pixel whose reference is decisive: the top two scores (logits, or probabilities where the
model runs at a scale != 1) differ by more than twice the tolerance, so no error within the tolerance can swap them.
Pixels closer to a tie are reported in ``label_agreement`` but not judged. int8 reports label agreement only.
See docs/export.md for the numbers measured on the published models.
"""

import glob
import json
import os
import subprocess
import sys
import tempfile
import warnings

import cv2
import numpy as np

RTOL = {"saved_model": 1e-5, "onnx": 1e-5, "tflite": 1e-4, "tflite_int8": None}
ATOL = 1e-5  # The floor, for a network whose logits are all near 0.
ODD_SIZES = ((37, 53), (517, 333))  # SavedModel checks: a small odd size and a portrait (taller than wide) one.
FALLBACK_CHECK_SIZE = (240, 320)  # Random SavedModel check images of a model with no dataset or static size.


def run_artifact(path, fmt, images, num_threads=None):
    """Runs an exported artifact on each image, in this process, without Keras.

    Args:
        path: the artifact (SavedModel directory, ``.tflite`` or ``.onnx`` file).
        fmt: ``"saved_model"``, ``"tflite"``, ``"tflite_int8"`` or ``"onnx"``.
        images: list of (1, h, w, 3) arrays of the artifact's input dtype.
        num_threads: CPU threads for TFLite / ONNX Runtime (None: the runtime's default).

    Returns:
        A list (one entry per image) of dicts of numpy outputs: ``labels`` and ``probabilities`` for a SavedModel,
        ``output`` for TFLite and ONNX.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"exported artifact {path!r} does not exist")
    if fmt == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(path)
        serve, probabilities = loaded.signatures["serving_default"], loaded.signatures["probabilities"]
        return [
            {
                "labels": serve(image=tf.constant(image))["labels"].numpy(),
                "probabilities": probabilities(image=tf.constant(image))["probabilities"].numpy(),
            }
            for image in images
        ]
    if fmt in ("tflite", "tflite_int8"):
        run = tflite_runner(path, num_threads)
        return [{"output": run(image)} for image in images]
    if fmt == "onnx":
        run = onnx_runner(path, num_threads)
        return [{"output": run(image)} for image in images]
    raise ValueError(f"unknown format {fmt!r}")


def tflite_runner(path_or_content, num_threads=None):
    """Returns ``run(image) -> output`` for a TFLite model (file path or bytes), batch 1, CPU (XNNPACK)."""
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice in favour of ai-edge-litert.
        if isinstance(path_or_content, bytes):
            interpreter = tf.lite.Interpreter(model_content=path_or_content, num_threads=num_threads)
        else:
            interpreter = tf.lite.Interpreter(model_path=path_or_content, num_threads=num_threads)
    interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()

    def run(image):
        if image.shape != tuple(source["shape"]) or image.dtype != source["dtype"]:
            raise ValueError(
                f"TFLite model takes {source['dtype'].__name__} {tuple(source['shape'])}, got {image.dtype} "
                f"{image.shape}"
            )
        interpreter.set_tensor(source["index"], image)
        interpreter.invoke()
        return interpreter.get_tensor(target["index"])

    return run


def onnx_runner(path, num_threads=None):
    """Returns ``run(image) -> output`` for an ONNX model on ONNX Runtime's CPU provider."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda image: session.run(None, {name: image})[0]


def run_in_fresh_process(path, fmt, images):
    """`run_artifact` in a new Python process (the artifact alone, nothing shared with this session)."""
    with tempfile.TemporaryDirectory() as tmp:
        source, target = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(source, *images)
        code = "import sys; from contextnet_tf.deploy.export_check import _main; _main(*sys.argv[1:])"
        result = subprocess.run(
            [sys.executable, "-c", code, path, fmt, source, target], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"reloading {path!r} ({fmt}) in a fresh process failed:\n{result.stderr[-3000:]}")
        with np.load(target) as data:
            outputs = [{} for _ in images]
            for key in data.files:
                index, name = key.split("/", 1)
                outputs[int(index)][name] = data[key]
    return outputs


def _main(path, fmt, source, target):
    with np.load(source) as data:
        images = [data[f"arr_{i}"] for i in range(len(data.files))]
    outputs = run_artifact(path, fmt, images)
    np.savez(target, **{f"{i}/{name}": value for i, out in enumerate(outputs) for name, value in out.items()})


def _softmax(logits):
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def _margin(scores):
    """The difference between the largest and the second largest score of each pixel."""
    top2 = np.partition(scores, -2, axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0]


class Reference:
    """What the export of `model` must give, from the Keras model run as it is measured.

    Args:
        model: the exported model (a `SegmentationModel`, or a plain Keras model run at scale 1).
    """

    def __init__(self, model):
        from contextnet_tf.deploy.export import input_scale
        from contextnet_tf.evaluation.prediction import Predictor
        from contextnet_tf.models import SegmentationModel, logits_only

        self.scale = input_scale(model)
        self.predictor = Predictor(model)
        static = any(d is not None for d in model.input_shape[1:3])
        if isinstance(model, SegmentationModel) and (static or model.aux):
            model = model.rebuild(input_shape=(None, None, 3), aux=False)
        self.network = logits_only(model)

    def __call__(self, image, head):
        """(output, scores, max_abs_logit) for the uint8 `image` (1, h, w, 3) and the artifact's `head`.

        ``output``: the reference of the numeric output (``logits``: the logits at (h, w), resized back bilinearly
        at a scale != 1; ``prob``: `Predictor`'s probabilities; ``cls``: None). ``scores``: the (h, w, classes)
        array whose argmax the labels must be (`Predictor`'s logits at scale 1, else its probabilities; for the
        logits head, its own output). ``max_abs_logit``: the largest absolute logit of the network on `image`.
        """
        import tensorflow as tf

        from contextnet_tf.evaluation.prediction import scaled_size

        x = tf.constant(image.astype(np.float32))
        size = image.shape[1:3]
        if self.scale != 1.0:
            x = tf.image.resize(x, scaled_size(*size, self.scale), method="bilinear")
        logits = self.network(x, training=False)
        max_abs_logit = float(np.abs(np.asarray(logits)).max())
        if head == "logits":
            at_size = logits if self.scale == 1.0 else tf.image.resize(logits, size, method="bilinear")
            at_size = np.asarray(at_size)[0]
            return at_size, at_size, max_abs_logit
        scores = np.asarray(self.predictor.logits_or_probabilities(image.astype(np.float32)))[0]
        probabilities = _softmax(scores) if self.scale == 1.0 else scores
        return (probabilities if head == "prob" else None), scores, max_abs_logit


def tolerance(fmt, max_abs_logit):
    """The largest difference an export may show: ``RTOL[fmt] * max_abs_logit + ATOL`` (None for int8)."""
    if RTOL[fmt] is None:
        return None
    return RTOL[fmt] * max_abs_logit + ATOL


def verify_export(model, path, fmt, images, head="logits"):
    """Reloads an export in a fresh process and compares its outputs with the Keras model run by `Predictor`.

    Args:
        model: the model that was exported (not a folded copy: the reference is the model as it is measured).
        path: the artifact.
        fmt: one of ``saved_model``, ``tflite``, ``tflite_int8``, ``onnx``.
        images: uint8 RGB images (1, h, w, 3): any size for a SavedModel, the export's input size for TFLite and
            ONNX (`check_images` makes both).
        head: the head the TFLite / ONNX artifact was exported with (``logits``, ``cls`` or ``prob``).

    Returns:
        A JSON-ready report: ``format``, ``head``, ``input_scale``, ``images`` (sizes), ``max_abs_logit``,
        ``max_abs_diff`` (of the logits or probabilities, None for ``cls``), ``tolerance``, ``label_agreement``
        (fraction of pixels whose label equals the reference's), ``decisive_pixels`` and
        ``decisive_disagreements`` (pixels whose reference top two scores differ by more than twice the tolerance,
        and how many of them have another label), ``passed`` (max_abs_diff within the tolerance and no decisive
        disagreement; int8 is always True: its agreement is reported, not judged).
    """
    from contextnet_tf.deploy.export import check_image, input_scale  # Here: the fresh process needs only runtimes.

    images = [check_image(image, name=f"check image {i}") for i, image in enumerate(images)]
    float_input = head == "logits" and fmt in ("tflite", "onnx")  # int8 and the uint8 heads take uint8.
    outputs = run_in_fresh_process(path, fmt, [image.astype(np.float32) if float_input else image for image in images])

    reference = Reference(model)
    references = [reference(image, "prob" if fmt == "saved_model" else head) for image in images]
    max_abs_logit = max(r[2] for r in references)
    tol = tolerance(fmt, max_abs_logit)
    diffs, agree, decisive, wrong = [], 0, 0, 0
    for (expected, scores, _), output in zip(references, outputs):
        if fmt == "saved_model":
            numeric, labels = output["probabilities"][0], output["labels"][0]
        elif head == "cls":
            numeric, labels = None, output["output"][0]
        else:
            numeric = output["output"][0]
            labels = numeric.argmax(-1)
        if numeric is not None:
            diffs.append(float(np.abs(numeric - expected).max()))
        same = labels == scores.argmax(-1)
        agree += int(same.sum())
        sure = _margin(scores) > 2 * tol if tol is not None else np.ones(same.shape, bool)
        decisive += int(sure.sum())
        wrong += int((sure & ~same).sum())
    max_diff = max(diffs) if diffs else None
    if tol is None:
        passed = True
    else:
        passed = wrong == 0 and (max_diff is None or max_diff <= tol)
    pixels = sum(image.shape[1] * image.shape[2] for image in images)
    return {
        "format": fmt,
        "head": head,
        "path": str(path),
        "input_scale": input_scale(model),
        "images": [list(image.shape[1:3]) for image in images],
        "max_abs_logit": max_abs_logit,
        "max_abs_diff": max_diff,
        "tolerance": tol,
        "label_agreement": agree / pixels,
        "decisive_pixels": decisive,
        "decisive_disagreements": wrong,
        "passed": bool(passed),
    }


def format_report(report):
    """One JSON line for a verification report."""
    return json.dumps(report, sort_keys=True)


def check_images(model, fmt, pattern=None, count=4, seed=0, input_size=None):
    """uint8 (1, h, w, 3) images for `verify_export`.

    Args:
        model: the exported model.
        fmt: the export's format.
        pattern: a glob of image files (real images: up to `count`); None for `count` random images.
        count, seed: how many images, and the seed of the random ones.
        input_size: the (h, w) of a TFLite / ONNX export (default `export.default_input_size`, as the export).

    Returns:
        For a SavedModel: the files at their own size (or random images at the model's native frame size, else
        `FALLBACK_CHECK_SIZE`), plus random images at `ODD_SIZES`. For TFLite / ONNX: the files resized to the
        export's input size with OpenCV (bilinear), or random images of that size.
    """
    from contextnet_tf.deploy.export import default_input_size

    rng = np.random.default_rng(seed)
    if fmt == "saved_model":
        size = None
        try:
            size = input_size or default_input_size(model)
        except ValueError:
            size = FALLBACK_CHECK_SIZE
    else:
        size = tuple(input_size) if input_size else default_input_size(model)
    if pattern:
        paths = sorted(glob.glob(pattern))[:count]
        if not paths:
            raise FileNotFoundError(f"no check image matches {pattern!r}")
        images = []
        for path in paths:
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"check file {path!r} is not a readable image")
            if fmt != "saved_model" and bgr.shape[:2] != tuple(size):
                bgr = cv2.resize(bgr, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[None])
    else:
        images = [rng.integers(0, 256, (1, *size, 3), dtype=np.uint8) for _ in range(count)]
    if fmt == "saved_model":
        images += [rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8) for h, w in ODD_SIZES]
    return images


def evaluate_export(path, fmt, dataset, data_dir, split, input_size, max_images=None, num_threads=None, log=None):
    """The metrics (`evaluation.metrics.metrics_from_confusion`) of a TFLite or ONNX ``cls`` export on a split.

    Each frame is resized to the export's static `input_size` (h, w) (bilinear), run, and its labels brought back to
    the label file's size by nearest neighbour (a no-op for CamVid at its native 360x480).

    Args:
        path: the exported file; fmt: ``tflite``, ``tflite_int8`` or ``onnx``.
        dataset, data_dir, split: the frames and labels (`data.list_examples`).
        input_size: the export's (h, w).
        max_images: evaluate at most this many frames (evenly spread); None for all.
        log: optional callable given a progress line every 25 frames.
    """
    from contextnet_tf import data
    from contextnet_tf.evaluation import metrics as metrics_lib

    run = onnx_runner(path, num_threads) if fmt == "onnx" else tflite_runner(path, num_threads)
    info = data.get_info(dataset)
    table = data.id_to_train_id(dataset)
    examples = data.list_examples(dataset, data_dir, split)
    if max_images is not None and max_images < len(examples):
        picks = np.unique(np.linspace(0, len(examples) - 1, max_images).round().astype(int))
        examples = [examples[i] for i in picks]
    height, width = input_size
    matrix = np.zeros((info.num_classes, info.num_classes), np.int64)
    for index, (image_path, label_path) in enumerate(examples, 1):
        bgr = cv2.imread(image_path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{image_path}: not a readable image")
        rgb = cv2.cvtColor(cv2.resize(bgr, (width, height), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
        labels = np.asarray(run(rgb[None].astype(np.uint8)))[0]
        if labels.ndim == 3:  # a logits or prob export: its argmax
            labels = labels.argmax(-1)
        truth = data.read_train_ids(dataset, label_path, table)
        if labels.shape != truth.shape:
            labels = cv2.resize(labels.astype(np.uint8), truth.shape[::-1], interpolation=cv2.INTER_NEAREST)
        matrix += metrics_lib.confusion_matrix(truth, labels, info.num_classes, info.ignore_label)
        if log is not None and (index % 25 == 0 or index == len(examples)):
            log(f"{index}/{len(examples)} frames")
    result = metrics_lib.metrics_from_confusion(matrix, info)
    result.update(num_images=len(examples), split=split, export=os.path.abspath(path), format=fmt)
    return result
