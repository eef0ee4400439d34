"""Honest end-to-end timing, the papers' protocol: batch 1, 100 burn-in frames, then 100 timed frames.

Modes (ContextNet section 4, Fast-SCNN section 4.1):

* ``end_to_end``: a uint8 host image in; host-to-device copy, the network, argmax (``cls``) or softmax (``prob``) at
  full resolution, device-to-host copy of the result. This is what a user gets and what the ContextNet paper times.
* ``network``: the network alone (float32 input already on the device, logits left there; synchronised).
* ``pipelined``: the copy of frame i+1 to the device and of frame i-1 back overlap the compute of frame i (threads),
  so fps is the throughput of a stream; latency is still per frame, from upload start to result on the host.

`time_paths` times several paths interleaved frame by frame, so load from other work on a shared machine hits them
alike and their ratios stay honest.

A *path* is one way to run the model: a Keras model under TensorFlow (graph or XLA-compiled) or JAX (always XLA),
TFLite (XNNPACK) or ONNX Runtime on our exported network. TFLite and ONNX Runtime take host arrays, so they only
have the ``end_to_end`` mode. Every path computes the same thing: uint8 image -> bilinear logits at full resolution
-> argmax / softmax, exactly what the model and its exports do (no argmax at 1/8 resolution before upsampling, which
would be a different prediction). The TensorFlow ``cls`` paths take the labels from the 1/8 logits by
`contextnet_tf.evaluation.last_mile` (the same labels, without the full-resolution logits); the JAX path keeps
the plain argmax (the fused path's cell count is data-dependent, which `jax.jit` cannot trace).
"""

import concurrent.futures
import dataclasses
import os
import tempfile
import time
from typing import Callable, Optional

import keras
import numpy as np

from contextnet_tf.environment import environment  # noqa: F401  (the benchmark record; re-exported)
from contextnet_tf.models import logits_only

MODES = ("end_to_end", "network", "pipelined")
HEADS = ("cls", "prob")
BURN_IN = 100  # Fast-SCNN section 4.1: "100 frames for burn-in and ... average of 100 frames".
FRAMES = 100


@dataclasses.dataclass
class Path:
    """One way to run a model. `upload`: host uint8 -> device; `compute`: device image -> device head output;
    `download`: -> host numpy. `network` (device float32 image -> device logits) and `sync` are None where the
    runtime only takes host arrays (TFLite, ONNX Runtime)."""

    name: str
    upload: Callable
    compute: Callable
    download: Callable
    network: Optional[Callable] = None
    sync: Optional[Callable] = None


def keras_path(name, model, head="cls", jit_compile=False):
    """A `Path` running a Keras model on the current backend (TensorFlow graph or XLA; JAX: always XLA)."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    model = logits_only(model)
    if keras.backend.backend() == "jax":
        return _jax_path(name, model, head)
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"timing supports the tensorflow and jax backends, not {keras.backend.backend()!r}")
    import tensorflow as tf

    from contextnet_tf.deploy.export import head_function

    fn, _ = head_function(model, head)
    device = "/GPU:0" if tf.config.list_logical_devices("GPU") else "/CPU:0"

    def upload(image):
        with tf.device(device):
            return tf.identity(tf.constant(image))  # The host-to-device copy happens here, not inside compute.

    return Path(
        name=name,
        upload=upload,
        compute=tf.function(fn, jit_compile=jit_compile),
        download=lambda y: y.numpy(),
        network=tf.function(lambda x: model(x, training=False), jit_compile=jit_compile),
        sync=lambda y: tf.test.experimental.sync_devices(),
    )


def _jax_path(name, model, head):
    import jax
    import jax.numpy as jnp

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def logits(x):
        out, _ = model.stateless_call(trainable, non_trainable, x.astype(jnp.float32), training=False)
        return out

    def head_fn(x):
        out = logits(x)
        if head == "cls":
            return jnp.argmax(out, axis=-1).astype(jnp.uint8)
        return jax.nn.softmax(out, axis=-1)

    return Path(
        name=name,
        upload=jax.device_put,
        compute=jax.jit(head_fn),
        download=np.asarray,
        network=jax.jit(logits),
        sync=lambda y: y.block_until_ready(),
    )


def exported_path(name, model, fmt, head="cls", num_threads=None, calibration_images=None):
    """A `Path` running `model` exported to ``tflite``, ``tflite_int8`` or ``onnx`` (written to a temporary file)."""
    from contextnet_tf.deploy import export
    from contextnet_tf.deploy import export_check

    suffix = ".onnx" if fmt == "onnx" else ".tflite"
    with tempfile.TemporaryDirectory() as tmp:
        file = os.path.join(tmp, "model" + suffix)
        export.export(model, file, fmt, head, calibration_images=calibration_images)
        if fmt == "onnx":
            run = export_check.onnx_runner(file, num_threads)
        else:
            with open(file, "rb") as f:
                run = export_check.tflite_runner(f.read(), num_threads)
    identity = lambda x: x  # noqa: E731  (host arrays in and out: nothing to copy)
    return Path(name=name, upload=identity, compute=run, download=identity)


def time_path(path, image, mode="end_to_end", frames=FRAMES, burn_in=BURN_IN, max_seconds=None):
    """Times `path` on one uint8 host image (1, h, w, 3) by the papers' protocol.

    Args:
        path: a `Path`.
        image: uint8 numpy array (1, h, w, 3).
        mode: one of `MODES`.
        frames: timed frames.
        burn_in: untimed frames first (compilation, caches, thread pools).
        max_seconds: optional budget for the path's own burn-in (less the first, compiling frame) plus timed frames:
            a path too slow for the full protocol (XLA on CPU at 1024x2048) stops early, after at least 1 burn-in and
            3 timed frames, and says how many it ran.

    Returns:
        dict: ``fps``, ``latency_ms`` {mean, p50, p90}, ``frames``, ``burn_in`` (frames actually run) and
        ``truncated`` (the budget cut the protocol short); None if the path lacks the mode. fps is 1000 / mean
        latency, except in ``pipelined`` mode where it is timed frames / wall time (the stream's throughput).
    """
    return time_paths([path], image, mode, frames, burn_in, max_seconds)[path.name]


def time_paths(paths, image, mode="end_to_end", frames=FRAMES, burn_in=BURN_IN, max_seconds=None):
    """Times several paths side by side, interleaved frame by frame (round robin), by the protocol of `time_path`.

    On a machine shared with other work, the load drifts over minutes; interleaving gives every path the same share
    of it, so their ratios stay honest even when the absolute numbers do not. ``pipelined`` streams cannot be
    interleaved and run one path after the other.

    Returns:
        {path name: `time_path` result or None}.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    results = {path.name: None for path in paths}
    paths = [path for path in paths if mode == "end_to_end" or path.network is not None]
    if mode == "pipelined":
        for path in paths:
            warm, spent = _burn_in(_step(path, image, "end_to_end"), burn_in, max_seconds)
            deadline = None if max_seconds is None else time.perf_counter() + max(0.0, max_seconds - spent)
            latencies, wall = _pipelined(path, image, frames, deadline)
            results[path.name] = _summary(latencies, len(latencies) / wall, warm, burn_in, frames)
        return results

    steps = {path.name: _step(path, image, mode) for path in paths}
    spent = dict.fromkeys(steps, 0.0)
    warm = dict.fromkeys(steps, 0)
    latencies = {name: [] for name in steps}
    for _ in range(burn_in):
        for name in [n for n in steps if warm[n] == 0 or not _over(spent[n], max_seconds)]:
            seconds = _timed(steps[name])
            spent[name] += seconds if warm[name] else 0.0  # The first frame traces and compiles: not budgeted.
            warm[name] += 1
    for _ in range(frames):
        for name in [n for n in steps if len(latencies[n]) < 3 or not _over(spent[n], max_seconds)]:
            seconds = _timed(steps[name])
            spent[name] += seconds
            latencies[name].append(seconds)
    for name in steps:
        mean = float(np.mean(latencies[name]))
        results[name] = _summary(latencies[name], 1.0 / mean, warm[name], burn_in, frames)
    return results


def _step(path, image, mode):
    if mode == "network":
        device_image = path.upload(image.astype(np.float32))
        return lambda: path.sync(path.network(device_image))
    return lambda: path.download(path.compute(path.upload(image)))


def _timed(step):
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def _over(spent, max_seconds):
    return max_seconds is not None and spent > max_seconds


def _burn_in(step, burn_in, max_seconds):
    warm, spent = 0, 0.0
    while warm < burn_in and not (warm >= 1 and _over(spent, max_seconds)):
        seconds = _timed(step)
        spent += seconds if warm else 0.0  # As in `time_paths`: compilation is not budgeted.
        warm += 1
    return warm, spent


def _summary(latencies, fps, warm, burn_in, frames):
    milliseconds = np.asarray(latencies) * 1000.0
    return {
        "fps": float(fps),
        "latency_ms": {
            "mean": float(milliseconds.mean()),
            "p50": float(np.percentile(milliseconds, 50)),
            "p90": float(np.percentile(milliseconds, 90)),
        },
        "frames": int(len(milliseconds)),
        "burn_in": int(warm),
        "truncated": bool(len(milliseconds) < frames or warm < burn_in),
    }


def _past(deadline):
    return deadline is not None and time.perf_counter() > deadline


def _pipelined(path, image, frames, deadline):
    """Frame i computes on this thread while frame i+1 uploads and frame i-1 downloads on two others."""
    latencies = []
    with concurrent.futures.ThreadPoolExecutor(1) as uploads, concurrent.futures.ThreadPoolExecutor(1) as downloads:

        def upload():
            t0 = time.perf_counter()
            return t0, path.upload(image)

        def download(t0, result):
            path.download(result)
            latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        pending_upload = uploads.submit(upload)
        pending_downloads = []
        for i in range(frames):
            t0, device_image = pending_upload.result()
            last = i == frames - 1 or (i >= 2 and _past(deadline))
            if not last:
                pending_upload = uploads.submit(upload)
            pending_downloads.append(downloads.submit(download, t0, path.compute(device_image)))
            if last:
                break
        for future in pending_downloads:
            future.result()
        wall = time.perf_counter() - start
    return latencies, wall


def set_threads(threads):
    """Limits TensorFlow's CPU thread pools to `threads` (intra-op) and 1 (inter-op); call before any TF op."""
    if keras.backend.backend() != "tensorflow" or not threads:
        return
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
