"""Tests of contextnet_tf.training.config and presets: the papers' recipes, overrides, JSON round trip."""

import pytest

from contextnet_tf.training import PRESETS, TrainConfig


def test_presets_are_the_papers_recipes():
    contextnet = TrainConfig.from_preset("contextnet_paper", model="cn14")
    recipe = (contextnet.optimizer, contextnet.lr, contextnet.lr_power, contextnet.batch_size)
    assert recipe == ("rmsprop", 0.045, 0.98, 16)
    fast = TrainConfig.from_preset("fast_scnn_paper", model="fast_scnn")
    assert (fast.optimizer, fast.lr, fast.lr_power, fast.momentum, fast.batch_size) == ("sgd", 0.045, 0.9, 0.9, 12)
    for config in (contextnet, fast):
        recipe = (config.epochs, config.aux_weight, config.weight_decay, config.scale_range)
        assert recipe == (1000, 0.4, 4e-5, (0.5, 2))
        assert config.preset in PRESETS
    # Cityscapes fine train: 2975 images -> 185 steps of 16 per epoch, 185,000 steps in 1000 epochs.
    assert contextnet.total_steps(2975) == 185_000 and fast.total_steps(2975) == 247_000


def test_explicit_values_override_a_preset():
    config = TrainConfig.from_preset("fast_scnn_paper", batch_size=4, crop=[64, 128], steps=50, optimizer="rmsprop")
    assert (config.batch_size, config.crop, config.optimizer, config.lr_power) == (4, (64, 128), "rmsprop", 0.9)
    assert config.steps == 50 and config.epochs is None and config.total_steps(10) == 50
    assert TrainConfig.from_preset("contextnet_paper", epochs=2).total_steps(100) == 2 * (100 // 16)


def test_json_round_trip_and_structural_differences():
    config = TrainConfig.from_preset("contextnet_paper", model="cn12", eval_scales=[0.5, 1.0], workdir="/tmp/x")
    again = TrainConfig.from_json(config.to_json())
    assert again == config and again.crop == (768, 768) and again.eval_scales == (0.5, 1.0)
    other = TrainConfig.from_preset("contextnet_paper", model="cn14", workdir="/tmp/y", lr=0.01)
    assert config.structural_differences(other) == ["model"]


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(optimizer="adam"), "optimizer"),
        (dict(strategy="tpu"), "strategy"),
        (dict(crop=(16, 64)), "crop"),
        (dict(steps=None, epochs=None), "steps"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_invalid_configs_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


def test_too_small_training_split():
    with pytest.raises(ValueError, match="fewer than one batch"):
        TrainConfig(batch_size=8).total_steps(5)
