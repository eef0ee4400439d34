"""Training augmentation: random scale (and aspect), crop with padding, flip, colour jitter and channel noise.

What each paper lists (section 3.1 of both), and the named configurations (`AUGMENTATIONS`) that follow them:

- ContextNet: "random scale 0.5 to 2, horizontal flip, varied hue, saturation, brightness and contrast"
  (`CONTEXTNET_PAPER`; no crop, translation or channel noise is named);
- Fast-SCNN: "random resizing between 0.5 to 2, translation/crop, horizontal flip, color channels noise and
  brightness" (`FAST_SCNN_PAPER`; no hue, saturation or contrast).

Neither paper gives a magnitude for any colour operation, a crop size or a padding rule: those are this project's
choices, marked so below and in docs/training.md. Every configuration crops (a batch needs one size), also
ContextNet's.

Every random choice comes from one stateless seed per example, so an example's augmentation depends only on the seed
and not on thread scheduling. Labels are always resampled with nearest neighbour.

Two implementations of the geometry share the same random draws:

- `augment` (used for training) resamples only the part of the image that survives the crop, with one
  `tf.image.crop_and_resize` call whose box puts the crop window of the scaled image back onto the source image, and
  folds the horizontal flip into that box. Colour jitter is one 3x3 colour matrix plus an offset per image.
- `reference_augment` does the straightforward thing: resize the whole image, cut the window, flip, apply the colour
  steps one by one (`tf.image` where it has the step), then pad. It is the baseline of the input benchmark and the
  oracle of the tests, padding and colour jitter included.

Both give the same crop: `tf.image.resize` (half-pixel centres) maps scaled pixel ``i`` to source coordinate
``(i + 0.5) / s - 0.5`` and clamps at the border; `augment` samples exactly those coordinates on a source image with a
one-pixel replicated border, which reproduces the clamping.
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf

from contextnet_tf.data.labels import IGNORE_LABEL

# ITU-R BT.601 luma weights, the ones tf.image.rgb_to_grayscale uses.
LUMA_WEIGHTS = (0.2989, 0.5870, 0.1140)

# Random rescaling range of both papers' training (ContextNet 3.1 "random scale 0.5 to 2", Fast-SCNN 3.1 "random
# resizing between 0.5 to 2"): the default of `AugmentConfig`, `make_dataset`, `TrainConfig` and the presets.
PAPER_SCALE_RANGE = (0.5, 2.0)

# Positions in the per-example vector of uniform draws. Draws added later (channel noise, aspect) come from seeds
# folded from the example's seed, so that adding one never changes the others.
_SCALE, _OFFSET_Y, _OFFSET_X, _FLIP, _BRIGHTNESS, _CONTRAST, _SATURATION, _HUE = range(8)
_NUM_UNIFORMS = 8
_NOISE_SEED, _ASPECT_SEED, _CAPTURE_SEED = 1, 2, 3

# The operations an `AugmentConfig` can switch on (`AugmentConfig.ops`).
OPS = ("scale", "aspect", "flip", "gamma", "exposure", "white_balance", "hue", "saturation", "brightness",
       "contrast", "channel_noise")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the training augmentation; pixel values are on the 0-255 scale.

    Attributes:
        scale_range: (min, max) of the uniformly drawn scale factor.
        flip: flip horizontally with probability 1/2.
        brightness_delta: offset added to every channel, uniform in [-delta, delta].
        contrast_range: factor of the distance to each channel's mean, uniform in the range.
        saturation_range: factor of the distance to the grey (luma) value, uniform in the range.
        hue_delta: hue rotation, uniform in [-delta, delta] of a full turn (as `tf.image.random_hue`'s max_delta).
        channel_noise_std: standard deviation of an independent Gaussian offset per colour channel.
        aspect_range: (min, max) of a factor on the width's scale alone, log-uniform (1, 1: none).
        gamma_range: (min, max) of an exponent ``g`` of the tone curve ``x -> 255 (x / 255) ** g``, log-uniform
            (1, 1: none). Applied first, to the pixels as decoded (g > 1 darkens the mid-tones, g < 1 brightens them).
        exposure_range: (min, max) of a gain on every channel, log-uniform (1, 1: none): a longer or shorter
            exposure (a gain above 1 saturates the highlights at 255, as an over-exposed frame does).
        white_balance_range: (min, max) of a gain per colour channel, drawn independently and log-uniform for each
            of R, G, B (1, 1: none): another white balance or colour of the light.
        cutmix: probability that an image of a training batch gets a box of another image of the batch pasted in,
            labels too (`cutmix`; 0: never). Not in either paper: this project's option. It acts on batches, not on
            examples, so it is not one of `ops()`.
        classmix: probability that an image of a training batch gets the pixels of half the classes of another image
            of the batch pasted in, labels too (`classmix`, after ClassMix, Olsson et al., 2021; 0: never). Not in
            either paper: this project's option, batch-level like ``cutmix``.

    The defaults are every operation either paper lists (`BOTH_PAPERS`), with this project's magnitudes.
    """

    scale_range: tuple = PAPER_SCALE_RANGE
    flip: bool = True
    brightness_delta: float = 24.0
    contrast_range: tuple = (0.8, 1.2)
    saturation_range: tuple = (0.8, 1.2)
    hue_delta: float = 0.05
    channel_noise_std: float = 6.0
    aspect_range: tuple = (1.0, 1.0)
    gamma_range: tuple = (1.0, 1.0)
    exposure_range: tuple = (1.0, 1.0)
    white_balance_range: tuple = (1.0, 1.0)
    cutmix: float = 0.0
    classmix: float = 0.0

    def __post_init__(self):
        for name in ("scale_range", "contrast_range", "saturation_range", "aspect_range", "gamma_range",
                     "exposure_range", "white_balance_range"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 2 or not 0 <= value[0] <= value[1]:
                raise ValueError(f"AugmentConfig.{name} must be (min, max) with 0 <= min <= max, got {value}")
            object.__setattr__(self, name, value)
        for name in ("scale_range", "aspect_range", "gamma_range", "exposure_range", "white_balance_range"):
            if getattr(self, name)[0] <= 0:  # drawn log-uniform (or a scale): zero is no factor
                raise ValueError(f"AugmentConfig.{name} must be positive, got {getattr(self, name)}")
        for name in ("brightness_delta", "hue_delta", "channel_noise_std"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"AugmentConfig.{name} must be zero or positive, got {getattr(self, name)!r}")
        for name in ("cutmix", "classmix"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"AugmentConfig.{name} must be a probability in [0, 1], got {getattr(self, name)!r}")

    def ops(self):
        """The names of the operations this configuration switches on, in the order of `OPS`.

        ``scale`` is on when the scale range is not (1, 1); the crop is always on (a batch needs one size).
        """
        on = {
            "scale": self.scale_range != (1.0, 1.0),
            "aspect": self.aspect_range != (1.0, 1.0),
            "flip": self.flip,
            "gamma": self.gamma_range != (1.0, 1.0),
            "exposure": self.exposure_range != (1.0, 1.0),
            "white_balance": self.white_balance_range != (1.0, 1.0),
            "hue": self.hue_delta > 0,
            "saturation": self.saturation_range != (1.0, 1.0),
            "brightness": self.brightness_delta > 0,
            "contrast": self.contrast_range != (1.0, 1.0),
            "channel_noise": self.channel_noise_std > 0,
        }
        return tuple(op for op in OPS if on[op])


# Named configurations (`TrainConfig.augment`, `--augment`). The scale range of each is the papers' 0.5-2; training
# replaces it with `TrainConfig.scale_range`. Every magnitude below is this project's choice: the papers name the
# operations only.
_OFF = dict(brightness_delta=0.0, contrast_range=(1.0, 1.0), saturation_range=(1.0, 1.0), hue_delta=0.0,
            channel_noise_std=0.0)
# Fast-SCNN 3.1: random resizing 0.5-2, translation/crop, horizontal flip, colour channel noise, brightness.
FAST_SCNN_PAPER = AugmentConfig(**{**_OFF, "brightness_delta": 24.0, "channel_noise_std": 6.0})
# ContextNet 3.1: random scale 0.5-2, horizontal flip, hue, saturation, brightness, contrast.
CONTEXTNET_PAPER = AugmentConfig(**{**_OFF, "brightness_delta": 24.0, "contrast_range": (0.8, 1.2),
                                    "saturation_range": (0.8, 1.2), "hue_delta": 0.05})
# Every operation of both lists: the default before each preset had its own (the published CamVid models of
# 2026-12 were trained with it).
BOTH_PAPERS = AugmentConfig()
# Ours, for CamVid's 367-468 frames: every colour operation at about 1.5x the ranges above, and the width's scale
# varied by up to 1.25x against the height's.
CAMVID_STRONG = AugmentConfig(brightness_delta=40.0, contrast_range=(0.7, 1.3), saturation_range=(0.7, 1.3),
                              hue_delta=0.08, channel_noise_std=10.0, aspect_range=(0.8, 1.25))
# Ours, issue 16's eleventh lever: CAMVID_STRONG plus the changes of light and camera between CamVid's drives, which
# its colour operations (small offsets and factors around each image's own means) do not reach. The three drives'
# mean pixel values are about 60 (0001TP, dusk), 100 (0016E5) and 137 (0006R0, bright), their median luma 32, 72 and
# 113, and 0001TP's red/green ratio 0.85 against 0.96-1.0 (docs/data.md, "Eleventh session"): a gain of 0.5-2 covers
# one drive's exposure from another's, the tone curve's exponent 0.67-1.5 the difference in the mid-tones, a gain of
# 0.9-1.11 per channel the colour of the light.
CAMVID_PHOTOMETRIC = dataclasses.replace(CAMVID_STRONG, gamma_range=(1 / 1.5, 1.5), exposure_range=(0.5, 2.0),
                                         white_balance_range=(0.9, 1 / 0.9))
# Only the random scale and the crop (no flip, no colour): the baseline of augmentation studies.
NO_AUGMENTATION = AugmentConfig(**_OFF, flip=False)

AUGMENTATIONS = {
    "both_papers": BOTH_PAPERS,
    "fast_scnn_paper": FAST_SCNN_PAPER,
    "contextnet_paper": CONTEXTNET_PAPER,
    "camvid_strong": CAMVID_STRONG,
    "camvid_photometric": CAMVID_PHOTOMETRIC,
    "none": NO_AUGMENTATION,
}


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Geometric draws of one example: scaled size, crop window offset in the scaled image, flip."""

    scaled_size: tf.Tensor  # int32 [2]: round(H * s), round(W * s)
    offset: tf.Tensor  # int32 [2]: top-left of the crop window in the scaled image; negative means padding
    flip: tf.Tensor  # bool []


@dataclasses.dataclass(frozen=True)
class ColorJitter:
    """Photometric draws of one example."""

    brightness: tf.Tensor
    contrast: tf.Tensor
    saturation: tf.Tensor
    hue: tf.Tensor  # fraction of a full turn
    channel_noise: tf.Tensor  # float32 [3]
    gain: tf.Tensor = None  # float32 [3], exposure times white balance per channel; None: off
    gamma: tf.Tensor = None  # exponent of the tone curve; None: off


def sample(seed, image_size, crop_size, config):
    """Draws the geometry and colour jitter of one example from a stateless seed.

    Args:
        seed: int32/int64 tensor [2].
        image_size: int32 tensor [2], (H, W) of the source image.
        crop_size: (crop_h, crop_w) Python ints.
        config: `AugmentConfig`.

    Returns:
        (`Geometry`, `ColorJitter`).
    """
    u = tf.random.stateless_uniform([_NUM_UNIFORMS], seed)
    lo, hi = config.scale_range
    scale = lo + (hi - lo) * u[_SCALE]
    if config.aspect_range != (1.0, 1.0):  # (height, width) scales s, s * a with log a uniform
        u_aspect = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(seed, _ASPECT_SEED))
        scale = tf.stack([scale, scale * _log_uniform(u_aspect, config.aspect_range)])
    scaled = tf.maximum(tf.cast(tf.round(tf.cast(image_size, tf.float32) * scale), tf.int32), 1)
    crop = tf.constant(crop_size, tf.int32)
    # The window's top-left is uniform over all positions where window and scaled image overlap completely along an
    # axis: inside the image when it is larger than the crop, else the image lands anywhere inside the padded crop.
    span = tf.abs(scaled - crop) + 1
    u_offset = tf.stack([u[_OFFSET_Y], u[_OFFSET_X]])
    offset = tf.minimum(tf.cast(u_offset * tf.cast(span, tf.float32), tf.int32), span - 1)
    offset += tf.minimum(scaled - crop, 0)
    flip = tf.logical_and(tf.constant(config.flip), u[_FLIP] < 0.5)

    def uniform(index, low, high):
        return low + (high - low) * u[index]

    jitter = ColorJitter(
        brightness=uniform(_BRIGHTNESS, -config.brightness_delta, config.brightness_delta),
        contrast=uniform(_CONTRAST, *config.contrast_range),
        saturation=uniform(_SATURATION, *config.saturation_range),
        hue=uniform(_HUE, -config.hue_delta, config.hue_delta),
        channel_noise=config.channel_noise_std
        * tf.random.stateless_normal([3], tf.random.experimental.stateless_fold_in(seed, _NOISE_SEED)),
        **_capture(seed, config),
    )
    return Geometry(scaled, offset, flip), jitter


def _log_uniform(u, value_range):
    """Maps uniform draws ``u`` in [0, 1) to log-uniform values in ``value_range`` (min, max), both positive."""
    log_lo, log_hi = (math.log(v) for v in value_range)
    return tf.exp(log_lo + (log_hi - log_lo) * u)


def _capture(seed, config):
    """The draws of the tone curve, the exposure and the white balance (`ColorJitter.gamma`, `.gain`), from a seed of
    their own so that switching them on changes no other draw; an empty dict when all three are off."""
    on = set(config.ops()) & {"gamma", "exposure", "white_balance"}
    if not on:
        return {}
    u = tf.random.stateless_uniform([5], tf.random.experimental.stateless_fold_in(seed, _CAPTURE_SEED))
    draws = {}
    if "gamma" in on:
        draws["gamma"] = _log_uniform(u[0], config.gamma_range)
    if on - {"gamma"}:
        draws["gain"] = _log_uniform(u[1], config.exposure_range) * _log_uniform(u[2:], config.white_balance_range)
    return draws


def cutmix_boxes(seed, batch_size, image_size, probability):
    """Draws the boxes of `cutmix`: int32 [B, 4] rows (top, left, bottom, right), empty where no box is pasted.

    As in CutMix (Yun et al., 2019): the kept fraction of the image ``lambda`` is uniform in [0, 1], the box has
    sides ``sqrt(1 - lambda)`` of the image's, its centre is uniform over the image and it is clipped at the border
    (so a box near the border is smaller). Each image gets one with probability `probability`.
    """
    u = tf.random.stateless_uniform([batch_size, 4], seed)
    size = tf.cast(image_size, tf.float32)  # (H, W)
    side = tf.sqrt(u[:, 1:2]) * size  # 1 - lambda is uniform too
    centre = u[:, 2:4] * size
    low = tf.clip_by_value(tf.round(centre - side / 2), 0.0, size)
    high = tf.clip_by_value(tf.round(centre + side / 2), 0.0, size)
    boxes = tf.cast(tf.concat([low, high], axis=1), tf.int32)
    return tf.where(u[:, :1] < probability, boxes, tf.zeros_like(boxes))


def cutmix(images, labels, seed, probability):
    """CutMix for dense labels: image ``i`` of the batch gets a box of image ``i - 1`` (cyclically), labels too.

    Args:
        images: float32 [B, H, W, 3].
        labels: int32 [B, H, W] (ignored pixels travel with their box like any other label).
        seed: int32/int64 tensor [2] of this batch (stateless: the same seed pastes the same boxes).
        probability: chance that an image gets a box (`cutmix_boxes`). A batch of one is returned unchanged.

    Returns:
        (images, labels) of the same shapes; every pixel comes from exactly one of the two images, with its label.
    """
    shape = tf.shape(labels)
    boxes = cutmix_boxes(seed, shape[0], shape[1:3], probability)
    rows = tf.range(shape[1])[None, :, None]
    cols = tf.range(shape[2])[None, None, :]
    top, left, bottom, right = (boxes[:, i, None, None] for i in range(4))
    inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)  # [B, H, W]
    mixed_images = tf.where(inside[..., None], tf.roll(images, 1, axis=0), images)
    return mixed_images, tf.where(inside, tf.roll(labels, 1, axis=0), labels)


def classmix_classes(seed, present, probability):
    """Draws the classes `classmix` pastes: bool [B, C], half of each source image's classes (rounded up).

    As in ClassMix (Olsson et al., 2021): of the ``n`` classes present in the source image, ``ceil(n / 2)`` drawn
    uniformly without replacement; an image gets any with probability `probability` (otherwise none).

    Args:
        seed: int32/int64 tensor [2] (stateless).
        present: bool [B, C], the classes present in each source image.
        probability: chance that an image gets classes pasted.
    """
    shape = tf.shape(present)
    draws = tf.random.stateless_uniform([shape[0], shape[1] + 1], seed)
    keys = tf.where(present, draws[:, 1:], 2.0)  # absent classes sort last
    rank = tf.argsort(tf.argsort(keys, axis=1), axis=1)
    count = tf.reduce_sum(tf.cast(present, tf.int32), axis=1, keepdims=True)
    chosen = present & (rank < (count + 1) // 2)
    return chosen & (draws[:, :1] < probability)


def classmix(images, labels, seed, probability, num_classes):
    """ClassMix for dense labels: image ``i`` of the batch gets, from image ``i - 1`` (cyclically), the pixels of
    half the classes present there (`classmix_classes`), labels too; ignored pixels of the source are never pasted.

    Args:
        images: float32 [B, H, W, 3].
        labels: int32 [B, H, W], train ids in [0, num_classes); any other value (255) is ignored.
        seed: int32/int64 tensor [2] of this batch (stateless).
        probability: chance that an image gets classes pasted. A batch of one is returned unchanged.
        num_classes: number of train ids.

    Returns:
        (images, labels) of the same shapes; every pixel comes from exactly one of the two images, with its label.
    """
    source_images, source_labels = tf.roll(images, 1, axis=0), tf.roll(labels, 1, axis=0)
    valid = (source_labels >= 0) & (source_labels < num_classes)
    ids = tf.where(valid, source_labels, 0)
    present = tf.reduce_any(tf.equal(ids[..., None], tf.range(num_classes)) & valid[..., None], axis=[1, 2])
    chosen = classmix_classes(seed, present, probability)
    pasted = tf.gather(chosen, ids, batch_dims=1) & valid  # [B, H, W]
    return tf.where(pasted[..., None], source_images, images), tf.where(pasted, source_labels, labels)


def _valid_window(geometry, crop_size):
    """Part of the crop window inside the scaled image: start and end in scaled pixels, and the padding around it."""
    crop = tf.constant(crop_size, tf.int32)
    start = tf.maximum(geometry.offset, 0)
    end = tf.minimum(geometry.offset + crop, geometry.scaled_size)
    before = start - geometry.offset
    after = crop - (end - geometry.offset)
    return start, end, before, after


def scale_crop(image, label, geometry, crop_size):
    """Scales by ``geometry`` and cuts the part of the crop window that lies inside the scaled image.

    Only those output pixels are computed: one `tf.image.crop_and_resize` per tensor with bilinear sampling for the
    image and nearest for the label, horizontal flip included.

    Args:
        image: uint8 or float32 [H, W, 3].
        label: uint8 [H, W] (any integer values 0-255).
        geometry: `Geometry`.
        crop_size: (crop_h, crop_w).

    Returns:
        (float32 image [h, w, 3], int32 label [h, w], paddings int32 [2, 2]) where h <= crop_h, w <= crop_w and
        ``paddings`` (before/after per axis) completes the valid part to the crop window, mirrored when flipped.
    """
    size = tf.shape(image)[:2]
    start, end, before, after = _valid_window(geometry, crop_size)
    out_size = end - start
    scale = tf.cast(geometry.scaled_size, tf.float32) / tf.cast(size, tf.float32)
    # Source coordinates of the first and last output pixel, +1 for the replicated border added below.
    first = (tf.cast(start, tf.float32) + 0.5) / scale + 0.5
    last = (tf.cast(end - 1, tf.float32) + 0.5) / scale + 0.5
    span = tf.cast(size + 1, tf.float32)  # size of the bordered image - 1
    box = tf.concat([first / span, last / span], 0)  # (y1, x1, y2, x2)
    box = tf.where(geometry.flip, tf.gather(box, [0, 3, 2, 1]), box)
    boxes = box[tf.newaxis]
    box_indices = tf.zeros([1], tf.int32)
    out_image = tf.image.crop_and_resize(_replicate_border(image), boxes, box_indices, out_size)[0]
    out_label = tf.image.crop_and_resize(
        _replicate_border(label[..., tf.newaxis]), boxes, box_indices, out_size, method="nearest"
    )[0, ..., 0]
    pad_x = tf.where(geometry.flip, tf.stack([after[1], before[1]]), tf.stack([before[1], after[1]]))
    paddings = tf.stack([tf.stack([before[0], after[0]]), pad_x])
    return out_image, tf.cast(out_label, tf.int32), paddings


def _replicate_border(x):
    """Adds a one-pixel border that repeats the edge pixels and a batch axis: [H, W, C] -> [1, H + 2, W + 2, C]."""
    x = tf.concat([x[:1], x, x[-1:]], 0)
    return tf.concat([x[:, :1], x, x[:, -1:]], 1)[tf.newaxis]


def pad(image, label, paddings, mean_rgb):
    """Pads image [h, w, 3] with ``mean_rgb`` and label [h, w] with the ignore label by ``paddings`` [2, 2].

    The image is padded by concatenating blocks of the mean colour: subtracting and adding the mean around a
    `tf.pad` costs two broadcast passes over the image, ten times more.
    """
    mean = tf.constant(mean_rgb, tf.float32)

    def pad_image():
        height = tf.shape(image)[0]
        padded = tf.concat([tf.broadcast_to(mean, [height, paddings[1, 0], 3]), image,
                            tf.broadcast_to(mean, [height, paddings[1, 1], 3])], 1)
        width = tf.shape(padded)[1]
        return tf.concat([tf.broadcast_to(mean, [paddings[0, 0], width, 3]), padded,
                          tf.broadcast_to(mean, [paddings[0, 1], width, 3])], 0)

    needed = tf.reduce_any(paddings > 0)
    image = tf.cond(needed, pad_image, lambda: image)
    label = tf.cond(needed, lambda: tf.pad(label, paddings, constant_values=IGNORE_LABEL), lambda: label)
    return image, label


def color_matrix(jitter, mean):
    """The colour jitter as one affine map ``x -> x @ matrix + offset`` on RGB rows (0-255 scale).

    Applied in the order gain, saturation, hue, contrast, brightness, channel noise:

    - gain (when ``jitter.gain`` is set): exposure times white balance, a factor per channel;
    - saturation: ``grey + s * (x - grey)`` with ``grey`` the luma of ``x``;
    - hue: rotation by ``2 pi hue`` about the grey axis (1, 1, 1), which keeps greys grey; a third of a turn moves R to
      G, G to B and B to R, as a hue shift of 120 degrees does;
    - contrast: ``mean_c + c * (x - mean_c)`` per channel, as `tf.image.adjust_contrast`, with the channel means of
      the image after the two steps above;
    - brightness and channel noise: offsets.

    Args:
        jitter: `ColorJitter`.
        mean: float32 [3], the per-channel mean of the image before jitter (after the tone curve, `tone_curve`).

    Returns:
        (matrix float32 [3, 3], offset float32 [3]).
    """
    luma = tf.constant(LUMA_WEIGHTS, tf.float32)
    eye = tf.eye(3)
    saturation = jitter.saturation * eye + (1.0 - jitter.saturation) * luma[:, tf.newaxis] * tf.ones([1, 3])
    matrix = saturation @ tf.transpose(hue_rotation(jitter.hue))
    if jitter.gain is not None:
        matrix = jitter.gain[:, tf.newaxis] * matrix
    jittered_mean = mean[tf.newaxis] @ matrix
    matrix = matrix * jitter.contrast
    offset = (1.0 - jitter.contrast) * jittered_mean[0] + jitter.brightness + jitter.channel_noise
    return matrix, offset


def hue_rotation(hue):
    """The 3x3 matrix (for column vectors) of a rotation by ``2 pi hue`` about the grey axis (1, 1, 1) of RGB."""
    angle = 2.0 * math.pi * tf.cast(hue, tf.float32)
    axis = np.full(3, 1.0 / math.sqrt(3.0), np.float32)
    cross = tf.constant([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    # Rodrigues' formula.
    return tf.cos(angle) * tf.eye(3) + tf.sin(angle) * cross + (1.0 - tf.cos(angle)) * np.outer(axis, axis)


def tone_curve(image, gamma):
    """``255 (x / 255) ** gamma`` on float32 pixels in [0, 255] (the ``gamma_range`` operation)."""
    return 255.0 * tf.pow(image / 255.0, gamma)


def apply_color(image, jitter):
    """Applies the tone curve (when ``jitter.gamma`` is set), then `color_matrix`, to float32 image [h, w, 3]
    (0-255) and clips to [0, 255]."""
    if jitter.gamma is not None:
        image = tone_curve(image, jitter.gamma)
    mean = tf.reduce_mean(image, axis=[0, 1])
    matrix, offset = color_matrix(jitter, mean)
    # A 1x1 convolution with a bias applies the matrix and offset to every pixel in one fused pass; an einsum plus
    # "+ offset" (a [3] vector broadcast over [h, w, 3]) takes three times as long.
    out = tf.nn.bias_add(tf.nn.conv2d(image[tf.newaxis], matrix[tf.newaxis, tf.newaxis], 1, "VALID"), offset)
    return tf.clip_by_value(out[0], 0.0, 255.0)


def augment(image, label_values, to_train_ids, seed, crop_size, config, mean_rgb):
    """Training augmentation of one example (the fast path).

    Args:
        image: uint8 [H, W, 3].
        label_values: uint8 [H, W] as stored in the label file.
        to_train_ids: function ``values -> int32 train ids`` (see `decode.train_id_mapper`); applied to the crop
            only, so it costs a crop's worth of lookups.
        seed: int tensor [2].
        crop_size: (crop_h, crop_w).
        config: `AugmentConfig`.
        mean_rgb: padding colour.

    Returns:
        float32 image [crop_h, crop_w, 3] in [0, 255] and int32 train ids [crop_h, crop_w] with 255 as ignore.
    """
    geometry, jitter = sample(seed, tf.shape(image)[:2], crop_size, config)
    image, values, paddings = scale_crop(image, label_values, geometry, crop_size)
    label = to_train_ids(values)
    image = apply_color(image, jitter)
    image, label = pad(image, label, paddings, mean_rgb)
    return tf.ensure_shape(image, [*crop_size, 3]), tf.ensure_shape(label, crop_size)


def reference_scale_crop(image, label, geometry, crop_size, mean_rgb):
    """Straightforward geometry: resize the whole image, cut the crop window, flip, pad with mean/ignore.

    Same arguments as `scale_crop` (label: any integer dtype; padding uses 255); returns the full crop window.
    """
    image, label, paddings = _reference_window(image, label, geometry, crop_size)
    return reference_pad(image, label, paddings, mean_rgb)


def _reference_window(image, label, geometry, crop_size):
    """The part of the crop window inside the whole resized image, flipped, and the paddings that complete it."""
    image = tf.image.resize(tf.cast(image, tf.float32), geometry.scaled_size)
    label = tf.image.resize(label[..., tf.newaxis], geometry.scaled_size, method="nearest")[..., 0]
    start, end, before, after = _valid_window(geometry, crop_size)
    image, label = image[start[0]:end[0], start[1]:end[1]], tf.cast(label[start[0]:end[0], start[1]:end[1]], tf.int32)
    image = tf.where(geometry.flip, tf.reverse(image, [1]), image)
    label = tf.where(geometry.flip, tf.reverse(label, [1]), label)
    before_x = tf.where(geometry.flip, after[1], before[1])
    after_x = tf.where(geometry.flip, before[1], after[1])
    paddings = tf.stack([tf.stack([before[0], after[0]]), tf.stack([before_x, after_x])])
    return image, label, paddings


def reference_pad(image, label, paddings, mean_rgb):
    """`pad` with `tf.pad`: the image padded with ``mean_rgb``, the label with the ignore label."""
    mean = tf.constant(mean_rgb, tf.float32)
    image = tf.pad(image - mean, tf.concat([paddings, [[0, 0]]], 0)) + mean
    return image, tf.pad(label, paddings, constant_values=IGNORE_LABEL)


def reference_color(image, jitter):
    """The colour jitter of `apply_color` one step after another, on 0-255 floats.

    The tone curve is `tf.image.adjust_gamma` on the image scaled to [0, 1], the gain a product per channel; then
    saturation blends with `tf.image.rgb_to_grayscale`'s luma, hue rotates every pixel about the grey axis, contrast
    is `tf.image.adjust_contrast`, then brightness and channel noise are added and the result clipped: the same
    definition as `apply_color`, without folding the steps into one matrix.
    """
    if jitter.gamma is not None:
        image = tf.image.adjust_gamma(image / 255.0, jitter.gamma) * 255.0
    if jitter.gain is not None:
        image = image * jitter.gain
    grey = tf.image.rgb_to_grayscale(image)
    image = grey + jitter.saturation * (image - grey)
    image = tf.einsum("hwc,dc->hwd", image, hue_rotation(jitter.hue))
    image = tf.image.adjust_contrast(image, jitter.contrast)
    image = image + jitter.brightness + jitter.channel_noise
    return tf.clip_by_value(image, 0.0, 255.0)


def reference_augment(image, label_values, to_train_ids, seed, crop_size, config, mean_rgb):
    """The straightforward version of `augment` (same arguments and draws): the input benchmark's baseline.

    Like `augment`, the colour jitter sees only the image inside the crop window (its contrast uses their mean) and
    the padding added after it is exactly ``mean_rgb``.
    """
    geometry, jitter = sample(seed, tf.shape(image)[:2], crop_size, config)
    image, label, paddings = _reference_window(image, to_train_ids(label_values), geometry, crop_size)
    image, label = reference_pad(reference_color(image, jitter), label, paddings, mean_rgb)
    return tf.ensure_shape(image, [*crop_size, 3]), tf.ensure_shape(label, crop_size)
