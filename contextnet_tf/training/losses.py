"""Training losses: cross-entropy that skips ignored pixels, 0.4-weighted auxiliary losses, L2 on conv kernels.

Scaling across replicas: every replica divides its summed pixel losses by the number of valid (not ignored) pixels
of the *global* batch, found with an all-reduce, and adds 1/replicas of the L2 term. The optimiser sums gradients
over replicas, so the step equals the one-device step on the global batch: mean cross-entropy over all valid pixels
of the global batch, plus the L2 term once.

L2 follows TF-slim's `l2_regularizer`, as the papers' MobileNetV2 lineage does: ``weight_decay * sum(w ** 2) / 2``
over the kernels of `keras.layers.Conv2D` (and `Dense`) layers. Depthwise kernels (`keras.layers.DepthwiseConv2D`,
a separate Keras class), biases and batch-norm parameters are not regularised (ContextNet 3.1, Fast-SCNN 3.1).

Class weighting is not in either paper and is off by default (``class_weighting="none"``). It is offered for small
datasets with rare thin classes (CamVid's pole, sign, pedestrian), where SegNet and ENet use it: `class_weights`
computes SegNet's median frequency balancing or ENet's ``1 / ln(1.02 + p)`` from the training labels.
"""

import keras
import numpy as np
import tensorflow as tf

from contextnet_tf.training.config import CLASS_WEIGHTINGS

LOGITS = "logits"


def masked_cross_entropy(labels, logits, ignore_label=255, class_weights=None):
    """Summed softmax cross-entropy over pixels whose label is not `ignore_label`, optionally class-weighted.

    Args:
        labels: int tensor [B, H, W] of train ids, `ignore_label` where unlabelled.
        logits: float tensor [B, H, W, C].
        ignore_label: label value to skip.
        class_weights: optional float [C]; each pixel's loss is multiplied by its true class's weight, and the
            returned count is the sum of those weights (PyTorch's weighted-mean convention), so uniform weights give
            the unweighted mean.

    Returns:
        (loss_sum, valid_count): float32 scalars; the mean is ``loss_sum / valid_count``.
    """
    labels = tf.cast(labels, tf.int32)
    valid = tf.not_equal(labels, ignore_label)
    safe_labels = tf.where(valid, labels, tf.zeros_like(labels))
    pixel_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_labels, logits=tf.cast(logits, tf.float32))
    weights = tf.cast(valid, tf.float32)
    if class_weights is not None:
        weights *= tf.gather(tf.constant(class_weights, tf.float32), safe_labels)
    pixel_loss = tf.where(valid, pixel_loss * weights, tf.zeros_like(pixel_loss))
    return tf.reduce_sum(pixel_loss), tf.reduce_sum(weights)


def _iter_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _iter_layers(layer)
        else:
            yield layer


def l2_regularized_variables(model):
    """The variables the papers' L2 applies to: kernels of Conv2D and Dense layers, not depthwise kernels.

    Selection is by layer type (`keras.layers.DepthwiseConv2D` is not a `Conv2D`), not by name.
    """
    variables = []
    for layer in _iter_layers(model):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            continue
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense):
            variables.append(layer.kernel)
    return variables


def l2_loss(variables, weight_decay):
    """``weight_decay * sum(w ** 2) / 2`` over `variables` (TF-slim's `l2_regularizer`), a float32 scalar."""
    if not variables or weight_decay == 0:
        return tf.constant(0.0, tf.float32)
    return weight_decay * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in variables])


def segmentation_losses(outputs, labels, *, ignore_label=255, aux_weight=0.4, l2_variables=(), weight_decay=0.0,
                        class_weights=None):
    """The training loss of one replica and its parts.

    Args:
        outputs: the model's logits [B, H, W, C], or its dict ``{"logits", <aux name>: logits, ...}``.
        labels: int tensor [B, H, W].
        ignore_label: label value skipped by every cross-entropy.
        aux_weight: weight of each auxiliary cross-entropy.
        l2_variables: variables of the L2 term (`l2_regularized_variables`).
        weight_decay: L2 factor.
        class_weights: optional per-class weights of every cross-entropy (see `masked_cross_entropy`).

    Returns:
        Dict of float32 scalars, already scaled for summation over replicas (see the module docstring):
        ``loss`` (what to differentiate), ``ce`` (main cross-entropy), ``l2``, and one entry per auxiliary head
        with its unweighted cross-entropy. Summed over replicas, each is the global-batch value.
    """
    context = tf.distribute.get_replica_context()
    num_replicas = context.num_replicas_in_sync if context is not None else 1
    heads = dict(outputs) if isinstance(outputs, dict) else {LOGITS: outputs}
    sums = {}
    count = None
    for name, logits in heads.items():
        sums[name], count = masked_cross_entropy(labels, logits, ignore_label, class_weights)
    if context is not None and num_replicas > 1:
        count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
    denominator = tf.maximum(count, 1.0)
    parts = {"ce": sums.pop(LOGITS) / denominator}
    loss = parts["ce"]
    for name, value in sums.items():
        parts[name] = value / denominator
        loss += aux_weight * parts[name]
    parts["l2"] = l2_loss(list(l2_variables), weight_decay) / num_replicas
    parts["loss"] = loss + parts["l2"]
    return parts


def class_frequencies(label_maps, num_classes, ignore_label=255):
    """Pixel statistics of train-id label maps for `class_weights`.

    Args:
        label_maps: iterable of integer arrays of train ids (`ignore_label` skipped).
        num_classes: number of classes.

    Returns:
        (pixels, image_pixels): int64 [C] arrays: pixels of each class, and the labelled pixels of the images in
        which each class appears (the denominator of SegNet's median frequency balancing).
    """
    pixels = np.zeros(num_classes, np.int64)
    image_pixels = np.zeros(num_classes, np.int64)
    for labels in label_maps:
        labels = np.asarray(labels).ravel()
        labels = labels[labels != ignore_label]
        if labels.size and labels.max() >= num_classes:
            raise ValueError(f"label value {labels.max()} is not a class (num_classes={num_classes})")
        counts = np.bincount(labels, minlength=num_classes)
        pixels += counts
        image_pixels[counts > 0] += labels.size
    return pixels, image_pixels


def class_weights(pixels, image_pixels, method):
    """Per-class loss weights from `class_frequencies`.

    * ``median_frequency`` (Eigen & Fergus 2015, used by SegNet on CamVid): ``median(f) / f_c`` with
      ``f_c = pixels_c / image_pixels_c``, the class's share of the images it appears in;
    * ``enet`` (Paszke et al. 2016): ``1 / ln(1.02 + p_c)`` with ``p_c`` the class's share of all labelled pixels;
    * ``none``: all ones.

    A class that never occurs gets weight 0 (it has no pixels to weight). Returns float32 [C].
    """
    pixels = np.asarray(pixels, np.float64)
    if method == "none":
        return np.ones(len(pixels), np.float32)
    present = pixels > 0
    weights = np.zeros(len(pixels))
    if method == "median_frequency":
        frequency = pixels[present] / np.asarray(image_pixels, np.float64)[present]
        weights[present] = np.median(frequency) / frequency
    elif method == "enet":
        weights[present] = 1.0 / np.log(1.02 + pixels[present] / pixels.sum())
    else:
        raise ValueError(f"class weighting must be one of {CLASS_WEIGHTINGS}, got {method!r}")
    return weights.astype(np.float32)
