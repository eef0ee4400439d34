"""Named training recipes: plain dicts of `TrainConfig` fields, applied before any explicit override.

Each value is marked with where it comes from: a paper's section, or **ours** where the paper is silent. What the
two papers state (section 3.1 of each unless noted):

- ContextNet: RMSprop (discounting factor 0.9, momentum 0.9, epsilon 1), poly learning rate from 0.045 with power
  0.98, at most 1000 epochs from scratch, auxiliary loss on the low-resolution branch weighted 0.4 (section 2.2),
  no L2 on depthwise convolutions (no value for the other layers), and the augmentation "random scale 0.5 to 2,
  horizontal flip, varied hue, saturation, brightness and contrast". It gives no batch size (its "batch-size 16 or
  more", section 2.2, is about when class weighting stopped helping), no L2 factor and no crop.
- Fast-SCNN: SGD with momentum 0.9 and batch size 12, poly learning rate from 0.045 with power 0.9, L2 0.00004 on
  every layer but the depthwise convolutions, 1,000 epochs, auxiliary losses weighted 0.4 at the end of learning to
  downsample and of the global feature extractor, and the augmentation "random resizing between 0.5 to 2,
  translation/crop, horizontal flip, color channels noise and brightness". It gives no crop size.

Our choices (docs/training.md, "The papers' recipes"): ContextNet's batch 16 and L2 4e-5 (Fast-SCNN's factor, also
MobileNetV2's), a 768 x 768 crop for both (the crop of the widely used public Fast-SCNN reproduction), and the
magnitude of every augmentation (`contextnet_tf.data.augment.AUGMENTATIONS`).
"""

from contextnet_tf.data.augment import PAPER_SCALE_RANGE

CONTEXTNET_PAPER = dict(
    optimizer="rmsprop",  # 3.1: RMSprop, discounting factor 0.9, momentum 0.9, epsilon 1.
    lr=0.045,  # 3.1: poly, base 0.045, power 0.98.
    lr_power=0.98,
    momentum=0.9,
    batch_size=16,  # Ours: the paper gives none (2.2's "16 or more" is about class weighting).
    crop=(768, 768),  # Ours: the paper names no crop; a batch needs one size.
    epochs=1000,  # 3.1: "The maximum number of epochs is set to 1000".
    aux_weight=0.4,  # 2.2: "The weight of the auxiliary loss was set to 0.4".
    weight_decay=4e-5,  # Ours (Fast-SCNN's factor): 3.1 only says depthwise kernels need no L2.
    scale_range=PAPER_SCALE_RANGE,  # 3.1: "random scale 0.5 to 2".
    augment="contextnet_paper",  # 3.1: flip, hue, saturation, brightness, contrast (magnitudes ours).
)

FAST_SCNN_PAPER = dict(
    optimizer="sgd",  # 3.1: SGD with momentum 0.9, batch size 12.
    lr=0.045,  # 3.1: poly, base 0.045, power 0.9.
    lr_power=0.9,
    momentum=0.9,
    batch_size=12,
    crop=(768, 768),  # Ours: the paper names a crop but not its size.
    epochs=1000,  # 3.1: 1,000 epochs.
    aux_weight=0.4,  # 3.1: auxiliary losses with 0.4 weights.
    weight_decay=4e-5,  # 3.1: "for other layers l2 is 0.00004" (none on depthwise convolutions).
    scale_range=PAPER_SCALE_RANGE,  # 3.1: "random resizing between 0.5 to 2".
    augment="fast_scnn_paper",  # 3.1: crop, flip, colour channel noise, brightness (magnitudes ours).
)

PRESETS = {
    "contextnet_paper": CONTEXTNET_PAPER,
    "fast_scnn_paper": FAST_SCNN_PAPER,
}

# Which fields of each preset the paper states; the others are this project's choice (tests and docs read this).
PAPER_FIELDS = {
    "contextnet_paper": ("optimizer", "lr", "lr_power", "momentum", "epochs", "aux_weight", "scale_range", "augment"),
    "fast_scnn_paper": ("optimizer", "lr", "lr_power", "momentum", "batch_size", "epochs", "aux_weight",
                        "weight_decay", "scale_range", "augment"),
}
