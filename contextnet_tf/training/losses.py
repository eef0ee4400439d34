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

Speed (issue 18; docs/training.md, "Where a training step's time goes", measured with
``python experiments/benchmark_train.py --breakdown``): `segmentation_losses` derives the label terms (valid
mask, safe labels, per-pixel weights) once for every head, and computes each cross-entropy with
`softmax_cross_entropy_sum`: one softmax (oneDNN's kernel) whose probabilities are kept for the gradient, written out
as ``weights * (softmax - one_hot)``. It is the same mathematics as `masked_cross_entropy` (the reference, kept for
tests and benchmarks; the two agree to float32 rounding) except that a pixel's loss saturates at
``-log(FLT_MIN) = 87.3`` where the reference would report more; its gradient stays exact.

Online hard-example mining (``ohem_threshold``; not in either paper, issue 16's lever, after mmsegmentation's
`OHEMPixelSampler`) is an option of the main loss only: `hard_pixel_mask` keeps the labelled pixels whose predicted
probability of their true class is below the threshold, and at least ``ohem_min_kept`` per image of the batch (the
hardest ones, if fewer are below it); the main cross-entropy is then the (class-weighted) mean over the kept pixels
(its ``ce`` part too), the auxiliary losses stay plain. The probabilities that choose the pixels carry no gradient.
With several replicas each replica chooses among its own pixels (as mmsegmentation's does per process).

``aux_resolution="eighth"`` is an option, and a deviation from both papers: each auxiliary head's logits, taken
before their upsampling (`aux_logits_view`), are resized to 1/8 of the labels' size and compared with the labels
downsampled by nearest neighbour (half-pixel centres: the centre pixel of each 8x8 block), so the auxiliary losses
cost 1/64 of the full-resolution ones. The main loss is unchanged.
"""

import keras
import numpy as np
import tensorflow as tf

from contextnet_tf.training.config import CLASS_WEIGHTINGS

LOGITS = "logits"
AUX_RESOLUTIONS = ("input", "eighth")
_FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # -log of it, 87.3, is where a pixel's loss saturates


def masked_cross_entropy(labels, logits, ignore_label=255, class_weights=None, pixel_mask=None):
    """Summed softmax cross-entropy over pixels whose label is not `ignore_label`, optionally class-weighted.

    Args:
        labels: int tensor [B, H, W] of train ids, `ignore_label` where unlabelled.
        logits: float tensor [B, H, W, C].
        ignore_label: label value to skip.
        class_weights: optional float [C]; each pixel's loss is multiplied by its true class's weight, and the
            returned count is the sum of those weights (PyTorch's weighted-mean convention), so uniform weights give
            the unweighted mean.
        pixel_mask: optional float [B, H, W] of 0 / 1 multiplying each pixel's weight (`hard_pixel_mask`).

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
    if pixel_mask is not None:
        weights *= pixel_mask
    pixel_loss = tf.where(valid, pixel_loss * weights, tf.zeros_like(pixel_loss))
    return tf.reduce_sum(pixel_loss), tf.reduce_sum(weights)


def label_terms(labels, ignore_label=255, class_weights=None):
    """What every cross-entropy of one label map needs, computed once: ``(safe_labels, weights)``.

    ``safe_labels`` is `labels` with ignored pixels set to class 0 (int32); ``weights`` is float32, 0 on ignored
    pixels and each pixel's class weight (1 without `class_weights`) elsewhere.
    """
    labels = tf.cast(labels, tf.int32)
    valid = tf.not_equal(labels, ignore_label)
    safe_labels = tf.where(valid, labels, tf.zeros_like(labels))
    weights = tf.cast(valid, tf.float32)
    if class_weights is not None:
        weights *= tf.gather(tf.constant(class_weights, tf.float32), safe_labels)
    return safe_labels, weights


def softmax_cross_entropy_sum(logits, safe_labels, weights):
    """``sum(weights * -log(softmax(logits)[label]))`` over the pixels, with a hand-written gradient.

    Same value and gradient as `masked_cross_entropy`'s sum (to float32 rounding); the softmax is computed once and
    reused by the gradient ``weights * (softmax - one_hot(label))``. In a whole step it gives 1.00-1.10x
    (``python experiments/benchmark_train.py``, settings ``before`` and ``default``; docs/training.md). A pixel's loss
    saturates at -log(FLT_MIN) = 87.3 (its gradient does not).

    Args:
        logits: float [B, H, W, C] (cast to float32).
        safe_labels, weights: from `label_terms`, [B, H, W].
    """
    num_classes = logits.shape[-1]

    @tf.custom_gradient
    def summed(logits):
        probabilities = tf.nn.softmax(logits)
        true_probability = tf.gather(probabilities, safe_labels[..., None], batch_dims=3)[..., 0]
        loss = -tf.reduce_sum(weights * tf.math.log(tf.maximum(true_probability, _FLOAT32_TINY)))

        def gradient(upstream):
            one_hot = tf.one_hot(safe_labels, num_classes, dtype=tf.float32)
            return (upstream * weights)[..., None] * (probabilities - one_hot)

        return loss, gradient

    return summed(tf.cast(logits, tf.float32))


def hard_pixel_mask(logits, safe_labels, weights, threshold, min_kept=0):
    """The pixels online hard-example mining trains on: float32 [B, H, W], 1 where kept.

    A labelled pixel (``weights > 0``) is kept when the softmax probability of its true class is below `threshold`,
    or when it is among the ``min_kept * B`` labelled pixels of the batch with the lowest such probability (all of
    them when the batch has fewer). The probabilities are computed without gradient.

    Args:
        logits: float [B, H, W, C].
        safe_labels, weights: from `label_terms`.
        threshold: in (0, 1]; mmsegmentation's default is 0.7.
        min_kept: pixels kept at least, per image.
    """
    probabilities = tf.nn.softmax(tf.stop_gradient(tf.cast(logits, tf.float32)))
    true_probability = tf.gather(probabilities, safe_labels[..., None], batch_dims=3)[..., 0]
    labelled = weights > 0
    flat = tf.reshape(tf.where(labelled, true_probability, 2.0), [-1])
    keep = tf.minimum(int(min_kept) * tf.shape(logits)[0], tf.reduce_sum(tf.cast(labelled, tf.int32)))
    # The keep-th lowest probability among the labelled pixels (-1: none forced).
    kth = tf.cond(keep > 0, lambda: -tf.math.top_k(-flat, k=keep, sorted=True).values[keep - 1], lambda: -1.0)
    kept = labelled & ((true_probability < threshold) | (true_probability <= kth))
    return tf.cast(kept, tf.float32)


def downsample_labels(labels, height, width):
    """Nearest-neighbour label map of (height, width) with half-pixel centres (an 8x8 block's centre pixel at 1/8)."""
    return tf.image.resize(labels[..., None], tf.stack([height, width]), method="nearest")[..., 0]


def aux_logits_view(model):
    """A model sharing `model`'s layers whose auxiliary outputs are the heads' logits before their upsampling.

    `model` returns ``{"logits", <aux head>...}``; each head ends in the Resize layer ``<head>_up`` (`blocks.aux_head`).
    The view's ``logits`` is the model's; each auxiliary entry is that layer's input. Used by
    ``aux_resolution="eighth"``; the checkpoints keep the model's own variables, which the view shares.
    """
    if not isinstance(model.output, dict):
        return model
    outputs = {LOGITS: model.output[LOGITS]}
    for name in model.output:
        if name == LOGITS:
            continue
        try:
            upsample = model.get_layer(f"{name}_up")
        except ValueError:
            raise ValueError(f"{model.name}: auxiliary head {name!r} has no {name}_up upsampling layer, so its losses "
                             "cannot be computed at 1/8 resolution (aux_resolution='eighth')") from None
        outputs[name] = upsample.input[0]
    return keras.Model(model.inputs, outputs, name=f"{model.name}_aux_logits")


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
                        class_weights=None, aux_resolution="input", implementation="fast", ohem_threshold=None,
                        ohem_min_kept=0):
    """The training loss of one replica and its parts.

    Args:
        outputs: the model's logits [B, H, W, C], or its dict ``{"logits", <aux name>: logits, ...}``.
        labels: int tensor [B, H, W].
        ignore_label: label value skipped by every cross-entropy.
        aux_weight: weight of each auxiliary cross-entropy.
        l2_variables: variables of the L2 term (`l2_regularized_variables`).
        weight_decay: L2 factor.
        class_weights: optional per-class weights of every cross-entropy (see `masked_cross_entropy`).
        aux_resolution: ``input`` (the papers: every head's logits at the labels' size) or ``eighth`` (a deviation:
            the auxiliary logits, from `aux_logits_view`, and the labels at 1/8 of the labels' size).
        implementation: ``fast`` (`softmax_cross_entropy_sum`, label terms shared by the heads) or ``reference``
            (`masked_cross_entropy` per head, the formulation before issue 18), for tests and benchmarks.
        ohem_threshold, ohem_min_kept: online hard-example mining of the main loss (`hard_pixel_mask`; None: off).

    Returns:
        Dict of float32 scalars, already scaled for summation over replicas (see the module docstring):
        ``loss`` (what to differentiate), ``ce`` (main cross-entropy), ``l2``, and one entry per auxiliary head
        with its unweighted cross-entropy. Summed over replicas, each is the global-batch value.
    """
    if aux_resolution not in AUX_RESOLUTIONS:
        raise ValueError(f"aux_resolution must be one of {AUX_RESOLUTIONS}, got {aux_resolution!r}")
    if implementation not in ("fast", "reference"):
        raise ValueError(f"implementation must be fast or reference, got {implementation!r}")
    context = tf.distribute.get_replica_context()
    num_replicas = context.num_replicas_in_sync if context is not None else 1
    heads = dict(outputs) if isinstance(outputs, dict) else {LOGITS: outputs}
    # The label map each head is compared with: the labels, and for aux_resolution="eighth" their 1/8 version.
    label_maps = {"input": labels}
    if aux_resolution == "eighth" and len(heads) > 1:
        size = tf.shape(labels)
        label_maps["eighth"] = downsample_labels(labels, (size[1] + 7) // 8, (size[2] + 7) // 8)
    terms = {}  # per label map: `label_terms`, derived once for every head using it (fast implementation, mining)
    sums, counts = {}, {}
    main_key = "input" if ohem_threshold is None else "hard"  # the main loss's denominator
    for name, logits in heads.items():
        key = "input" if name == LOGITS or aux_resolution == "input" else "eighth"
        head_labels = label_maps[key]
        if key == "eighth":
            small = tf.shape(head_labels)
            logits = tf.image.resize(tf.cast(logits, tf.float32), tf.stack([small[1], small[2]]), antialias=False)
        mined = name == LOGITS and ohem_threshold is not None
        if (implementation == "fast" or mined) and key not in terms:
            terms[key] = label_terms(head_labels, ignore_label, class_weights)
        mask = hard_pixel_mask(logits, *terms[key], ohem_threshold, ohem_min_kept) if mined else None
        count_key = main_key if name == LOGITS else key
        if implementation == "fast":
            safe_labels, weights = terms[key]
            if mask is not None:
                weights = weights * mask
            sums[name] = softmax_cross_entropy_sum(logits, safe_labels, weights)
            counts.setdefault(count_key, tf.reduce_sum(weights))
        else:
            sums[name], count = masked_cross_entropy(head_labels, logits, ignore_label, class_weights, pixel_mask=mask)
            counts.setdefault(count_key, count)
    if context is not None and num_replicas > 1:
        counts = {key: context.all_reduce(tf.distribute.ReduceOp.SUM, count) for key, count in counts.items()}
    denominators = {key: tf.maximum(count, 1.0) for key, count in counts.items()}
    parts = {"ce": sums.pop(LOGITS) / denominators[main_key]}
    loss = parts["ce"]
    for name, value in sums.items():
        parts[name] = value / denominators["eighth" if aux_resolution == "eighth" else "input"]
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
