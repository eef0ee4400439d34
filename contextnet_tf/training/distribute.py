"""`tf.distribute` plumbing: the strategy from its flag name, the chief worker, synchronised batch norm."""

import keras
import tensorflow as tf


def make_strategy(name):
    """The strategy for ``default`` (one device), ``mirrored`` (local GPUs, or every local device the runtime
    lists) or ``multi_worker`` (the cluster in the TF_CONFIG environment variable; one local worker without it)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; choose default, mirrored or multi_worker")


def is_chief(strategy):
    """True on the worker that writes the run folder (always, except on non-chief multi-worker tasks)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    # Without a "chief" task, worker 0 is the chief (the MultiWorkerMirroredStrategy convention).
    return task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


def task_suffix(strategy):
    """A suffix that makes a non-chief worker's scratch paths unique (empty on the chief)."""
    if is_chief(strategy):
        return ""
    resolver = strategy.cluster_resolver
    return f"_{resolver.task_type}{resolver.task_id}"


def synchronize_batch_norm(model, enabled=True):
    """Makes every BatchNormalization layer of `model` compute its batch statistics over all replicas.

    Keras reads `BatchNormalization.synchronized` at call time (TensorFlow backend), so this works on a built
    model. With it, a step on several replicas normalises with the global batch's statistics, as one device does.
    """
    count = 0
    for layer in model.layers:
        if hasattr(layer, "layers"):
            count += synchronize_batch_norm(layer, enabled)
        elif isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = enabled
            count += 1
    return count


def local_replicas(input_context):
    """Replicas fed by one input pipeline (each step takes one per-replica batch per local replica)."""
    return input_context.num_replicas_in_sync // input_context.num_input_pipelines
