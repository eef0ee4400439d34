"""Checks an exported artifact: reload it in a fresh process, run it, compare with the Keras model.

A fresh process proves that the artifact stands alone (no Python object of this session is needed to load it) and
that the custom layers were fully converted. References come from the Keras model in this process; for the
SavedModel's any-size signatures the resizing is done independently with OpenCV (bilinear, half-pixel centres, the
same convention as `tf.image.resize`), so the check covers the signature's semantics, not only its serialisation.

Tolerances (absolute, float32): SavedModel and ONNX 1e-4, TFLite float 1e-3; int8 reports label agreement.
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

TOLERANCES = {"saved_model": 1e-4, "onnx": 1e-4, "tflite": 1e-3, "tflite_int8": None}
CLS_AGREEMENT = 0.999  # A float "cls" export may differ from Keras only at near-ties of the logits.


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


def _resize(array, height, width):
    """Bilinear resize of an (h, w, c) float32 array with half-pixel centres (OpenCV, channel blocks of 4)."""
    if array.shape[:2] == (height, width):
        return array
    blocks = [
        cv2.resize(array[..., i : i + 4], (width, height), interpolation=cv2.INTER_LINEAR)
        for i in range(0, array.shape[-1], 4)
    ]
    return np.concatenate([b.reshape(height, width, -1) for b in blocks], axis=-1)


def _softmax(logits):
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def verify_export(model, path, fmt, images, head="logits"):
    """Reloads an export in a fresh process and compares its outputs with the Keras model's.

    Args:
        model: the Keras model that was exported (its logits are compared).
        path: the artifact.
        fmt: one of ``saved_model``, ``tflite``, ``tflite_int8``, ``onnx``.
        images: uint8 RGB images (1, h, w, 3). Any size for a SavedModel; TFLite and ONNX resize them to the
            model's size first (with OpenCV), as they take only that size.
        head: the head the TFLite / ONNX artifact was exported with (``logits``, ``cls`` or ``prob``).

    Returns:
        A JSON-ready report: ``format``, ``head``, ``max_abs_diff`` (of logits or probabilities, None for ``cls``),
        ``tolerance``, ``label_agreement`` (fraction of pixels whose argmax matches the Keras model's), ``passed``
        (max_abs_diff within tolerance; a float ``cls`` export needs `CLS_AGREEMENT`; int8 is always True: its
        agreement is reported, not judged).
    """
    from contextnet_tf.deploy.export import check_image  # Imported here: the fresh process (`_main`) needs only runtimes.
    from contextnet_tf.deploy.folding import logits_only

    model = logits_only(model)
    height, width = model.input_shape[1:3]
    images = [check_image(image, name=f"check image {i}") for i, image in enumerate(images)]
    if fmt != "saved_model":
        images = [_resize(image[0].astype(np.float32), height, width)[None] for image in images]
        images = [np.clip(np.round(image), 0, 255).astype(np.uint8) for image in images]
    float_input = head == "logits" and fmt in ("tflite", "onnx")  # int8 and the uint8 heads take uint8.
    feeds = [image.astype(np.float32) if float_input else image for image in images]
    outputs = run_in_fresh_process(path, fmt, feeds)

    diffs, agreements = [], []
    for image, output in zip(images, outputs):
        size = image.shape[1:3]
        resized = _resize(image[0].astype(np.float32), height, width)[None]
        logits = np.asarray(model(resized, training=False))[0]
        logits = _resize(logits, *size)
        reference_labels = logits.argmax(-1)
        if fmt == "saved_model":
            diffs.append(np.abs(output["probabilities"][0] - _softmax(logits)).max())
            labels = output["labels"][0]
        elif head == "cls":
            labels = output["output"][0]
        else:
            reference = logits if head == "logits" else _softmax(logits)
            diffs.append(np.abs(output["output"][0] - reference).max())
            labels = output["output"][0].argmax(-1)
        agreements.append(float(np.mean(labels == reference_labels)))

    tolerance = TOLERANCES[fmt]
    max_diff = float(max(diffs)) if diffs else None
    agreement = float(np.mean(agreements))
    if tolerance is None:
        passed = True
    elif max_diff is None:  # A float "cls" export: only labels to compare.
        passed = agreement >= CLS_AGREEMENT
    else:
        passed = max_diff <= tolerance
    return {
        "format": fmt,
        "head": head,
        "path": str(path),
        "images": [list(image.shape[1:3]) for image in images],
        "max_abs_diff": max_diff,
        "tolerance": tolerance,
        "label_agreement": agreement,
        "passed": bool(passed),
    }


def format_report(report):
    """One JSON line for a verification report."""
    return json.dumps(report, sort_keys=True)


def check_images(model, fmt, pattern=None, count=4, seed=0):
    """Images for `verify_export`: up to `count` files matching the glob `pattern` (RGB uint8, their own size), or
    random uint8 images at the model's size; a SavedModel check adds the odd sizes 37x53 and 1000x1500."""
    from contextnet_tf.deploy.folding import logits_only

    height, width = logits_only(model).input_shape[1:3]
    rng = np.random.default_rng(seed)
    if pattern:
        paths = sorted(glob.glob(pattern))[:count]
        if not paths:
            raise FileNotFoundError(f"no check image matches {pattern!r}")
        images = []
        for path in paths:
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"check file {path!r} is not a readable image")
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[None])
    else:
        images = [rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8) for _ in range(count)]
    if fmt == "saved_model":
        images += [rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8) for h, w in ((37, 53), (1000, 1500))]
    return images
