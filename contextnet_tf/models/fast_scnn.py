"""Fast-SCNN: Fast Semantic Segmentation Network.

Poudel, Liwicki, Cipolla, "Fast-SCNN: Fast Semantic Segmentation Network", BMVC 2019 (arXiv:1902.04502).
The stage table below is the paper's Table 1, row for row; blocks are the shared ones in `contextnet_tf.models.blocks`.

Layer-name prefixes: ``ltd_`` (learning to downsample), ``gfe_`` (global feature extractor, with its pyramid pooling
``gfe_ppm``), ``ffm`` (feature fusion), ``cls_`` (classifier), ``aux_ltd`` / ``aux_gfe`` (auxiliary heads).
"""

import keras

from contextnet_tf.models import blocks
from contextnet_tf.models.layers import Resize

# Table 1, learning to downsample: (block, channels c, stride s).
LEARNING_TO_DOWNSAMPLE = (
    ("conv", 32, 2),
    ("dsconv", 48, 2),
    ("dsconv", 64, 2),
)
# Table 1, global feature extractor: bottleneck rows (expansion t, channels c, repeats n, stride s).
GLOBAL_FEATURE_EXTRACTOR = (
    (6, 64, 3, 2),
    (6, 96, 3, 2),
    (6, 128, 3, 1),
)
PPM_CHANNELS = 128  # Table 1: PPM, 128 channels out.
FUSION_CHANNELS = 128  # Table 1: FFM, 128 channels out.
FUSION_FACTOR = 4  # Table 3: X = 4 (1/32 -> 1/8).
CLASSIFIER = (128, 2)  # Table 1: DSConv, c = 128, n = 2, s = 1.
DROPOUT = 0.1  # Not given in the paper (see docs/architecture.md).
ACTIVATION = "relu"  # Section 3.1: ReLU trains faster than ReLU6 for Fast-SCNN.


def build_fast_scnn(input_shape=(None, None, 3), num_classes=19, aux=False, width=1.0, instance_norm=0,
                    instance_norm_fraction=1.0, name="fast_scnn"):
    """Builds Fast-SCNN as a Keras functional model.

    Args:
        input_shape: (height, width, 3) of the RGB input; None for sizes known only at run time (the default), or
            any static size (not only multiples of 32).
        num_classes: number of output classes (19 for Cityscapes).
        aux: if True, the model returns a dict ``{"logits", "aux_ltd", "aux_gfe"}`` with the two auxiliary heads of
            section 3.1 (end of learning to downsample, end of the global feature extractor).
        width: width multiplier applied to every layer's channels (1.0 is the paper's network).
        instance_norm: not in the paper (0, the default, is the paper's network). The first `instance_norm` layers of
            the learning-to-downsample module are followed by an instance normalisation (`blocks.instance_norm`,
            layer ``{block}_in``), after IBN-Net (Pan et al., ECCV 2018): per-image feature statistics normalised in
            the shallow layers, where a drive's light and colour live. The `fast_scnn-ibn` variant (`OFF_PAPER`).
        instance_norm_fraction: the share of those layers' channels that are normalised (1: all; 0.5: the first
            half, IBN-Net's IBN-a split, the `fast_scnn-ibna` variant).
        name: model name.

    Returns:
        A `keras.Model` taking float32 RGB images in [0, 255] of shape (batch, H, W, 3) and returning logits of shape
        (batch, H, W, num_classes) (bilinearly upsampled from 1/8 resolution), or the dict above when `aux` is set.
    """
    act = ACTIVATION

    def ch(c):
        return blocks.scale_channels(c, width)

    image, x = blocks.image_input(input_shape)

    # Learning to downsample.
    for i, (kind, channels, stride) in enumerate(LEARNING_TO_DOWNSAMPLE, start=1):
        if kind == "conv":
            x = blocks.conv_bn_act(x, ch(channels), 3, stride, act, name=f"ltd_conv{i}")
        else:
            x = blocks.separable_conv(x, ch(channels), stride, act, name=f"ltd_dsconv{i}")
        if i <= instance_norm:
            x = blocks.instance_norm(x, name=f"ltd_{kind}{i}_in", fraction=instance_norm_fraction)
    high_res = x  # 1/8 resolution, 64 channels: the skip connection to the fusion module.

    # Global feature extractor.
    for i, (t, c, n, s) in enumerate(GLOBAL_FEATURE_EXTRACTOR, start=1):
        x = blocks.bottleneck_stage(x, ch(c), t, n, s, act, name=f"gfe_bottleneck{i}")
    x = blocks.pyramid_pooling(x, ch(PPM_CHANNELS), mode="concat", activation=act, name="gfe_ppm")
    gfe_out = x  # 1/32 resolution, 128 channels: end of the global feature extractor (Table 1 includes the PPM).

    # Feature fusion.
    x = blocks.feature_fusion(high_res, x, ch(FUSION_CHANNELS), FUSION_FACTOR, act, name="ffm")

    # Classifier.
    channels, repeats = CLASSIFIER
    for i in range(1, repeats + 1):
        x = blocks.separable_conv(x, ch(channels), 1, act, name=f"cls_dsconv{i}")
    x = keras.layers.Dropout(DROPOUT, name="cls_dropout")(x)
    x = blocks.classifier_conv(x, num_classes, name="cls_conv")
    logits = Resize(dtype="float32", name="logits")([x, image])

    if not aux:
        return keras.Model(image, logits, name=name)
    outputs = {
        "logits": logits,
        "aux_ltd": blocks.aux_head(high_res, num_classes, image, act, name="aux_ltd"),
        "aux_gfe": blocks.aux_head(gfe_out, num_classes, image, act, name="aux_gfe"),
    }
    return keras.Model(image, outputs, name=name)


VARIANTS = {
    "fast_scnn": {},
}
# Not in the paper: this project's variants, buildable and trainable by name (not in `MODEL_NAMES`, which are the
# papers' networks). ``fast_scnn-ibn``: instance normalisation after the first two layers (1/2 and 1/4 resolution);
# ``fast_scnn-ibna``: the same on the first half of those layers' channels only.
OFF_PAPER = {
    "fast_scnn-ibn": dict(instance_norm=2),
    "fast_scnn-ibna": dict(instance_norm=2, instance_norm_fraction=0.5),
}
