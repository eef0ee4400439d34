"""The side-by-side benchmark behind `experiments/benchmark.py`: every path, mode and resolution in one process.

Paths (`PATHS`): the Keras model unfolded and folded (`contextnet_tf.fold_batch_norm`), the folded model compiled by
XLA (TensorFlow only), TFLite float32 and int8 (XNNPACK) and ONNX Runtime on our exported network. Each result
carries its fps ratio to `REFERENCE_PATH`, the folded Keras model. Timing itself is `contextnet_tf.deploy.timing`.
"""

import cv2
import keras
import numpy as np

from contextnet_tf.models import MODEL_NAMES, SegmentationModel
from contextnet_tf.deploy.timing import BURN_IN, FRAMES, environment, exported_path, keras_path, time_paths
from contextnet_tf.evaluation.prediction import read_image


PATHS = ("keras_unfolded", "keras_folded", "keras_folded_xla", "tflite", "tflite_int8", "onnxruntime")
KERAS_PATHS = ("keras_unfolded", "keras_folded")  # The paths that also run under JAX.
REFERENCE_PATH = "keras_folded"  # Ratios in the report are fps relative to this path.


def default_paths():
    """Every path the current backend can run: all of `PATHS` under TensorFlow (int8 TFLite included: on a CPU it is
    the fastest path; its calibration here is random frames, which sets its speed, not its accuracy), `KERAS_PATHS`
    under JAX."""
    if keras.backend.backend() == "tensorflow":
        return PATHS
    return KERAS_PATHS


def make_path(name, model, folded, head="cls", threads=None, calibration_images=None):
    """Builds the `Path` called `name` (one of `PATHS`) from a model and its folded twin."""
    if name == "keras_unfolded":
        return keras_path(name, model, head)
    if name == "keras_folded":
        return keras_path(name, folded, head)
    if name == "keras_folded_xla":
        if keras.backend.backend() == "jax":
            raise ValueError("keras_folded_xla is the TensorFlow XLA path; under JAX keras_folded is already XLA")
        return keras_path(name, folded, head, jit_compile=True)
    formats = {"tflite": "tflite", "tflite_int8": "tflite_int8", "onnxruntime": "onnx"}
    if name not in formats:
        raise ValueError(f"unknown path {name!r}; choose from {', '.join(PATHS)}")
    if keras.backend.backend() != "tensorflow":
        raise ValueError(f"path {name!r} converts a TensorFlow graph: run it with KERAS_BACKEND=tensorflow")
    if name == "tflite_int8" and not calibration_images:
        size = folded.input_shape[1:]
        rng = np.random.default_rng(0)
        calibration_images = [rng.uniform(0, 255, (1, *size)).astype(np.float32) for _ in range(4)]
    return exported_path(name, folded, formats[name], head, threads, calibration_images)


# The frame a benchmark times when it is given none (`benchmark_image`), as its report's ``protocol.image`` says.
NOISE = "uniform noise, seed 0"


def run_benchmark(
    models,
    paths=("keras_unfolded", "keras_folded"),
    modes=("end_to_end",),
    head="cls",
    frames=FRAMES,
    burn_in=BURN_IN,
    max_seconds=None,
    threads=None,
    log=print,
    image=None,
):
    """Times every path in every mode for each model, side by side in one process (interleaved, `time_paths`).

    Args:
        models: dict mapping a label (e.g. ``"1024x2048"``) to a Keras model built at that resolution.
        paths: names from `PATHS`; ratios are taken to `REFERENCE_PATH` when it is among them.
        modes: names from `MODES` (paths without a mode are skipped for it).
        head: ``"cls"`` or ``"prob"``.
        frames, burn_in, max_seconds: see `time_path`.
        threads: CPU threads given to TFLite and ONNX Runtime (TensorFlow's are set by `set_threads`).
        log: called with one line per finished measurement.
        image: path of the frame to time on, resized to each resolution (`benchmark_image`); None: uniform noise
            (seed 0). The ``cls`` head's last mile (`contextnet_tf.evaluation.last_mile`) interpolates only the cells
            near class boundaries, so its cost follows the prediction: on noise it times whatever boundaries the
            weights draw on noise, not what a real frame costs.

    Returns:
        dict with ``environment``, ``protocol`` (its ``image``: the path, or `NOISE`) and ``results`` (one record
        per resolution, path and mode: ``resolution``, ``path``, ``mode``, ``head``, the `time_path` fields,
        ``ratio_to_folded`` and ``boundary_share``: for the ``cls`` head, the share of 1/8-resolution cells the last
        mile interpolates on the timed frame (`last_mile.boundary_share`; None for ``prob``), so that two models'
        speeds can be told apart from their frames' content).
    """
    from contextnet_tf.deploy.folding import fold_batch_norm

    results = []
    for label, model in models.items():
        height, width = model.input_shape[1:3]
        frame = benchmark_image(image, height, width)
        folded = fold_batch_norm(model)
        share = frame_boundary_share(folded, frame) if head == "cls" else None
        built = [make_path(name, model, folded, head, threads) for name in paths]
        for mode in modes:
            for name, timing in time_paths(built, frame, mode, frames, burn_in, max_seconds).items():
                if timing is None:
                    continue
                results.append(dict(resolution=label, path=name, mode=mode, head=head, **timing,
                                    boundary_share=share))
                log(f"{label} {name:18s} {mode:11s} {timing['fps']:8.2f} fps  "
                    f"p50 {timing['latency_ms']['p50']:9.1f} ms  ({timing['frames']} frames)")
    reference = {(r["resolution"], r["mode"]): r["fps"] for r in results if r["path"] == REFERENCE_PATH}
    for record in results:
        ref = reference.get((record["resolution"], record["mode"]))
        record["ratio_to_folded"] = record["fps"] / ref if ref else None
    protocol = dict(batch=1, burn_in=burn_in, frames=frames, max_seconds=max_seconds, head=head, interleaved=True,
                    image=NOISE if image is None else image)
    return {"environment": environment(threads), "protocol": protocol, "results": results}


def frame_boundary_share(model, frame):
    """`last_mile.boundary_share` of `model`'s 1/8-resolution logits on the uint8 batch `frame` (the network's
    own float input, as the timed paths feed it); None where the frame is not exactly `last_mile.FACTOR` times the
    logits' size, the sizes `last_mile.upsample_argmax` sends down the plain path (whose cost does not depend on the
    content)."""
    from contextnet_tf.evaluation import last_mile

    logits = np.asarray(last_mile.eighth_logits_model(model)([np.asarray(frame, np.float32)], training=False))
    if tuple(frame.shape[1:3]) != (logits.shape[1] * last_mile.FACTOR, logits.shape[2] * last_mile.FACTOR):
        return None
    return last_mile.boundary_share(logits)


def benchmark_image(path, height, width):
    """The uint8 batch [1, height, width, 3] a benchmark times: the RGB image file at `path` resized to the
    resolution (bilinear), or uniform noise (seed 0) when `path` is None."""
    if path is None:
        return np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    rgb = read_image(path).astype(np.uint8)  # integer values: the cast is exact
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)[None]


def markdown_table(report):
    """The results of `run_benchmark` as a markdown table (fps, ratio to the folded Keras path, latency)."""
    lines = [
        "| resolution | path | mode | fps | x folded | latency mean (ms) | p50 (ms) | p90 (ms) | frames "
        "| boundary cells |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        ratio = "" if r["ratio_to_folded"] is None else f"{r['ratio_to_folded']:.2f}"
        latency = r["latency_ms"]
        frames = f"{r['frames']}" + (" (cut)" if r["truncated"] else "")
        share = r.get("boundary_share")
        share = "" if share is None else f"{100 * share:.1f}%"
        lines.append(
            f"| {r['resolution']} | {r['path']} | {r['mode']} | {r['fps']:.2f} | {ratio} | {latency['mean']:.1f} "
            f"| {latency['p50']:.1f} | {latency['p90']:.1f} | {frames} | {share} |"
        )
    return "\n".join(lines) + "\n"


def models_at_resolutions(model, resolutions, num_classes=19, weights=None):
    """Returns {"HxW": Keras model built at that size} for a variant name or a ``.keras`` file.

    A variant is built at each size (with `weights` if given); a ``.keras`` model is rebuilt from its own recipe at
    each static size with its weights (`SegmentationModel.rebuild`), or a clear error if it carries no recipe.
    """
    from contextnet_tf.deploy.export import load_model

    models = {}
    base = None
    for height, width in resolutions:
        label = f"{height}x{width}"
        if model in MODEL_NAMES:
            models[label] = load_model(model, (height, width, 3), num_classes, weights)
            continue
        base = base or load_model(model, weights=weights)
        if not isinstance(base, SegmentationModel):
            raise ValueError(f"{model!r} carries no recipe (not saved from build_model) and cannot be rebuilt at {label}")
        models[label] = base.rebuild(input_shape=(height, width, 3), aux=False)
    return models


INPUT_SHAPE_PATHS = ("static_graph", "any_size_model", "runtime_size_graph")


def input_shape_paths(name, height, width, num_classes=19, head="cls"):
    """Three ways to run one variant at (height, width), for `compare_input_shapes`:

    * ``static_graph``: `build_model(name, (height, width, 3))`, every size fixed when the model is built;
    * ``any_size_model``: `build_model(name)` with ``(None, None, 3)`` inputs, traced at the image's shape (what
      `Predictor`, evaluation, training and TFLite export do);
    * ``runtime_size_graph``: the same any-size model traced with unknown height and width (what the SavedModel's
      any-size signatures run: sizes and pooling matrices computed in the graph).

    All three have the same weights and compute the same labels.
    """
    import tensorflow as tf

    from contextnet_tf.deploy.export import head_function
    from contextnet_tf.models import build_model

    any_size = build_model(name, num_classes=num_classes)
    static = any_size.rebuild(input_shape=(height, width, 3))
    fn, input_dtype = head_function(any_size, head)
    runtime = keras_path("runtime_size_graph", any_size, head)
    spec = tf.TensorSpec((1, None, None, 3), input_dtype)
    runtime.compute = tf.function(fn, input_signature=[spec])
    runtime.network = tf.function(lambda x: any_size(x, training=False), input_signature=[tf.TensorSpec((1, None, None, 3))])
    return [keras_path("static_graph", static, head), keras_path("any_size_model", any_size, head), runtime]


def compare_input_shapes(names, resolutions, num_classes=19, modes=("end_to_end",), frames=FRAMES, burn_in=BURN_IN,
                         max_seconds=None, log=print):
    """Times `input_shape_paths` of each variant and resolution side by side (interleaved, one process).

    Returns the `run_benchmark` report format; ``ratio_to_folded`` holds the ratio to ``static_graph`` here.
    """
    results = []
    for name in names:
        for height, width in resolutions:
            label = f"{name} {height}x{width}"
            image = benchmark_image(None, height, width)
            paths = input_shape_paths(name, height, width, num_classes)
            for mode in modes:
                timings = time_paths(paths, image, mode, frames, burn_in, max_seconds)
                reference = timings["static_graph"]["fps"]
                for path_name, timing in timings.items():
                    results.append(dict(resolution=label, path=path_name, mode=mode, head="cls", **timing,
                                        ratio_to_folded=timing["fps"] / reference))
                    log(f"{label} {path_name:18s} {mode:11s} {timing['fps']:8.2f} fps  x{timing['fps'] / reference:.3f}")
    protocol = dict(batch=1, burn_in=burn_in, frames=frames, max_seconds=max_seconds, head="cls", interleaved=True,
                    reference="static_graph")
    return {"environment": environment(None), "protocol": protocol, "results": results}


LAST_MILE_PATHS = ("to_eighth_logits", "cls_plain", "cls_fused")


def last_mile_paths(model):
    """Three end-to-end paths of the folded `model` (uint8 host image in, result on the host), for `compare_last_mile`:

    * ``to_eighth_logits``: up to the network's 1/8-resolution logits (downloaded: they are small);
    * ``cls_plain``: labels as before issue 18, argmax of the bilinearly upsampled logits;
    * ``cls_fused``: labels from the 1/8 logits by `contextnet_tf.evaluation.last_mile` (the default now).

    The part of a frame after the 1/8 logits is ``1 - fps(cls) / fps(to_eighth_logits)``.
    """
    import tensorflow as tf

    from contextnet_tf.deploy.export import head_function
    from contextnet_tf.deploy.folding import fold_batch_norm
    from contextnet_tf.evaluation.last_mile import eighth_logits_model

    folded = fold_batch_norm(model)
    eighth = eighth_logits_model(folded)
    to_eighth = keras_path("to_eighth_logits", folded, "cls")
    to_eighth.compute = tf.function(lambda image: eighth(tf.cast(image, tf.float32), training=False))
    plain = keras_path("cls_plain", folded, "cls")
    plain.compute = tf.function(head_function(folded, "cls", last_mile="plain")[0])
    fused = keras_path("cls_fused", folded, "cls")
    fused.compute = tf.function(head_function(folded, "cls", last_mile="fused")[0])
    return [to_eighth, plain, fused]


def compare_last_mile(models, images, frames=FRAMES, burn_in=BURN_IN, max_seconds=None, log=print):
    """Times `last_mile_paths` side by side (interleaved, one process) for each model and image.

    Args:
        models: {label: Keras model built at the images' size}.
        images: {label: uint8 (1, h, w, 3)} for each model label (real frames: the fused path's work depends on how
            many 8x8 cells hold a class boundary).

    Returns:
        The `run_benchmark` report format; each record also has ``after_eighth_share`` (the part of the frame
        after the 1/8 logits, for the two cls paths) and ``ratio_to_folded`` holds the ratio to ``cls_plain``.
    """
    results = []
    for label, model in models.items():
        paths = last_mile_paths(model)
        timings = time_paths(paths, images[label], "end_to_end", frames, burn_in, max_seconds)
        eighth_ms = timings["to_eighth_logits"]["latency_ms"]["mean"]
        plain_fps = timings["cls_plain"]["fps"]
        for name, timing in timings.items():
            share = None if name == "to_eighth_logits" else 1.0 - eighth_ms / timing["latency_ms"]["mean"]
            results.append(dict(resolution=label, path=name, mode="end_to_end", head="cls", **timing,
                                ratio_to_folded=timing["fps"] / plain_fps, after_eighth_share=share))
            log(f"{label} {name:18s} {timing['fps']:8.2f} fps  p50 {timing['latency_ms']['p50']:8.1f} ms"
                + ("" if share is None else f"  after the 1/8 logits: {100 * share:.1f}%"))
    protocol = dict(batch=1, burn_in=burn_in, frames=frames, max_seconds=max_seconds, head="cls", interleaved=True,
                    reference="cls_plain")
    return {"environment": environment(None), "protocol": protocol, "results": results}


def last_mile_markdown(report):
    """`compare_last_mile`'s report as a markdown table."""
    lines = [
        "| model and size | path | fps | x plain | latency mean (ms) | p50 (ms) | after the 1/8 logits | frames |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        share = "" if r["after_eighth_share"] is None else f"{100 * r['after_eighth_share']:.1f}%"
        lines.append(f"| {r['resolution']} | {r['path']} | {r['fps']:.2f} | {r['ratio_to_folded']:.2f} | "
                     f"{r['latency_ms']['mean']:.1f} | {r['latency_ms']['p50']:.1f} | {share} | {r['frames']} |")
    return "\n".join(lines) + "\n"
