"""The machine and software record written beside every measurement (benchmarks, training speed, reports).

It imports nothing from the package, so every layer (data, training, deploy, reports) may use it.
"""

import importlib.metadata
import os
import platform

PACKAGES = ("keras", "numpy", "tensorflow", "jax", "jaxlib", "onnxruntime", "tf2onnx", "onnx", "torch")


def environment(threads=None):
    """Device, software versions, thread settings and load of this process.

    Args:
        threads: the CPU threads a benchmark was asked to use (recorded as given).

    Returns:
        dict: ``backend``, ``platform``, ``cpu`` (model name), ``cpu_count``, ``threads``, ``python``, ``versions``
        ({package: version} of the installed `PACKAGES`), ``device`` (GPU name or ``CPU``), ``load_average`` (1, 5
        and 15 minutes, or None where the OS has none) and, under TensorFlow, its intra- and inter-op thread counts
        and ``onednn`` (`onednn_enabled`) and ``tf_remapping`` (Grappler's conv + bias + activation fusion; the
        package turns it off where oneDNN is on).
    """
    import keras

    info = {
        "backend": keras.backend.backend(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        "versions": {},
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    for package in PACKAGES:
        try:
            info["versions"][package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    if keras.backend.backend() == "jax":
        import jax

        info["device"] = str(jax.devices()[0].device_kind)
    else:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        details = tf.config.experimental.get_device_details(gpus[0]) if gpus else {}
        info["device"] = details.get("device_name", "GPU") if gpus else "CPU"
        info["tf_intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
        info["tf_inter_op_threads"] = tf.config.threading.get_inter_op_parallelism_threads()
        info["onednn"] = onednn_enabled()
        info["tf_remapping"] = tf.config.optimizer.get_experimental_options().get("remapping", True)
    return info


def onednn_enabled():
    """Whether this process's TensorFlow runs its CPU kernels through oneDNN (``TF_ENABLE_ONEDNN_OPTS``, read when
    TensorFlow is imported; TensorFlow's own default depends on the CPU), or None where it cannot tell."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def describe(info):
    """One line naming the machine of an `environment` record: device, CPU, cores, TensorFlow / Keras versions."""
    versions = info.get("versions", {})
    device = "" if info.get("device") in (None, "CPU") else f"{info['device']}, "
    onednn = {True: ", oneDNN on", False: ", oneDNN off"}.get(info.get("onednn"), "")
    if info.get("onednn") and info.get("tf_remapping") is False:
        onednn += " (remapping off)"
    return (f"{device}{info['cpu']} ({info['cpu_count']} cores), TensorFlow {versions.get('tensorflow')}, "
            f"Keras {versions.get('keras')}{onednn}")


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
