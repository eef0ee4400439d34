"""ContextNet: exploring context and detail for semantic segmentation in real-time.

Poudel, Bonde, Liwicki, Zach, "ContextNet: Exploring Context and Detail for Semantic Segmentation in Real-time",
BMVC 2018 (arXiv:1805.04554). The stage tables below are the paper's Table 2 (context branch) and section 2.2
(detail branch); the fusion unit is Table 3. Blocks are the shared ones in `contextnet_tf.models.blocks`.

Layer-name prefixes: ``context_`` (deep branch on the downscaled input, with its pyramid pooling ``context_ppm``),
``detail_`` (shallow full-resolution branch; ``detail2_`` is cn124's extra half-resolution branch), ``fusion``
(fusion units), ``cls_`` (classifier), ``aux_context`` (auxiliary head on the context branch).

Choices where the paper is silent (pinned in tests/test_models_contextnet.py, argued in docs/architecture.md):
* the pyramid pooling is ICNet's parameter-free form (the input plus its pooled-and-upsampled maps, bins 1, 2, 3, 6),
  placed after the last bottleneck, and Table 2's last "Conv2d 128" is a 1x1 convolution after it (as ICNet's conv
  after its pyramid pooling). PSPNet's form and/or a 3x3 last conv would add 50k-180k parameters, which Table 4's
  0.85M leaves no room for;
* cn124 fuses the context branch with the half-resolution shallow branch, then that with the full-resolution one;
* cn14-500 and cn14-160 are cn14 with width multipliers 0.72 and 0.4 (channels rounded to multiples of 8).
"""

import keras

from contextnet_tf.models import blocks
from contextnet_tf.models.layers import Resize

# Table 2, context branch: first Conv2d (channels, stride), then bottleneck rows (t, c, n, s), then the last Conv2d.
CONTEXT_STEM = (32, 2)
CONTEXT_BOTTLENECKS = (
    (1, 32, 1, 1),
    (6, 32, 1, 1),
    (6, 48, 3, 2),
    (6, 64, 3, 2),
    (6, 96, 2, 1),
    (6, 128, 2, 1),
)
CONTEXT_HEAD = 128  # Table 2: last Conv2d, 128 channels, stride 1 (1x1, our choice).
CONTEXT_HEAD_KERNEL = 1
# Section 2.2, detail branch: 32, 64, 128, 128 feature maps; standard conv first, then DSConv; stride 2 but last.
DETAIL_BRANCH = (
    ("conv", 32, 2),
    ("dsconv", 64, 2),
    ("dsconv", 128, 2),
    ("dsconv", 128, 1),
)
FUSION_CHANNELS = 128
DROPOUT = 0.1  # Not given in the paper (see docs/architecture.md).
ACTIVATION = "relu6"  # Section 3.1.


def _downscale(image, factor, name):
    """Bilinearly downscales the input image by `factor` (ceil of non-integer sizes)."""
    if factor == 1:
        return image
    return Resize(divisor=factor, name=name)(image)


def context_branch(x, ch, act):
    """The deep branch of Table 2 with pyramid pooling before its last conv; output at 1/8 of its input."""
    channels, stride = CONTEXT_STEM
    x = blocks.conv_bn_act(x, ch(channels), 3, stride, act, name="context_conv1")
    for i, (t, c, n, s) in enumerate(CONTEXT_BOTTLENECKS, start=1):
        x = blocks.bottleneck_stage(x, ch(c), t, n, s, act, name=f"context_bottleneck{i}")
    x = blocks.pyramid_pooling(x, mode="sum", name="context_ppm")
    return blocks.conv_bn_act(x, ch(CONTEXT_HEAD), CONTEXT_HEAD_KERNEL, 1, act, name="context_conv2")


def detail_branch(x, ch, act, prefix):
    """The shallow branch of section 2.2: output at 1/8 of its input, 128 channels."""
    for i, (kind, channels, stride) in enumerate(DETAIL_BRANCH, start=1):
        if kind == "conv":
            x = blocks.conv_bn_act(x, ch(channels), 3, stride, act, name=f"{prefix}_conv{i}")
        else:
            x = blocks.separable_conv(x, ch(channels), stride, act, name=f"{prefix}_dsconv{i}")
    return x


def build_contextnet(
    input_shape=(None, None, 3),
    num_classes=19,
    aux=False,
    context_factor=4,
    detail_factors=(1,),
    width=1.0,
    name="contextnet",
    branch=None,
):
    """Builds ContextNet as a Keras functional model.

    Args:
        input_shape: (height, width, 3) of the RGB input; None for sizes known only at run time (the default), or
            any static size.
        num_classes: number of output classes (19 for Cityscapes).
        aux: if True, return ``{"logits", "aux_context"}``, the second being the 0.4-weighted auxiliary head on the
            context branch (section 2.2, "Design Choices").
        context_factor: the context branch sees the input downscaled by this factor (cn14: 4, cn12: 2, cn18: 8).
        detail_factors: input scales of the shallow branches, coarsest first; ``(1,)`` is the paper's ContextNet,
            ``(2, 1)`` is cn124. Shallow branches are fused into the context features one after the other.
        width: width multiplier applied to every layer's channels (cn14-500 and cn14-160 are thinner cn14).
        name: model name.
        branch: None for ContextNet; ``"context"`` or ``"detail"`` for the single-branch networks of the paper's
            ensemble study (section 3.2, "ContextNet vs Ensemble Nets": the branches trained independently). The
            branch's last features go straight to the dropout and the classifier (no fusion unit); the detail-only
            network has no auxiliary head (with `aux` its dict holds ``logits`` only).

    Returns:
        A `keras.Model` from float32 RGB images in [0, 255], (batch, H, W, 3), to logits (batch, H, W, num_classes)
        bilinearly upsampled from the finest shallow branch's 1/8 resolution; or the dict above when `aux` is set.
    """
    act = ACTIVATION

    def ch(c):
        return blocks.scale_channels(c, width)

    image, x = blocks.image_input(input_shape)

    if branch not in (None, "context", "detail"):
        raise ValueError(f"branch must be None, 'context' or 'detail', got {branch!r}")
    if branch == "detail":
        features = detail_branch(x, ch, act, "detail")
        logits = _classifier(features, num_classes, image)
        return keras.Model(image, {"logits": logits} if aux else logits, name=name)

    context_input = _downscale(x, context_factor, name="context_downscale")
    context = context_branch(context_input, ch, act)
    if branch == "context":
        logits = _classifier(context, num_classes, image)
        if not aux:
            return keras.Model(image, logits, name=name)
        aux_logits = blocks.aux_head(context, num_classes, image, act, name="aux_context")
        return keras.Model(image, {"logits": logits, "aux_context": aux_logits}, name=name)

    fused, fused_factor = context, context_factor
    for j, factor in enumerate(detail_factors):
        prefix = "detail" if j == len(detail_factors) - 1 else f"detail{factor}"
        fusion_name = "fusion" if j == len(detail_factors) - 1 else f"fusion{factor}"
        detail_input = _downscale(x, factor, name=f"{prefix}_downscale")
        detail = detail_branch(detail_input, ch, act, prefix)
        # Context features are at 1/(8 * context_factor): the upsampling (and dilation) X is the ratio of scales.
        dilation = max(1, fused_factor // factor)
        fused = blocks.feature_fusion(detail, fused, ch(FUSION_CHANNELS), dilation, act, name=fusion_name)
        fused_factor = factor

    logits = _classifier(fused, num_classes, image)

    if not aux:
        return keras.Model(image, logits, name=name)
    outputs = {
        "logits": logits,
        "aux_context": blocks.aux_head(context, num_classes, image, act, name="aux_context"),
    }
    return keras.Model(image, outputs, name=name)


def _classifier(features, num_classes, image):
    x = keras.layers.Dropout(DROPOUT, name="cls_dropout")(features)
    x = blocks.classifier_conv(x, num_classes, name="cls_conv")
    return Resize(dtype="float32", name="logits")([x, image])


# Table 4 variants: keyword arguments of `build_contextnet`.
VARIANTS = {
    "cn14": dict(context_factor=4),
    "cn12": dict(context_factor=2),
    "cn18": dict(context_factor=8),
    "cn124": dict(context_factor=4, detail_factors=(2, 1)),
    "cn14-500": dict(context_factor=4, width=0.72),
    "cn14-160": dict(context_factor=4, width=0.4),
}

# The single-branch networks of the ensemble study (section 3.2); not Table 4 variants, so not in `MODEL_NAMES`, but
# `build_model`, training and prediction accept them by name.
ABLATION_VARIANTS = {
    "cn14-context": dict(context_factor=4, branch="context"),
    "cn14-detail": dict(branch="detail"),
}
