"""Building blocks shared by ContextNet and Fast-SCNN, written once.

Every block is a plain function ``block(x, ..., name)`` that applies Keras layers to a tensor and names each layer
predictably. The naming rule that batch-norm folding and filter pruning rely on:

    every Conv2D / DepthwiseConv2D layer ``L`` that is followed by batch norm has that batch norm named ``L + "_bn"``.

Layer names inside a block (``name`` is the block's name):

* `conv_bn_act`:        ``{name}``, ``{name}_bn``, ``{name}_act``
* `separable_conv`:     ``{name}_dw``, ``{name}_dw_bn``, ``{name}_pw``, ``{name}_pw_bn``, ``{name}_act``
* `bottleneck`:         ``{name}_expand`` (+ ``_bn``, ``_act``), ``{name}_dw`` (+ ``_bn``,
                        ``_act``), ``{name}_project`` (+ ``_bn``), ``{name}_add`` when residual
* `pyramid_pooling`:    ``{name}_pool{b}``, ``{name}_pool{b}_conv`` (+ ``_bn``, ``_act``), ``{name}_pool{b}_up``,
                        ``{name}_concat``, ``{name}_project`` (+ ``_bn``, ``_act``); ``{name}_add`` in sum mode
* `instance_norm`:      ``{name}`` (not in either paper; the off-paper ``fast_scnn-ibn`` / ``-ibna`` variants)
* `feature_fusion`:     ``{name}_up``, ``{name}_dw`` (+ ``_bn``, ``_act``), ``{name}_low_pw`` (+ ``_bn``),
                        ``{name}_high_pw`` (+ ``_bn``), ``{name}_add``, ``{name}_act``

Convolutions followed by batch norm carry no bias (batch norm's beta is the bias); convolution kernels use He-normal
initialisation. Activation is ``"relu"`` (Fast-SCNN) or ``"relu6"`` (ContextNet); ``None`` means linear.
"""

import keras

from contextnet_tf.models.layers import AdaptiveAveragePooling2D, PartialInstanceNormalization, Resize

# Batch-norm settings shared by every block (TensorFlow's slim defaults used by the papers' TensorFlow code).
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3
PYRAMID_BINS = (1, 2, 3, 6)  # PSPNet's pyramid pooling bins.


def _batch_norm(x, name):
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)(x)


def _activation(x, activation, name):
    if activation is None:
        return x
    return keras.layers.Activation(activation, name=name)(x)


def image_input(input_shape):
    """The networks' input: float32 RGB in [0, 255], scaled to [-1, 1] by layer ``input_scaling``.

    The one place where the model normalises its input (the data pipeline hands over 0-255 pixels), so exported and
    folded models take raw pixels. Returns ``(keras.Input, scaled tensor)``.
    """
    image = keras.Input(shape=input_shape, name="image")
    return image, keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="input_scaling")(image)


def conv_bn_act(x, filters, kernel_size=3, strides=1, activation="relu", name=None):
    """Conv2D (no bias) -> batch norm -> activation. `activation=None` gives a linear conv-BN."""
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=name,
    )(x)
    x = _batch_norm(x, f"{name}_bn")
    return _activation(x, activation, f"{name}_act")


def depthwise_bn_act(x, strides=1, dilation_rate=1, activation="relu", name=None):
    """DepthwiseConv2D 3x3 (no bias) -> batch norm -> activation."""
    x = keras.layers.DepthwiseConv2D(
        3,
        strides=strides,
        dilation_rate=dilation_rate,
        padding="same",
        use_bias=False,
        depthwise_initializer="he_normal",
        name=name,
    )(x)
    x = _batch_norm(x, f"{name}_bn")
    return _activation(x, activation, f"{name}_act")


def separable_conv(x, filters, strides=1, activation="relu", name=None):
    """Depthwise-separable conv (the papers' DSConv): depthwise 3x3, BN, pointwise 1x1, BN, activation.

    As both papers state, there is no non-linearity between the depthwise and the pointwise convolution.
    """
    x = depthwise_bn_act(x, strides=strides, activation=None, name=f"{name}_dw")
    x = conv_bn_act(x, filters, kernel_size=1, activation=None, name=f"{name}_pw")
    return _activation(x, activation, f"{name}_act")


def bottleneck(x, filters, expansion, strides=1, activation="relu", name=None):
    """MobileNetV2 inverted-residual bottleneck (both papers' Table 1/2).

    1x1 expand by `expansion`, depthwise 3x3 with `strides`, linear 1x1 projection to `filters`; a residual add when
    input and output shapes match. The expansion conv is kept when expansion == 1 (MobileNetV2 drops it): ContextNet
    counts 38 layers in its context branch, 2 convolutions plus 12 bottlenecks of 3 layers each.
    """
    in_channels = x.shape[-1]
    shortcut = x
    x = conv_bn_act(x, in_channels * expansion, kernel_size=1, activation=activation, name=f"{name}_expand")
    x = depthwise_bn_act(x, strides=strides, activation=activation, name=f"{name}_dw")
    x = conv_bn_act(x, filters, kernel_size=1, activation=None, name=f"{name}_project")
    if strides == 1 and in_channels == filters:
        x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return x


def bottleneck_stage(x, filters, expansion, repeats, strides, activation, name):
    """`repeats` bottlenecks; the first uses `strides`, the rest stride 1 (the papers' (t, c, n, s) rows)."""
    for i in range(repeats):
        x = bottleneck(
            x,
            filters,
            expansion,
            strides=strides if i == 0 else 1,
            activation=activation,
            name=f"{name}_{i + 1}",
        )
    return x


def pyramid_pooling(x, filters=None, bins=PYRAMID_BINS, mode="concat", activation="relu", name=None):
    """Pyramid pooling for any feature-map size, in one of two published forms.

    Both pool the input adaptively to b x b for each bin size b and upsample bilinearly back to the input size.

    * ``mode="concat"`` (PSPNet; Fast-SCNN Table 1): each pooled map goes through a 1x1 conv-BN-act to
      in_channels / len(bins) channels before upsampling; the input and the pooled maps are concatenated
      (2 x in_channels) and projected by a 1x1 conv-BN-act to `filters` channels.
    * ``mode="sum"`` (ICNet; our ContextNet): the input and the upsampled pooled maps are added. No weights, so the
      output has the input's channels (`filters` must be None or equal to them).
    """
    channels = x.shape[3]
    if mode not in ("concat", "sum"):
        raise ValueError(f"pyramid_pooling mode must be 'concat' or 'sum', got {mode!r}")
    if mode == "sum" and filters not in (None, channels):
        raise ValueError(f"pyramid_pooling mode='sum' keeps the {channels} input channels, got filters={filters}")
    branch_channels = max(1, channels // len(bins))
    branches = [x]
    for b in bins:
        y = AdaptiveAveragePooling2D(b, name=f"{name}_pool{b}")(x)
        if mode == "concat":
            y = conv_bn_act(y, branch_channels, kernel_size=1, activation=activation, name=f"{name}_pool{b}_conv")
        y = Resize(name=f"{name}_pool{b}_up")([y, x])
        branches.append(y)
    if mode == "sum":
        return keras.layers.Add(name=f"{name}_add")(branches)
    x = keras.layers.Concatenate(name=f"{name}_concat")(branches)
    return conv_bn_act(x, filters, kernel_size=1, activation=activation, name=f"{name}_project")


def feature_fusion(high, low, filters, dilation, activation="relu", name=None):
    """Feature fusion unit (ContextNet Table 3, Fast-SCNN Table 3).

    Low-resolution input: upsample to the high-resolution map's size (x`dilation` when sizes divide), depthwise 3x3
    with dilation `dilation` + BN + activation, linear 1x1 conv + BN. High-resolution input: linear 1x1 conv + BN.
    Add, then activation.
    """
    low = Resize(name=f"{name}_up")([low, high])
    low = depthwise_bn_act(low, dilation_rate=dilation, activation=activation, name=f"{name}_dw")
    low = conv_bn_act(low, filters, kernel_size=1, activation=None, name=f"{name}_low_pw")
    high = conv_bn_act(high, filters, kernel_size=1, activation=None, name=f"{name}_high_pw")
    x = keras.layers.Add(name=f"{name}_add")([high, low])
    return _activation(x, activation, f"{name}_act")


def instance_norm(x, name, fraction=1.0):
    """Instance normalisation: each image's channels to zero mean and unit variance over H x W, then a learned scale
    and offset per channel (Keras' `GroupNormalization` with one group per channel).

    Not in either paper: this project's option after IBN-Net (Pan et al., ECCV 2018), which normalises per-image
    feature statistics in the shallow layers so that appearance (light, colour cast) matters less. Batch-norm folding
    leaves it as it is (it has no running statistics); filter pruning does not know it and says so.

    ``fraction < 1`` normalises only the first ``round(fraction * channels)`` channels and passes the rest unchanged
    (`layers.PartialInstanceNormalization`, IBN-Net's IBN-a split: the other channels keep each image's absolute
    statistics, e.g. how bright it is).
    """
    if fraction < 1:
        return PartialInstanceNormalization(fraction, epsilon=BN_EPSILON, name=name)(x)
    return keras.layers.GroupNormalization(groups=-1, epsilon=BN_EPSILON, name=name)(x)


def classifier_conv(x, num_classes, name):
    """The final 1x1 convolution to class logits (with bias, no batch norm)."""
    return keras.layers.Conv2D(num_classes, 1, kernel_initializer="he_normal", name=name)(x)


def aux_head(x, num_classes, reference, activation="relu", dropout=0.1, name=None):
    """Auxiliary segmentation head used only for the 0.4-weighted training losses.

    Neither paper specifies it; we use the light FCN head of the public implementations: 3x3 conv-BN-act to 32
    channels, dropout, 1x1 conv to classes, bilinear upsampling to the size of `reference` (the input image; float32
    output).
    """
    x = conv_bn_act(x, 32, kernel_size=3, activation=activation, name=f"{name}_conv")
    x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    x = classifier_conv(x, num_classes, name=f"{name}_classifier")
    return Resize(dtype="float32", name=f"{name}_up")([x, reference])


def scale_channels(channels, width=1.0, divisor=8):
    """Channels after a width multiplier, rounded to the nearest multiple of `divisor` (MobileNet convention).

    Rounding never drops below `divisor` nor more than 10% below `channels * width`.
    """
    if width == 1.0:
        return channels
    value = channels * width
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded
