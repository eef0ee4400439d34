"""Named training recipes: plain dicts of `TrainConfig` fields, applied before any explicit override.

Both papers train from scratch on Cityscapes fine (2,975 images) for 1,000 epochs with a poly learning rate from
0.045, auxiliary losses weighted 0.4, L2 4e-5 on every convolution kernel except depthwise ones, and random scale
0.5-2 / crop / flip augmentation (ContextNet section 3.1, Fast-SCNN section 3.1).

What the papers leave open (our choices, argued in docs/training.md):
* ContextNet's batch size: section 2.2 reports training "with batch-size 16 or more", so 16;
* the crop size: neither paper states one; 768 x 768 crops of the randomly rescaled 1024 x 2048 image, the crop of
  the widely used public Fast-SCNN reproduction, for both.
"""

from contextnet_tf.data.augment import PAPER_SCALE_RANGE

CONTEXTNET_PAPER = dict(
    optimizer="rmsprop",  # ContextNet 3.1: RMSprop, rho 0.9, momentum 0.9, epsilon 1.
    lr=0.045,
    lr_power=0.98,
    momentum=0.9,
    batch_size=16,
    crop=(768, 768),
    epochs=1000,
    aux_weight=0.4,
    weight_decay=4e-5,
    scale_range=PAPER_SCALE_RANGE,
)

FAST_SCNN_PAPER = dict(
    optimizer="sgd",  # Fast-SCNN 3.1: SGD with momentum 0.9, batch size 12.
    lr=0.045,
    lr_power=0.9,
    momentum=0.9,
    batch_size=12,
    crop=(768, 768),
    epochs=1000,
    aux_weight=0.4,
    weight_decay=4e-5,
    scale_range=PAPER_SCALE_RANGE,
)

PRESETS = {
    "contextnet_paper": CONTEXTNET_PAPER,
    "fast_scnn_paper": FAST_SCNN_PAPER,
}
