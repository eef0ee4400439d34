"""Model statistics: parameter counts, multiply-accumulates (MACs) and the papers' layer counts.

MACs follow the usual convention for segmentation networks: multiply-accumulates of the convolutions only
(Conv2D: out_h * out_w * k_h * k_w * c_in * c_out; depthwise: out_h * out_w * k_h * k_w * c_in * multiplier).
Batch norm (folded at inference), activations, additions, resizes and the pyramid pooling's averaging are not
counted; they are below 1% of the total for every variant here.
"""

import keras
import numpy as np


def count_trainable_params(model):
    """Number of trainable scalars (conv kernels, classifier bias, batch-norm gamma and beta)."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _conv_macs(layer):
    out_h, out_w = layer.output.shape[1], layer.output.shape[2]
    kernel_h, kernel_w = layer.kernel_size
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return out_h * out_w * kernel_h * kernel_w * layer.input.shape[-1] * layer.depth_multiplier
    if isinstance(layer, keras.layers.Conv2D):
        return out_h * out_w * kernel_h * kernel_w * layer.input.shape[-1] * layer.filters // layer.groups
    return 0


def count_macs(model, prefix=""):
    """Multiply-accumulates of one forward pass of one image, over layers whose name starts with `prefix`."""
    return int(
        sum(
            _conv_macs(layer)
            for layer in model.layers
            if layer.name.startswith(prefix) and isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D)
        )
    )


def paper_layer_count(model, prefix):
    """Counts layers the way both papers do: each convolution is a layer, a depthwise-separable conv is one layer.

    ContextNet section 2.2: 38 layers in the context branch (``prefix="context_"``), 4 in the detail branch
    (``prefix="detail_"``).
    """
    count = 0
    for layer in model.layers:
        if not layer.name.startswith(prefix):
            continue
        if not isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D):
            continue
        if "dsconv" in layer.name and layer.name.endswith("_dw"):
            continue  # The depthwise half of a DSConv; its pointwise half counts the layer.
        count += 1
    return count


def model_table(names, input_shape=(1024, 2048, 3), num_classes=19):
    """Rows of {name, params, gmacs} for the given model names at one input size."""
    from contextnet_tf.models import build_model

    rows = []
    for name in names:
        model = build_model(name, input_shape, num_classes)
        rows.append(
            dict(name=name, params=count_trainable_params(model), gmacs=count_macs(model) / 1e9)
        )
    return rows
