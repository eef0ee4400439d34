"""The papers' presets: each has its paper's augmentation (operations on and off), attributes to the paper only what
it states, and the training input applies the augmentation a run names; CamVid's held-out sequence as a setting."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from contextnet_tf import data
from contextnet_tf.data import augment
from contextnet_tf.training import PRESETS, TrainConfig
from contextnet_tf.training import config as config_lib
from contextnet_tf.training import inputs
from contextnet_tf.training.presets import PAPER_FIELDS

# Section 3.1 of each paper, as operations of `augment.OPS` (the crop is always on).
PAPER_AUGMENTATION = {
    # "random scale 0.5 to 2, horizontal flip, varied hue, saturation, brightness and contrast"
    "contextnet_paper": ("scale", "flip", "hue", "saturation", "brightness", "contrast"),
    # "random resizing between 0.5 to 2, translation/crop, horizontal flip, color channels noise and brightness"
    "fast_scnn_paper": ("scale", "flip", "brightness", "channel_noise"),
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_trains_with_its_papers_augmentation(preset):
    config = TrainConfig.from_preset(preset)
    assert config.augment == preset
    effective = inputs.augment_config(config)
    assert effective.ops() == PAPER_AUGMENTATION[preset]
    assert effective.scale_range == (0.5, 2.0)
    off = set(augment.OPS) - set(PAPER_AUGMENTATION[preset])
    assert off and not off & set(effective.ops())


def test_presets_attribute_to_each_paper_only_what_it_states():
    # ContextNet states neither a batch size nor an L2 factor: both are ours in its preset.
    assert {"batch_size", "weight_decay", "crop"}.isdisjoint(PAPER_FIELDS["contextnet_paper"])
    assert "crop" not in PAPER_FIELDS["fast_scnn_paper"]
    assert {"batch_size", "weight_decay"} <= set(PAPER_FIELDS["fast_scnn_paper"])
    for preset, fields in PAPER_FIELDS.items():
        assert set(fields) <= set(PRESETS[preset])


def test_scale_range_augment_and_cutmix_override_a_preset():
    config = TrainConfig.from_preset("fast_scnn_paper", augment="camvid_strong", scale_range=(1.0, 2.5))
    effective = inputs.augment_config(config)
    assert effective.scale_range == (1.0, 2.5) and effective.hue_delta == augment.CAMVID_STRONG.hue_delta
    assert effective.cutmix == 0.0 and TrainConfig.from_preset("fast_scnn_paper").cutmix == 0.0  # off in the presets
    assert inputs.augment_config(TrainConfig.from_preset("fast_scnn_paper", cutmix=0.5)).cutmix == 0.5
    with pytest.raises(ValueError, match="augment must be one of"):
        TrainConfig(augment="heavy")


def _first_batches(config, steps):
    strategy = tf.distribute.get_strategy()
    return [batch for _, batch in inputs.train_batches(strategy, config, steps, 0, steps)]


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = tmp_path_factory.mktemp("city")
    data.generate_synthetic_city(root, num_train=4, num_val=1, image_size=(64, 96), seed=3)
    return str(root)


def _rows(images):
    """Every image of a batch as one row of pixel values, sorted (the order of a shuffled epoch does not matter)."""
    flat = np.asarray(images).reshape(len(images), -1)
    return flat[np.lexsort(flat.T[::-1])]


def test_training_input_applies_the_runs_augmentation(city):
    """At scale 1 with a crop of the whole image, `none` gives the images as they are on disk; the papers' colour
    operations change them. Before each preset had its own, every run trained with the default union instead."""
    originals = np.concatenate([images for images, _ in data.make_dataset(
        "synthetic", city, "train", training=False, batch_size=4)])
    common = dict(dataset="synthetic", data_dir=city, steps=2, batch_size=4, crop=(64, 96), scale_range=(1.0, 1.0))
    (images, labels), = _first_batches(TrainConfig(augment="none", **common), 1)
    np.testing.assert_allclose(_rows(images), _rows(originals), atol=1e-3)
    assert labels.shape == (4, 64, 96)
    for name in ("fast_scnn_paper", "contextnet_paper", "both_papers", "camvid_strong"):
        (jittered, _), = _first_batches(TrainConfig(augment=name, **common), 1)
        differences = np.abs(_rows(jittered) - _rows(originals)).mean(axis=1)
        assert (differences > 1).all(), name
    # Flip alone: every image is itself or its mirror.
    flipping = dataclasses.replace(augment.NO_AUGMENTATION, flip=True)
    dataset = data.make_dataset("synthetic", city, "train", training=True, batch_size=4, crop_size=(64, 96),
                                seed=0, scale_range=(1.0, 1.0), augment_config=flipping)
    flipped_batch = next(iter(dataset))[0].numpy()
    candidates = np.concatenate([originals, originals[:, :, ::-1]])
    for image in flipped_batch:
        assert np.abs(candidates - image).max(axis=(1, 2, 3)).min() < 1e-3


def test_holdout_sequence_sets_both_splits():
    config = TrainConfig(dataset="camvid", holdout_sequence="0006R0")
    assert (config.train_split, config.val_split) == ("trainval-0006R0", "sequence:0006R0")
    assert TrainConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="holdout_sequence is for the camvid dataset"):
        TrainConfig(dataset="cityscapes", holdout_sequence="0006R0")
    with pytest.raises(ValueError, match="holdout_sequence=0006R0 sets val_split to sequence:0006R0; leave "
                                         "val_split \\(val\\+test\\) unset"):
        TrainConfig(dataset="camvid", holdout_sequence="0006R0", val_split="val+test")
    with pytest.raises(ValueError, match="sequence names are letters and digits"):
        TrainConfig(dataset="camvid", holdout_sequence="00-06")


def _parse_train_command(args):
    values = flags.FlagValues()
    holders = config_lib.define_flags(flag_values=values)
    values(["train.py", *args])
    return config_lib.from_flags(holders)


def test_the_model_cards_command_reproduces_the_held_out_sequence_and_augmentation():
    config = TrainConfig.from_preset("fast_scnn_paper", model="fast_scnn", dataset="camvid", data_dir="d",
                                     workdir="w", steps=100, holdout_sequence="0006R0", augment="camvid_strong")
    args = config_lib.command_args(config)
    assert "--holdout_sequence=0006R0" in args and "--augment=camvid_strong" in args
    assert not any(arg.startswith(("--train_split", "--val_split")) for arg in args)
    assert _parse_train_command(args) == config
    # Without a preset, the same.
    plain = TrainConfig(dataset="camvid", holdout_sequence="0001TP", model="cn14", data_dir="d", workdir="w")
    assert _parse_train_command(config_lib.command_args(plain)) == plain
