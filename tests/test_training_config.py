"""Tests of contextnet_tf.training.config and presets: the papers' recipes, overrides, JSON round trip, impossible values
refused when the config is made or the flags are read."""

import dataclasses
import math

import pytest
from absl import flags

from contextnet_tf import cli
from contextnet_tf.data import AugmentConfig, DATASET_NAMES
from contextnet_tf.data.augment import PAPER_SCALE_RANGE
from contextnet_tf.training import PRESETS, TrainConfig
from contextnet_tf.training import config as config_lib


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
        (dict(aux_resolution="quarter"), "aux_resolution"),
        (dict(cutmix=1.5), "cutmix must be a probability"),
        (dict(classmix=1.5), "classmix must be a probability"),
    ],
)
def test_invalid_configs_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


def test_too_small_training_split():
    with pytest.raises(ValueError, match="fewer than one batch"):
        TrainConfig(batch_size=8).total_steps(5)


# Non-default values of every TrainConfig field (a new field must be added here, or the test below fails): each
# differs from the dataclass default and from the contextnet_paper preset.
EVERY_FIELD = dict(
    model="cn12", dataset="camvid", data_dir="/data/cam vid", workdir="runs/every field", preset="contextnet_paper",
    steps=123, epochs=None, batch_size=6, crop=(352, 480), scale_range=(0.75, 1.5), input_scale=2.0,
    optimizer="sgd", lr=0.0123456789, lr_power=0.85, end_lr=1e-6, momentum=0.8, weight_decay=1e-4,
    aux_weight=0.25, aux_resolution="eighth", class_weighting="enet", ohem_threshold=0.7, ohem_min_kept=1000,
    ema_momentum=0.995, cutmix=0.5, classmix=0.25, init_from="runs/a/final.keras", width=1.25, mixed_precision=True,
    precision="bfloat16",
    strategy="mirrored", sync_batch_norm=False, seed=7, deterministic=False,
    deterministic_ops=True, cache=True, label_source="coarse", augment="camvid_strong", holdout_sequence="0006R0",
    train_split="trainval-0006R0", val_split="sequence:0006R0",
    eval_every=250, eval_batch_size=3, eval_max_images=17, eval_flip=True, eval_scales=(0.75, 1.0, 1.25),
    checkpoint_every=50, keep_checkpoints=5, log_every=3, num_prediction_images=4, progress=False,
    stop_at_step=99, allow_changes=True,
)


def _parse_train_command(args):
    """The TrainConfig that experiments/train.py's generated flags give for `args` (a fresh FlagValues)."""
    values = flags.FlagValues()
    holders = config_lib.define_flags(flag_values=values)
    values(["train.py", *args])
    return config_lib.from_flags(holders)


def test_every_field_of_the_table_has_a_non_default_value():
    assert set(EVERY_FIELD) == {field.name for field in dataclasses.fields(TrainConfig)}
    preset = TrainConfig.from_preset("contextnet_paper", steps=123)
    for name, value in EVERY_FIELD.items():
        assert value != getattr(TrainConfig(), name) or name == "epochs", name
        assert value != getattr(preset, name) or name in ("preset", "steps", "epochs"), name


@pytest.mark.parametrize("changes", [{}, dict(steps=None, epochs=2.5), dict(preset=None)])
def test_command_args_reproduce_every_field(changes):
    """Written back as flags and parsed by the generated flags, a config with every field set comes back equal."""
    config = TrainConfig(**{**EVERY_FIELD, **changes})
    args = config_lib.command_args(config)
    assert _parse_train_command(args) == config
    assert "--data_dir=/data/cam vid" in args and "--crop=352x480" in args and "--nosync_batch_norm" in args


def test_command_args_leave_out_the_presets_own_values():
    config = TrainConfig.from_preset("contextnet_paper", model="cn14", dataset="camvid", data_dir="d", workdir="w")
    assert config_lib.command_args(config) == ["--model=cn14", "--dataset=camvid", "--data_dir=d", "--workdir=w",
                                               "--preset=contextnet_paper"]


def test_generated_flags_cover_every_field_with_its_help():
    values = flags.FlagValues()
    holders = config_lib.define_flags(flag_values=values)
    assert list(holders) == [field.name for field in dataclasses.fields(TrainConfig)]
    for field in dataclasses.fields(TrainConfig):
        assert field.metadata["help"] in values[field.name].help
        assert values[field.name].default is None  # unset: the preset's or the dataclass's value applies
    assert values["optimizer"].parser.enum_values == list(config_lib.OPTIMIZERS)
    assert values["dataset"].parser.enum_values == list(DATASET_NAMES)


def test_flags_left_unset_keep_the_preset():
    config = _parse_train_command(["--model=fast_scnn", "--dataset=synthetic", "--data_dir=d", "--workdir=w",
                                   "--preset=fast_scnn_paper", "--crop=64x128", "--steps=5", "--noprogress"])
    assert config == TrainConfig.from_preset("fast_scnn_paper", model="fast_scnn", dataset="synthetic",
                                             data_dir="d", workdir="w", crop=(64, 128), steps=5, progress=False)
    assert config.optimizer == "sgd" and config.lr_power == 0.9 and config.epochs is None


def test_size_flags_say_which_flag_and_what_syntax():
    with pytest.raises(flags.IllegalFlagValueError, match=r"--crop=abc: expected HxW such as 352x480, got 'abc'"):
        _parse_train_command(["--model=cn14", "--dataset=camvid", "--data_dir=d", "--workdir=w", "--crop=abc"])
    with pytest.raises(ValueError, match=r"^--crop: expected HxW such as 352x480, got '352,480'$"):
        cli.parse_size("352,480", "crop")
    assert cli.parse_size("352x480") == (352, 480) and cli.parse_size(" 64X128 ") == (64, 128)
    assert cli.parse_sizes("1024x2048,512x1024") == [(1024, 2048), (512, 1024)]
    with pytest.raises(ValueError, match="--image_size: .*positive"):
        cli.parse_size("0x10", "image_size")


def test_input_scale_must_be_positive():
    assert TrainConfig(input_scale=2.0).input_scale == 2.0 and TrainConfig().input_scale == 1.0
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="input_scale"):
            TrainConfig(input_scale=bad)


def test_scale_range_default_is_the_papers_one_constant():
    assert TrainConfig().scale_range == PAPER_SCALE_RANGE == AugmentConfig().scale_range == (0.5, 2.0)
    for preset in PRESETS.values():
        assert preset["scale_range"] is PAPER_SCALE_RANGE


# Impossible values, each refused when the config is made (so by train.py before anything runs), with a message that
# names the field, which is also the flag's name.
IMPOSSIBLE_VALUES = [
    (dict(lr=0.0), "lr must be positive, got 0.0"),
    (dict(lr=-1.0), "lr must be positive, got -1.0"),
    (dict(lr=float("nan")), "lr must be a finite number, got nan"),
    (dict(lr=float("inf")), "lr must be a finite number, got inf"),
    (dict(steps=0), "steps must be positive, got 0"),
    (dict(steps=-5), "steps must be positive, got -5"),
    (dict(steps=None, epochs=0), "set steps or a positive number of epochs"),
    (dict(steps=None, epochs=-1.0), "set steps or a positive number of epochs"),
    (dict(batch_size=0), "batch_size must be positive, got 0"),
    (dict(batch_size=-2), "batch_size must be positive, got -2"),
    (dict(crop=(64,)), r"crop must be \(height, width\)"),
    (dict(crop=(64, 64, 3)), r"crop must be \(height, width\)"),
    (dict(crop=(16, 64)), "each at least 32"),
    (dict(scale_range=(2.0, 0.5)), r"scale_range must be min,max with 0 < min <= max, got \(2.0, 0.5\)"),
    (dict(scale_range=(0.0, 1.0)), "scale_range must be min,max with 0 < min <= max"),
    (dict(scale_range=(0.5, 1.0, 2.0)), "scale_range must be min,max"),
    (dict(scale_range=(0.5, float("inf"))), "scale_range must be a finite number"),
    (dict(momentum=1.0), r"momentum must be in \[0, 1\), got 1.0"),
    (dict(momentum=-0.1), r"momentum must be in \[0, 1\)"),
    (dict(lr=0.01, end_lr=0.1), r"end_lr \(0.1\) must not exceed lr \(0.01\)"),
    (dict(end_lr=-1e-4), "end_lr must be zero or positive"),
    (dict(lr_power=-0.9), "lr_power must be zero or positive"),
    (dict(weight_decay=-4e-5), "weight_decay must be zero or positive"),
    (dict(aux_weight=-0.4), "aux_weight must be zero or positive"),
    (dict(width=0.0), "width must be positive"),
    (dict(input_scale=0.0), "input_scale must be positive"),
    (dict(eval_scales=(1.0, 0.0)), "eval_scales must be positive numbers"),
    (dict(checkpoint_every=0), "checkpoint_every must be positive"),
    (dict(keep_checkpoints=0), "keep_checkpoints must be positive"),
    (dict(log_every=0), "log_every must be positive"),
    (dict(eval_batch_size=0), "eval_batch_size must be positive"),
    (dict(eval_max_images=0), "eval_max_images must be positive when set"),
    (dict(stop_at_step=0), "stop_at_step must be positive when set"),
    (dict(num_prediction_images=-1), "num_prediction_images must be zero or positive"),
    (dict(optimizer="adam"), "optimizer must be one of rmsprop, sgd, got 'adam'"),
    (dict(holdout_sequence="0006R0"), "holdout_sequence is for the camvid dataset"),
]


@pytest.mark.parametrize("bad, message", IMPOSSIBLE_VALUES, ids=[",".join(bad) for bad, _ in IMPOSSIBLE_VALUES])
def test_impossible_values_are_refused_naming_the_field(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{"steps": 10, **bad})


def test_boundary_values_that_a_run_can_use_are_accepted():
    config = TrainConfig(steps=1, batch_size=1, crop=(32, 32), scale_range=(1.0, 1.0), momentum=0.0, end_lr=0.045,
                         lr_power=0.0, weight_decay=0.0, aux_weight=0.0, num_prediction_images=0, eval_every=-1,
                         keep_checkpoints=1, checkpoint_every=1, log_every=1)
    assert (config.steps, config.batch_size, config.crop, config.scale_range) == (1, 1, (32, 32), (1.0, 1.0))
    assert TrainConfig(steps=None, epochs=0.5).total_steps(100) == math.ceil(0.5 * (100 // 8))


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--lr=-1", "lr must be positive, got -1.0"),
        ("--lr=0", "lr must be positive, got 0.0"),
        ("--steps=0", "steps must be positive, got 0"),
        ("--batch_size=0", "batch_size must be positive, got 0"),
        ("--scale_range=2,0.5", r"scale_range must be min,max with 0 < min <= max, got \(2.0, 0.5\)"),
        ("--momentum=1", r"momentum must be in \[0, 1\)"),
        ("--lr=inf", "lr must be a finite number"),
        ("--eval_scales=0.5,0", "eval_scales must be positive"),
    ],
)
def test_impossible_flag_values_are_refused_when_the_flags_are_read(flag, message):
    """What experiments/train.py does with its flags (`config.from_flags`), in process: the error names the flag."""
    args = ["--model=fast_scnn", "--dataset=synthetic", "--data_dir=d", "--workdir=w", "--preset=fast_scnn_paper"]
    with pytest.raises(ValueError, match=message):
        _parse_train_command([*args, "--steps=10", flag])  # a repeated flag: the last value counts


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--crop=abc", r"--crop=abc: expected HxW such as 352x480, got 'abc'"),
        ("--crop=64", r"--crop=64: expected HxW such as 352x480, got '64'"),
        ("--crop=0x64", r"--crop=0x64: expected HxW with positive height and width"),
        ("--scale_range=a,b", r"--scale_range=a,b: expected numbers separated by commas"),
        ("--batch_size=two", r"--batch_size=two"),
    ],
)
def test_malformed_flag_values_are_refused_by_the_parser_naming_the_flag(flag, message):
    with pytest.raises(flags.IllegalFlagValueError, match=message):
        _parse_train_command(["--model=cn14", "--dataset=camvid", "--data_dir=d", "--workdir=w", flag])
