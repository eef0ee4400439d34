"""Augmentation: the fast crop equals the straightforward one, labels stay aligned, flip/crop/padding invariants,
colour jitter against tf.image, and seeded determinism."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from contextnet_tf.data import augment
from contextnet_tf.data.decode import train_id_mapper

MEAN = (73.0, 83.0, 72.0)
NO_COLOR = dict(brightness_delta=0.0, contrast_range=(1.0, 1.0), saturation_range=(1.0, 1.0), hue_delta=0.0,
                channel_noise_std=0.0, gamma_range=(1.0, 1.0), exposure_range=(1.0, 1.0),
                white_balance_range=(1.0, 1.0))
TO_TRAIN_IDS = train_id_mapper("camvid")  # values 0..10 map to themselves


def _identity_ids(values):
    return TO_TRAIN_IDS(values, "test")


def _random_example(rng, size=(37, 53)):
    image = tf.constant(rng.integers(0, 256, (*size, 3)), tf.uint8)
    label = tf.constant(rng.integers(0, 11, size), tf.uint8)
    return image, label


def _random_geometry(rng, size, crop, scale_range=(0.5, 2.0)):
    scale = rng.uniform(*scale_range)
    scaled = [max(1, round(size[0] * scale)), max(1, round(size[1] * scale))]
    offset = [int(rng.integers(min(0, s - c), max(0, s - c) + 1)) for s, c in zip(scaled, crop)]
    return augment.Geometry(tf.constant(scaled), tf.constant(offset), tf.constant(bool(rng.integers(2))))


def test_fast_scale_crop_equals_resize_then_crop():
    rng = np.random.default_rng(0)
    image, label = _random_example(rng)
    crop = (24, 40)

    @tf.function
    def fast(scaled_size, offset, flip):
        crop_image, crop_label, paddings = augment.scale_crop(
            image, label, augment.Geometry(scaled_size, offset, flip), crop)
        return augment.pad(crop_image, crop_label, paddings, MEAN)

    for scale_range in [(0.5, 0.5), (1.0, 1.0), (2.0, 2.0), (0.5, 2.0)]:
        for _ in range(12):
            geometry = _random_geometry(rng, (37, 53), crop, scale_range)
            fast_image, fast_label = fast(geometry.scaled_size, geometry.offset, geometry.flip)
            ref_image, ref_label = augment.reference_scale_crop(image, label, geometry, crop, MEAN)
            np.testing.assert_allclose(fast_image.numpy(), ref_image.numpy(), atol=0.01)
            ties = _ties(geometry, (37, 53), crop)
            np.testing.assert_array_equal(fast_label.numpy()[~ties], ref_label.numpy()[~ties])


def _ties(geometry, size, crop):
    """Pixels of the crop whose source row or column lies exactly halfway between two source pixels.

    There nearest-neighbour sampling has no right answer and float rounding picks either side, differently in
    `tf.image.resize` and `tf.image.crop_and_resize`.
    """
    masks = []
    for axis in range(2):
        scaled, offset = int(geometry.scaled_size[axis]), int(geometry.offset[axis])
        position = offset + np.arange(crop[axis])
        # Source coordinate + 0.5 = (position + 0.5) * size / scaled; a tie when that is an integer.
        masks.append((position >= 0) & (position < scaled) & ((2 * position + 1) * size[axis] % (2 * scaled) == 0))
    rows, cols = masks
    if bool(geometry.flip):
        cols = cols[::-1]
    return rows[:, None] | cols[None, :]


def _block_pattern(size=(64, 96), block=8):
    """Blocks of one class each, every class with its own well separated colour."""
    rows, cols = np.indices(size) // block
    label = ((rows * 5 + cols * 3) % 11).astype(np.uint8)
    palette = np.random.default_rng(5).integers(0, 256, (11, 3)).astype(np.uint8)
    # No blend of two colours (as bilinear sampling across a block edge makes) may look like a third colour.
    weights = np.linspace(0, 1, 101)[:, None]
    for a in range(11):
        for b in range(11):
            blends = weights * palette[a] + (1 - weights) * palette[b]
            others = [c for c in range(11) if c not in (a, b)]
            assert np.abs(blends[:, None] - palette[others][None].astype(float)).max(-1).min() > 2
    return tf.constant(palette[label]), tf.constant(label), palette.astype(np.float32)


@pytest.mark.parametrize("crop", [(48, 48), (80, 120)])
def test_augment_keeps_image_and_label_aligned(crop):
    image, label, palette = _block_pattern()
    config = augment.AugmentConfig(**NO_COLOR)
    run = tf.function(lambda seed: augment.augment(image, label, _identity_ids, seed, crop, config, MEAN))
    checked = 0
    for seed in range(16):
        out_image, out_label = (t.numpy() for t in run(tf.constant([seed, 1], tf.int64)))
        assert out_image.shape == (*crop, 3) and out_label.shape == crop and out_label.dtype == np.int32
        distance = np.abs(out_image[:, :, None, :] - palette[None, None]).max(-1)  # [h, w, classes]
        pure = distance.min(-1) < 0.5  # pixels inside a block, not blended across a block edge
        valid = out_label != 255
        assert np.array_equal(distance.argmin(-1)[pure & valid], out_label[pure & valid])
        # Padding: exactly the mean colour with ignore labels, and never a pure palette colour.
        assert np.allclose(out_image[~valid], MEAN, atol=1e-3)
        checked += (pure & valid).sum()
        assert (pure & valid).mean() > 0.3 * valid.mean()
    assert checked > 10000


def test_flip_mirrors_the_unflipped_crop():
    rng = np.random.default_rng(1)
    image, label = _random_example(rng)
    flipping = augment.AugmentConfig(**NO_COLOR)
    never = augment.AugmentConfig(**NO_COLOR, flip=False)
    flipped = 0
    for seed in range(12):
        seed = tf.constant([seed, 0], tf.int64)
        a_image, a_label = augment.augment(image, label, _identity_ids, seed, (30, 30), flipping, MEAN)
        b_image, b_label = augment.augment(image, label, _identity_ids, seed, (30, 30), never, MEAN)
        if np.array_equal(a_label.numpy(), b_label.numpy()) and np.allclose(a_image, b_image):
            continue
        np.testing.assert_array_equal(a_label.numpy(), b_label.numpy()[:, ::-1])
        np.testing.assert_allclose(a_image.numpy(), b_image.numpy()[:, ::-1], atol=0.01)
        flipped += 1
    assert 3 <= flipped <= 9


def test_small_scale_pads_with_mean_and_ignore_exactly():
    image = tf.fill([40, 60, 3], tf.constant(200, tf.uint8))
    label = tf.fill([40, 60], tf.constant(3, tf.uint8))
    config = augment.AugmentConfig(**NO_COLOR, scale_range=(0.5, 0.5))
    for seed in range(4):
        out_image, out_label = augment.augment(image, label, _identity_ids, tf.constant([seed, 9]), (32, 48),
                                               config, MEAN)
        out_image, out_label = out_image.numpy(), out_label.numpy()
        # The image shrinks to 20x30 and lands somewhere inside the 32x48 crop.
        assert (out_label == 3).sum() == 20 * 30 and (out_label == 255).sum() == 32 * 48 - 20 * 30
        rows, cols = np.nonzero(out_label == 3)
        assert rows.max() - rows.min() == 19 and cols.max() - cols.min() == 29
        np.testing.assert_allclose(out_image[out_label == 255], np.broadcast_to(MEAN, (32 * 48 - 600, 3)))
        np.testing.assert_allclose(out_image[out_label == 3], 200.0, atol=1e-3)


def test_large_scale_needs_no_padding():
    rng = np.random.default_rng(2)
    image, label = _random_example(rng, (40, 60))
    config = augment.AugmentConfig(scale_range=(1.0, 2.0))
    for seed in range(6):
        _, out_label = augment.augment(image, label, _identity_ids, tf.constant([seed, 3]), (40, 40), config, MEAN)
        assert out_label.numpy().max() <= 10


def test_samples_stay_in_range():
    config = augment.AugmentConfig()
    scales, flips = [], []
    for seed in range(200):
        geometry, jitter = augment.sample(tf.constant([seed, 5]), tf.constant([100, 200]), (64, 64), config)
        scaled, offset = geometry.scaled_size.numpy(), geometry.offset.numpy()
        scales.append(scaled[0] / 100)
        flips.append(bool(geometry.flip))
        for s, o, c in zip(scaled, offset, (64, 64)):
            assert min(0, s - c) <= o <= max(0, s - c)
        assert -24 <= float(jitter.brightness) <= 24 and 0.8 <= float(jitter.contrast) <= 1.2
        assert 0.8 <= float(jitter.saturation) <= 1.2 and -0.05 <= float(jitter.hue) <= 0.05
    assert 0.495 <= min(scales) < 0.6 and 1.9 < max(scales) <= 2.005
    assert 70 < sum(flips) < 130


def test_same_seed_same_output_other_seed_other_output():
    rng = np.random.default_rng(3)
    image, label = _random_example(rng)
    config = augment.AugmentConfig()

    def run(seed):
        return [t.numpy() for t in augment.augment(image, label, _identity_ids, tf.constant(seed), (24, 24), config,
                                                   MEAN)]

    a, b, c = run([1, 2]), run([1, 2]), run([1, 3])
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def _jitter(brightness=0.0, contrast=1.0, saturation=1.0, hue=0.0, noise=(0.0, 0.0, 0.0), gain=None, gamma=None):
    return augment.ColorJitter(*(None if v is None else tf.constant(v, tf.float32)
                                 for v in (brightness, contrast, saturation, hue, noise, gain, gamma)))


IMAGE = tf.random.stateless_uniform([12, 10, 3], [4, 2], 20.0, 230.0)


def test_hue_third_turn_rotates_channels_like_tf_image():
    out = augment.apply_color(IMAGE, _jitter(hue=1 / 3))
    np.testing.assert_allclose(out.numpy(), tf.gather(IMAGE, [2, 0, 1], axis=-1).numpy(), atol=1e-3)
    reference = tf.image.adjust_hue(IMAGE / 255.0, 1 / 3) * 255.0
    np.testing.assert_allclose(out.numpy(), reference.numpy(), atol=0.05)


def test_hue_keeps_greys_and_saturation_zero_gives_luma():
    grey = tf.fill([4, 4, 3], 100.0)
    np.testing.assert_allclose(augment.apply_color(grey, _jitter(hue=0.13)).numpy(), 100.0, atol=1e-3)
    out = augment.apply_color(IMAGE, _jitter(saturation=0.0)).numpy()
    luma = (IMAGE.numpy() * np.array(augment.LUMA_WEIGHTS)).sum(-1)
    np.testing.assert_allclose(out, np.repeat(luma[..., None], 3, -1), atol=1e-2)


def test_contrast_brightness_and_channel_noise_match_tf_image():
    out = augment.apply_color(IMAGE, _jitter(brightness=7.0, contrast=1.3, noise=(1.0, -2.0, 3.0)))
    expected = tf.image.adjust_contrast(IMAGE, 1.3) + 7.0 + tf.constant([1.0, -2.0, 3.0])
    np.testing.assert_allclose(out.numpy(), tf.clip_by_value(expected, 0, 255).numpy(), atol=1e-3)
    assert float(tf.reduce_max(augment.apply_color(IMAGE, _jitter(brightness=300.0)))) == 255.0


@pytest.mark.parametrize("crop", [(30, 36), (48, 64)])
@pytest.mark.parametrize("name", sorted(augment.AUGMENTATIONS))
def test_fast_augment_equals_reference_with_padding_and_colour(name, crop):
    """The two paths agree on every named configuration, with every colour operation it has on, and with padding: the
    30x36 crop pads a 37x53 image scaled below about 0.8, the 48x64 crop (larger than the image) below about 1.3, on
    both axes below 1.2."""
    rng = np.random.default_rng(4)
    image, label = _random_example(rng)
    config = augment.AUGMENTATIONS[name]
    colourless = dataclasses.replace(config, **NO_COLOR)  # the same draws and geometry, no colour operation
    padded = padded_both = 0
    for seed in range(10):
        seed = tf.constant([seed, 7])
        fast = augment.augment(image, label, _identity_ids, seed, crop, config, MEAN)
        reference = augment.reference_augment(image, label, _identity_ids, seed, crop, config, MEAN)
        np.testing.assert_allclose(fast[0].numpy(), reference[0].numpy(), atol=0.05)
        geometry, _ = augment.sample(seed, tf.constant([37, 53]), crop, config)
        ties = _ties(geometry, (37, 53), crop)
        np.testing.assert_array_equal(fast[1].numpy()[~ties], reference[1].numpy()[~ties])
        padding = fast[1].numpy() == 255
        padded += padding.any()
        padded_both += bool(padding.all(axis=1).any() and padding.all(axis=0).any())  # whole rows and whole columns
        # Padding is the mean colour exactly, whatever the colour jitter did to the image.
        np.testing.assert_allclose(fast[0].numpy()[padding], np.broadcast_to(MEAN, (padding.sum(), 3)), atol=1e-3)
        np.testing.assert_allclose(reference[0].numpy()[padding], np.broadcast_to(MEAN, (padding.sum(), 3)),
                                   atol=1e-3)
        # The colour operations did act on the image (the comparison above covers them).
        plain = augment.augment(image, label, _identity_ids, seed, crop, colourless, MEAN)[0].numpy()[~padding]
        change = np.abs(fast[0].numpy()[~padding] - plain).mean()
        assert (change > 0.5) if colourless != config else (change < 1e-3), change
    if crop == (30, 36):
        assert 2 <= padded <= 8
    else:
        assert 3 <= padded <= 9 and padded_both >= 2


@pytest.mark.parametrize("capture", [{}, dict(gain=(1.6, 1.4, 1.5), gamma=0.8), dict(gain=(0.55, 0.6, 0.5))])
def test_reference_colour_is_the_colour_matrix_step_by_step(capture):
    jitter_args = dict(brightness=-9.0, contrast=1.25, saturation=0.7, hue=0.07, noise=(2.0, -1.0, 0.5))
    jitter = _jitter(**jitter_args, **capture)
    fast = augment.apply_color(IMAGE, jitter).numpy()
    np.testing.assert_allclose(fast, augment.reference_color(IMAGE, jitter).numpy(), atol=1e-3)
    assert np.abs(fast - IMAGE.numpy()).mean() > 5  # the jitter did something
    if capture:  # and the gain and tone curve did something on top of the rest
        assert np.abs(fast - augment.apply_color(IMAGE, _jitter(**jitter_args)).numpy()).mean() > 5


def test_tone_curve_is_tf_image_adjust_gamma_and_keeps_black_and_white():
    for gamma in (0.67, 1.0, 1.5):
        out = augment.apply_color(IMAGE, _jitter(gamma=gamma)).numpy()
        np.testing.assert_allclose(out, tf.image.adjust_gamma(IMAGE / 255.0, gamma).numpy() * 255.0, atol=1e-3)
        ends = augment.tone_curve(tf.constant([0.0, 255.0]), tf.constant(gamma)).numpy()
        np.testing.assert_allclose(ends, [0.0, 255.0], atol=1e-3)
    assert augment.apply_color(IMAGE, _jitter(gamma=1.5)).numpy().mean() < IMAGE.numpy().mean() - 10  # darker


def test_gain_multiplies_each_channel_and_saturates_at_white():
    gain = (2.0, 1.0, 0.5)
    out = augment.apply_color(IMAGE, _jitter(gain=gain)).numpy()
    np.testing.assert_allclose(out, np.clip(IMAGE.numpy() * np.array(gain), 0, 255), atol=1e-3)
    assert (out[..., 0] == 255.0).mean() > 0.3  # IMAGE is uniform in [20, 230]: red above 127.5 saturates


# Each paper's list (section 3.1), as operations on or off.
PAPER_OPS = {
    "fast_scnn_paper": ("scale", "flip", "brightness", "channel_noise"),
    "contextnet_paper": ("scale", "flip", "hue", "saturation", "brightness", "contrast"),
}


@pytest.mark.parametrize("name", sorted(PAPER_OPS))
def test_paper_configurations_switch_on_what_the_paper_lists(name):
    config = augment.AUGMENTATIONS[name]
    assert config.ops() == PAPER_OPS[name]
    assert config.scale_range == augment.PAPER_SCALE_RANGE


def test_named_configurations():
    assert augment.BOTH_PAPERS == augment.AugmentConfig()
    assert set(augment.BOTH_PAPERS.ops()) == set(PAPER_OPS["fast_scnn_paper"]) | set(PAPER_OPS["contextnet_paper"])
    assert augment.NO_AUGMENTATION.ops() == ("scale",)
    capture = ("gamma", "exposure", "white_balance")
    assert augment.CAMVID_STRONG.ops() == tuple(op for op in augment.OPS if op not in capture)
    assert augment.CAMVID_PHOTOMETRIC.ops() == augment.OPS
    photometric = dict(gamma_range=(1 / 1.5, 1.5), exposure_range=(0.5, 2.0), white_balance_range=(0.9, 1 / 0.9))
    assert augment.CAMVID_PHOTOMETRIC == dataclasses.replace(augment.CAMVID_STRONG, **photometric)
    with pytest.raises(ValueError, match="exposure_range"):
        augment.AugmentConfig(exposure_range=(0.0, 2.0))
    with pytest.raises(ValueError, match="contrast_range"):
        augment.AugmentConfig(contrast_range=(1.2, 0.8))
    with pytest.raises(ValueError, match="hue_delta"):
        augment.AugmentConfig(hue_delta=-0.1)


# One operation on at a time: (config fields, what it may change).
SINGLE_OPS = {
    "flip": dict(flip=True),
    "hue": dict(hue_delta=0.1),
    "saturation": dict(saturation_range=(0.5, 1.5)),
    "brightness": dict(brightness_delta=30.0),
    "contrast": dict(contrast_range=(0.5, 1.5)),
    "channel_noise": dict(channel_noise_std=8.0),
    "gamma": dict(gamma_range=(0.6, 1.6)),
    "exposure": dict(exposure_range=(0.5, 2.0)),
    "white_balance": dict(white_balance_range=(0.8, 1.25)),
}


@pytest.mark.parametrize("op", sorted(SINGLE_OPS))
def test_an_operation_that_is_off_leaves_pixels_unchanged(op):
    """At scale 1 and a crop of the image's size, a config with every operation off returns the image itself; with
    one operation on, the image changes (for some seeds), and the ops it reports are that one alone."""
    image, label, _ = _block_pattern((24, 32))
    off = dict(NO_COLOR, flip=False, scale_range=(1.0, 1.0))
    config = augment.AugmentConfig(**{**off, **SINGLE_OPS[op]})
    assert config.ops() == (op,)
    changed = 0
    for seed in range(8):
        seed = tf.constant([seed, 11])
        same_image, same_label = augment.augment(image, label, _identity_ids, seed, (24, 32),
                                                 augment.AugmentConfig(**off), MEAN)
        np.testing.assert_allclose(same_image.numpy(), image.numpy().astype(np.float32), atol=1e-3)
        np.testing.assert_array_equal(same_label.numpy(), label.numpy())
        out_image, out_label = augment.augment(image, label, _identity_ids, seed, (24, 32), config, MEAN)
        changed += not np.allclose(out_image.numpy(), image.numpy(), atol=0.5)
        if op != "flip":  # colour never moves a label
            np.testing.assert_array_equal(out_label.numpy(), label.numpy())
    assert changed >= 3


def test_aspect_stretches_the_width_alone():
    config = augment.AugmentConfig(scale_range=(1.0, 1.0), aspect_range=(0.8, 1.25))
    ratios = []
    for seed in range(100):
        geometry, _ = augment.sample(tf.constant([seed, 5]), tf.constant([100, 200]), (64, 64), config)
        height, width = geometry.scaled_size.numpy()
        assert height == 100
        ratios.append(width / 200)
    assert 0.795 <= min(ratios) < 0.85 and 1.2 < max(ratios) <= 1.255
    # The aspect draw has a seed of its own: switching it on leaves every other draw as it was.
    for seed in range(5):
        seed = tf.constant([seed, 5])
        plain = augment.sample(seed, tf.constant([100, 200]), (64, 64), augment.AugmentConfig())
        stretched = augment.sample(seed, tf.constant([100, 200]), (64, 64),
                                   augment.AugmentConfig(aspect_range=(0.8, 1.25)))
        assert plain[0].scaled_size[0] == stretched[0].scaled_size[0] and bool(plain[0].flip) == bool(stretched[0].flip)
        for field in ("brightness", "contrast", "saturation", "hue", "channel_noise"):
            np.testing.assert_array_equal(getattr(plain[1], field), getattr(stretched[1], field))


def _numbered_batch(size=8, shape=(20, 30)):
    """Image i is filled with i (all channels), its labels with i."""
    images = tf.constant(np.broadcast_to(np.arange(size, dtype=np.float32)[:, None, None, None], (size, *shape, 3)))
    labels = tf.constant(np.broadcast_to(np.arange(size, dtype=np.int32)[:, None, None], (size, *shape)))
    return images, labels


def test_cutmix_pastes_one_box_of_the_previous_image_with_its_labels():
    images, labels = _numbered_batch()
    seed = tf.constant([4, 2])
    mixed_images, mixed_labels = augment.cutmix(images, labels, seed, 1.0)
    mixed_images, mixed_labels = mixed_images.numpy(), mixed_labels.numpy()
    boxes = augment.cutmix_boxes(seed, 8, tf.constant([20, 30]), 1.0).numpy()
    pasted_somewhere = 0
    for i, (top, left, bottom, right) in enumerate(boxes):
        assert 0 <= top <= bottom <= 20 and 0 <= left <= right <= 30
        inside = np.zeros((20, 30), bool)
        inside[top:bottom, left:right] = True
        np.testing.assert_array_equal(mixed_labels[i], np.where(inside, (i - 1) % 8, i))  # exactly the box
        np.testing.assert_array_equal(mixed_images[i, ..., 0], mixed_labels[i])  # pixels travel with labels
        pasted_somewhere += inside.any()
    assert pasted_somewhere >= 6
    again = augment.cutmix(images, labels, seed, 1.0)[1].numpy()
    np.testing.assert_array_equal(again, mixed_labels)  # stateless
    assert not np.array_equal(augment.cutmix(images, labels, tf.constant([5, 2]), 1.0)[1].numpy(), mixed_labels)


def test_classmix_pastes_half_the_classes_of_the_previous_image_with_its_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 11, size=(6, 16, 20)).astype(np.int32)
    labels[:, :2] = 255  # ignored pixels are never pasted
    labels[2] = np.where(labels[2] < 5, labels[2], 255)  # a source with five classes: three are pasted
    images = (labels[..., None] + 1000 * np.arange(6)[:, None, None, None]).repeat(3, -1).astype(np.float32)
    seed = tf.constant([7, 1])
    mixed_images, mixed_labels = (t.numpy() for t in augment.classmix(images, labels, seed, 1.0, 11))
    for i in range(6):
        source = labels[(i - 1) % 6]
        classes = sorted(set(np.unique(source)) - {255})
        pasted = mixed_images[i, ..., 0] // 1000 == (i - 1) % 6  # the image number travels in the pixel values
        pasted_classes = sorted(set(np.unique(source[pasted])))
        assert len(pasted_classes) == (len(classes) + 1) // 2 and set(pasted_classes) <= set(classes)
        # Exactly the pixels of the chosen classes, with their labels; the rest is the image's own.
        np.testing.assert_array_equal(pasted, np.isin(source, pasted_classes))
        np.testing.assert_array_equal(mixed_labels[i], np.where(pasted, source, labels[i]))
        np.testing.assert_array_equal(mixed_images[i], np.where(pasted[..., None], images[(i - 1) % 6], images[i]))
    again = augment.classmix(images, labels, seed, 1.0, 11)[1].numpy()
    np.testing.assert_array_equal(again, mixed_labels)  # stateless
    assert not np.array_equal(augment.classmix(images, labels, tf.constant([8, 1]), 1.0, 11)[1].numpy(), mixed_labels)
    untouched = augment.classmix(images, labels, seed, 0.0, 11)
    np.testing.assert_array_equal(untouched[1].numpy(), labels)
    np.testing.assert_array_equal(untouched[0].numpy(), images)


def test_classmix_classes_counts_and_probability():
    present = tf.constant(np.random.default_rng(1).random((3000, 11)) < 0.5)
    chosen = augment.classmix_classes(tf.constant([0, 3]), present, 0.5).numpy()
    assert not (chosen & ~present.numpy()).any()  # only classes of the source
    counts, wanted = chosen.sum(1), (present.numpy().sum(1) + 1) // 2
    got_any = counts > 0
    assert 0.45 < got_any.mean() < 0.55  # about half the images
    np.testing.assert_array_equal(counts[got_any], wanted[got_any])  # ceil(n / 2) of n
    frequency = chosen[got_any].sum(0) / present.numpy()[got_any].sum(0)
    assert np.all(np.abs(frequency - frequency.mean()) < 0.05)  # no class favoured
    with pytest.raises(ValueError, match="classmix must be a probability"):
        augment.AugmentConfig(classmix=-0.1)


def test_cutmix_probability_and_sizes():
    size = tf.constant([100, 100])
    none = augment.cutmix_boxes(tf.constant([0, 1]), 500, size, 0.0).numpy()
    assert not none.any()
    boxes = augment.cutmix_boxes(tf.constant([0, 1]), 2000, size, 0.5).numpy()
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / 1e4
    assert 0.45 < (area > 0).mean() < 0.55  # about half the images get a box
    # An unclipped box covers a uniform fraction of the image (mean 1/2); clipping at the border shrinks it.
    assert 0.15 < area[area > 0].mean() < 0.5 and area.max() > 0.8
    images, labels = _numbered_batch(size=1)
    one = augment.cutmix(images, labels, tf.constant([0, 1]), 1.0)  # a batch of one mixes with itself
    np.testing.assert_array_equal(one[1].numpy(), labels.numpy())
    with pytest.raises(ValueError, match="cutmix must be a probability"):
        augment.AugmentConfig(cutmix=1.5)


def test_capture_draws_stay_in_range_and_change_no_other_draw():
    """Tone curve, exposure and white balance are log-uniform in their ranges, from a seed of their own: switching
    them on leaves the geometry and every other colour draw as it was, and off they add nothing to the jitter."""
    config = augment.CAMVID_PHOTOMETRIC
    gammas, exposures = [], []
    for seed in range(200):
        seed = tf.constant([seed, 9])
        geometry, jitter = augment.sample(seed, tf.constant([100, 200]), (64, 64), config)
        plain_geometry, plain = augment.sample(seed, tf.constant([100, 200]), (64, 64), augment.CAMVID_STRONG)
        assert plain.gain is None and plain.gamma is None
        np.testing.assert_array_equal(geometry.scaled_size, plain_geometry.scaled_size)
        np.testing.assert_array_equal(geometry.offset, plain_geometry.offset)
        for field in ("brightness", "contrast", "saturation", "hue", "channel_noise"):
            np.testing.assert_array_equal(getattr(jitter, field), getattr(plain, field))
        gain = jitter.gain.numpy()
        # gain = exposure * white balance per channel: its ratios between channels are white balance alone
        assert np.all(gain >= 0.5 * 0.9 - 1e-6) and np.all(gain <= 2.0 / 0.9 + 1e-6)
        assert np.all(gain / gain.max() >= 0.9 ** 2 - 1e-6)
        exposures.append(float(np.exp(np.log(gain).mean())))
        gammas.append(float(jitter.gamma))
    assert 1 / 1.5 - 1e-6 <= min(gammas) < 0.72 and 1.4 < max(gammas) <= 1.5 + 1e-6
    # log-uniform: as many gammas below 1 as above (about)
    assert 70 < sum(g < 1 for g in gammas) < 130
    assert min(exposures) < 0.6 and max(exposures) > 1.6
