"""Batch-norm folding: merge every inference-time batch norm into the convolution before it.

A batch norm after a convolution computes ``y = gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta``, an affine map
per output channel, so it is the same as one convolution with kernel ``W * s`` and bias ``(b - mean) * s + beta``
where ``s = gamma / sqrt(var + eps)`` scales each output channel. A depthwise kernel (kh, kw, in, multiplier) has
output channel ``i * multiplier + m``, so ``s`` is reshaped to (in, multiplier) and folds along the kernel's own
axes; a separable convolution folds into its pointwise kernel.

Pairs are found by the naming rule of `contextnet_tf.models.blocks` (the batch norm of layer ``L`` is ``L + "_bn"``) and
checked against the graph: the batch norm must be the only consumer of ``L``. The folded model keeps the original
layer names, so ``model.get_layer("ltd_conv1")`` still works, and drops the auxiliary heads (inference only).
"""

import keras
import numpy as np

from contextnet_tf.models import logits_only

FOLDABLE_LAYERS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)


def fold_batch_norm(model):
    """Returns a new inference model with every batch norm merged into the convolution before it.

    Args:
        model: a functional `keras.Model` of this package (any variant, `aux` or not). A model whose output is a
            dict keeps only the ``"logits"`` output (the auxiliary heads are training-only).

    Returns:
        A new `keras.Model` with the same input, the same layer names minus every ``*_bn`` layer, the folded
        convolutions carrying a bias, and no `BatchNormalization` layer left. Its logits equal the original model's
        inference logits up to float32 round-off. The original model is not modified.

    Raises:
        ValueError: if the model is not functional, or a batch norm cannot be folded (it does not directly follow a
            Conv2D / DepthwiseConv2D / SeparableConv2D whose only consumer it is).
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "operations") or not model.inputs:
        raise ValueError(f"fold_batch_norm needs a functional keras.Model, got {type(model).__name__}")
    model = logits_only(model)
    pairs = _fold_pairs(model)
    folded_bns = set(pairs.values())

    def clone_layer(layer):
        config = layer.get_config()
        if layer.name in pairs:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    def call_layer(layer, *args, **kwargs):
        if layer.name in folded_bns:
            return args[0]  # The batch norm is folded into the convolution that produced args[0].
        return layer(*args, **kwargs)

    folded = keras.models.clone_model(model, clone_function=clone_layer, call_function=call_layer)
    for layer in folded.layers:
        original = _find_layer(model, layer.name)
        if original is None:  # A weightless wrapper clone_model adds when a folded batch norm was an output.
            continue
        if layer.name in pairs:
            layer.set_weights(_folded_weights(original, model.get_layer(pairs[layer.name])))
        elif layer.weights:
            layer.set_weights(original.get_weights())
    return folded


def _fold_pairs(model):
    """Maps each foldable convolution's name to its batch norm's name; raises if a batch norm cannot be folded."""
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        conv_name = layer.name[: -len("_bn")] if layer.name.endswith("_bn") else None
        conv = _find_layer(model, conv_name)
        problem = None
        if conv is None or not isinstance(conv, FOLDABLE_LAYERS):
            problem = f"no Conv2D/DepthwiseConv2D/SeparableConv2D named {conv_name!r} before it"
        elif layer.input is not conv.output:
            problem = f"its input is not the output of {conv_name!r}"
        elif len(conv._outbound_nodes) != 1:
            problem = f"{conv_name!r} has other consumers besides the batch norm"
        elif layer.axis not in (-1, len(layer.input.shape) - 1):
            problem = f"it normalises axis {layer.axis}, not the channel axis"
        if problem:
            raise ValueError(f"cannot fold batch norm {layer.name!r}: {problem}")
        pairs[conv.name] = layer.name
    return pairs


def _find_layer(model, name):
    if name is None:
        return None
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def _folded_weights(conv, bn):
    """The folded [kernel(s)..., bias] of `conv` followed by `bn`, in `conv.get_weights()` order plus a bias."""
    variance = np.asarray(bn.moving_variance, np.float64)
    mean = np.asarray(bn.moving_mean, np.float64)
    gamma = np.asarray(bn.gamma, np.float64) if bn.scale else np.ones_like(mean)
    beta = np.asarray(bn.beta, np.float64) if bn.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(variance + bn.epsilon)

    weights = [np.asarray(w, np.float64) for w in conv.get_weights()]
    bias = weights.pop() if conv.use_bias else np.zeros_like(mean)
    if isinstance(conv, keras.layers.SeparableConv2D):
        depthwise, pointwise = weights
        weights = [depthwise, pointwise * scale]  # Scales the pointwise kernel's output channels.
    elif isinstance(conv, keras.layers.DepthwiseConv2D):
        (kernel,) = weights
        weights = [kernel * scale.reshape(kernel.shape[2], kernel.shape[3])]
    else:
        (kernel,) = weights
        weights = [kernel * scale]
    weights.append((bias - mean) * scale + beta)
    dtype = conv.get_weights()[0].dtype
    return [w.astype(dtype) for w in weights]
