"""`TrainConfig`: everything one training run needs, resolved once and written to the run folder as JSON."""

import dataclasses
import json
import math

from absl import flags

from contextnet_tf import cli
from contextnet_tf.cli import check_choices, option
from contextnet_tf.data import splits
from contextnet_tf.data.augment import AUGMENTATIONS, PAPER_SCALE_RANGE
from contextnet_tf.data.labels import DATASET_NAMES
from contextnet_tf.models import ABLATION_NAMES, MODEL_NAMES, OFF_PAPER_NAMES
from contextnet_tf.training.presets import PRESETS

OPTIMIZERS = ("rmsprop", "sgd")
STRATEGIES = ("default", "mirrored", "multi_worker")
PRECISIONS = ("auto", "float16", "bfloat16")
CLASS_WEIGHTINGS = ("none", "median_frequency", "enet")

flags.disclaim_key_flags()  # `define_flags`' flags belong to the program calling it (its --help lists them).

# Flags every training command names (experiments/train.py requires them; a model card's command always has them).
REQUIRED_FLAGS = ("model", "dataset", "data_dir", "workdir")

# Fields whose change makes a checkpoint unloadable or a resumed run a different experiment.
_STRUCTURAL_FIELDS = ("model", "width", "dataset", "optimizer", "aux_weight", "mixed_precision", "ema_momentum")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults are a small generic recipe; `from_preset` applies the papers' recipes.

    Each field is declared once, with its help text (``dataclasses.fields(TrainConfig)[i].metadata["help"]``):
    `experiments/train.py` generates its flags from these declarations (`contextnet_tf.cli.define_flags`) and a model
    card writes its training command from them (`contextnet_tf.cli.command_args`). ``python experiments/train.py
    --helpfull`` lists them.
    """

    model: str = option("cn14", "Network to train.", choices=MODEL_NAMES + ABLATION_NAMES + OFF_PAPER_NAMES)
    dataset: str = option("cityscapes", "Dataset.", choices=DATASET_NAMES)
    data_dir: str = option("", "Dataset root (the layout `contextnet_tf.data` reads).")
    workdir: str = option("", "Run folder; an existing run there is resumed from its latest checkpoint.")
    preset: str | None = option(None, "Paper recipe to start from (see `presets.PRESETS`); other flags override it.",
                                choices=tuple(PRESETS))
    steps: int | None = option(None, "Total optimiser steps; when unset, epochs * (train images // batch_size).")
    epochs: float | None = option(10, "Epochs over the training split (used when steps is unset).")
    batch_size: int = option(8, "Global batch size (split evenly over replicas).")
    crop: tuple[int, int] = option((512, 1024), "Training crop HxW; the training model is built at this size.",
                                   syntax="size")
    scale_range: tuple[float, float] = option(PAPER_SCALE_RANGE, "Random rescaling range min,max of the "
                                              "augmentation.", syntax="floats")
    augment: str = option("both_papers", "Named augmentation (contextnet_tf.data.augment.AUGMENTATIONS: flip and "
                          "colour ops; --scale_range and --crop set the geometry): each paper's list "
                          "(contextnet_paper, fast_scnn_paper), both_papers, camvid_strong or camvid_photometric "
                          "(ours) or none.",
                          choices=tuple(AUGMENTATIONS))
    cutmix: float = option(0.0, "CutMix of the training batches (not in the papers; ours): the chance that an image "
                           "gets a box of the batch's previous image pasted in, its labels too (0: off).")
    classmix: float = option(0.0, "ClassMix of the training batches (not in the papers; ours): the chance that an "
                             "image gets the pixels of half the classes of the batch's previous image pasted in, "
                             "their labels too (0: off).")
    input_scale: float = option(1.0, "The scale the model is meant to run at: images are resized by this factor "
                                "before the network (recorded in the model; validation runs at it).")
    optimizer: str = option("rmsprop", "Optimiser: rmsprop (ContextNet) or sgd (Fast-SCNN).", choices=OPTIMIZERS)
    lr: float = option(0.045, "Base learning rate of the poly schedule (lr - end_lr) * (1 - step / steps) ** "
                       "lr_power + end_lr.")
    lr_power: float = option(0.98, "Power of the poly schedule.")
    end_lr: float = option(0.0, "Final learning rate of the poly schedule.")
    momentum: float = option(0.9, "Momentum of either optimiser.")
    weight_decay: float = option(4e-5, "L2 factor on convolution kernels (not depthwise kernels, biases or batch "
                                 "norm).")
    aux_weight: float = option(0.4, "Weight of each auxiliary loss; 0 trains the model without its auxiliary heads.")
    aux_resolution: str = option("input", "Resolution of the auxiliary losses: input (the papers: auxiliary logits "
                                 "upsampled to the crop) or eighth (ours, a deviation: auxiliary logits and "
                                 "nearest-downsampled labels at 1/8 of the crop; a faster step, see docs/training.md).",
                                 choices=("input", "eighth"))
    class_weighting: str = option("none", "Per-class weights of the cross-entropies from the training labels: none "
                                  "(the papers), median_frequency or enet (stored in the run's class_weights.json).",
                                  choices=CLASS_WEIGHTINGS)
    ohem_threshold: float | None = option(None, "Online hard-example mining of the main loss (not in the papers): "
                                          "train on the labelled pixels whose true-class probability is below this "
                                          "(e.g. 0.7), and at least --ohem_min_kept per image; unset: every pixel.")
    ohem_min_kept: int = option(0, "With --ohem_threshold: pixels per image kept at least (the hardest ones).")
    ema_momentum: float | None = option(None, "Keep an exponential moving average of the weights with this momentum "
                                        "(e.g. 0.99; not in the papers) and validate and save it instead of the "
                                        "weights (checkpoints keep both); unset: the weights themselves.")
    init_from: str | None = option(None, "A .keras model whose weights initialise the layers of the same name and "
                                   "shape before step 1 (fine-tuning); a resumed run restores its own checkpoint.")
    width: float = option(1.0, "Extra width multiplier passed to build_model.")
    mixed_precision: bool = option(False, "Compute in 16-bit floats with float32 weights.")
    precision: str = option("auto", "16-bit type of mixed_precision: auto (float16 with loss scaling on GPU, "
                            "bfloat16 elsewhere), float16 or bfloat16.", choices=PRECISIONS)
    strategy: str = option("default", "tf.distribute strategy: default (one device), mirrored (all local GPUs) or "
                           "multi_worker (TF_CONFIG cluster).", choices=STRATEGIES)
    sync_batch_norm: bool = option(True, "With several replicas, batch-norm statistics over the global batch.")
    seed: int = option(0, "Seed of weights, dropout, data order and augmentation.")
    deterministic: bool = option(True, "Deterministic input pipeline (needed for exact resume).")
    deterministic_ops: bool = option(False, "Also make TensorFlow's kernels deterministic (enable_op_determinism; "
                                     "slower; what exact resume needs on GPUs).")
    cache: bool = option(False, "Cache decoded training images in memory.")
    label_source: str = option("fine", "Label source: fine or another source the data module offers (coarse).")
    train_split: str = option("train", "Training split (e.g. train, train+val; CamVid also trainval-0006R0, see "
                              "docs/data.md).")
    val_split: str = option("val", "Validation split (CamVid also sequence:0006R0).")
    holdout_sequence: str | None = option(None, "CamVid: hold this video sequence out of training and validate on "
                                          "it (train_split trainval-SEQ, val_split sequence:SEQ); 0006R0 is the "
                                          "recommended one.")
    eval_every: int = option(1000, "Validate every N steps (0: only at the end; negative: never).")
    eval_batch_size: int = option(1, "Batch size of validation (full images).")
    eval_max_images: int | None = option(None, "Validate on at most N images (unset: all).")
    eval_flip: bool = option(False, "Flip test-time augmentation in validation.")
    eval_scales: tuple[float, ...] = option((), "Scales averaged in validation, e.g. 0.75,1,1.25 (unset: the "
                                            "model's input_scale alone).",
                                            syntax="floats")
    checkpoint_every: int = option(500, "Save a checkpoint every N steps (and always at the end).")
    keep_checkpoints: int = option(3, "Checkpoints kept by tf.train.CheckpointManager.")
    log_every: int = option(10, "Write train scalars to metrics.jsonl / TensorBoard every N steps.")
    num_prediction_images: int = option(2, "Validation images drawn into the run's prediction images.")
    progress: bool = option(True, "Console progress bar.")
    stop_at_step: int | None = option(None, "End this invocation after step N without the end-of-run work, as a "
                                      "killed job would (the next call resumes from the latest checkpoint).")
    allow_changes: bool = option(False, "Resume a run with settings that differ from its record: the changes and "
                                 "the step they take effect are appended to config_changes.jsonl (config.json keeps "
                                 "the original).")

    def __post_init__(self):
        # Tuples, also when read back from JSON lists.
        for name in ("crop", "scale_range", "eval_scales"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        check_choices(self)
        if len(self.crop) != 2 or min(self.crop) < 32:
            raise ValueError(f"crop must be (height, width), each at least 32, got {self.crop}")
        if not self.input_scale > 0:
            raise ValueError(f"input_scale must be positive, got {self.input_scale!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.steps is None and (self.epochs is None or self.epochs <= 0):
            raise ValueError("set steps or a positive number of epochs")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be positive, got {self.steps}")
        _check_values(self)
        if self.holdout_sequence is not None:
            _resolve_holdout(self)

    @classmethod
    def from_preset(cls, preset=None, **overrides):
        """A config from a named preset (see `presets.PRESETS`) with `overrides` applied on top.

        Setting `steps` explicitly also clears a preset's `epochs` (and vice versa), so an override always wins.
        """
        fields = {}
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
            fields.update(PRESETS[preset])
            fields["preset"] = preset
        if overrides.get("steps") is not None:
            fields.pop("epochs", None)
            fields["epochs"] = None
        fields.update(overrides)
        return cls(**fields)

    def total_steps(self, num_train_images):
        """Total optimiser steps of the run for a training split of `num_train_images` images."""
        if self.steps is not None:
            return self.steps
        return max(1, math.ceil(self.epochs * self.steps_per_epoch(num_train_images)))

    def steps_per_epoch(self, num_train_images):
        """Full global batches in one pass over the training split."""
        steps = num_train_images // self.batch_size
        if steps < 1:
            raise ValueError(
                f"the training split has {num_train_images} images, fewer than one batch of {self.batch_size}"
            )
        return steps

    def to_json(self):
        """The config as an indented JSON string."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        """Reads `to_json`'s output (unknown keys are an error)."""
        return cls(**json.loads(text))

    def structural_differences(self, other):
        """Names of fields that differ from `other` and make resuming from `other`'s checkpoints invalid."""
        return [name for name in _STRUCTURAL_FIELDS if getattr(self, name) != getattr(other, name)]


def _check_values(config):
    """Raises ValueError naming the first field (also its flag) whose value no run can use."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ValueError(f"{field.name} must be a finite number, got {value!r}")
    for name in ("lr", "width", "checkpoint_every", "keep_checkpoints", "log_every", "eval_batch_size"):
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)!r}")
    for name in ("lr_power", "end_lr", "weight_decay", "aux_weight", "num_prediction_images"):
        if not getattr(config, name) >= 0:
            raise ValueError(f"{name} must be zero or positive, got {getattr(config, name)!r}")
    if not config.end_lr <= config.lr:
        raise ValueError(f"end_lr ({config.end_lr!r}) must not exceed lr ({config.lr!r})")
    if not 0 <= config.momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {config.momentum!r}")
    if len(config.scale_range) != 2 or not 0 < config.scale_range[0] <= config.scale_range[1]:
        raise ValueError(f"scale_range must be min,max with 0 < min <= max, got {config.scale_range}")
    if not all(s > 0 for s in config.eval_scales):
        raise ValueError(f"eval_scales must be positive numbers, got {config.eval_scales}")
    if config.ohem_threshold is not None and not 0 < config.ohem_threshold <= 1:
        raise ValueError(f"ohem_threshold must be in (0, 1] when set, got {config.ohem_threshold!r}")
    if config.ohem_min_kept < 0 or (config.ohem_min_kept and config.ohem_threshold is None):
        raise ValueError(f"ohem_min_kept ({config.ohem_min_kept!r}) must be zero or positive, and needs ohem_threshold")
    if config.ema_momentum is not None and not 0 < config.ema_momentum < 1:
        raise ValueError(f"ema_momentum must be in (0, 1) when set, got {config.ema_momentum!r}")
    for name in ("cutmix", "classmix"):
        if not 0 <= getattr(config, name) <= 1:
            raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(config, name)!r}")
    for name in ("eval_max_images", "stop_at_step"):
        if getattr(config, name) is not None and getattr(config, name) < 1:
            raise ValueError(f"{name} must be positive when set, got {getattr(config, name)!r}")


def _resolve_holdout(config):
    """Sets train_split and val_split from holdout_sequence (`splits.holdout_splits`); refuses other splits."""
    if config.dataset != "camvid":
        raise ValueError(f"holdout_sequence is for the camvid dataset (its file names start with their video "
                         f"sequence), not {config.dataset}")
    train_split, val_split = splits.holdout_splits(config.holdout_sequence)
    for name, derived, default in (("train_split", train_split, "train"), ("val_split", val_split, "val")):
        if getattr(config, name) not in (default, derived):
            raise ValueError(f"holdout_sequence={config.holdout_sequence} sets {name} to {derived}; leave "
                             f"{name} ({getattr(config, name)}) unset")
        object.__setattr__(config, name, derived)


def define_flags(names=None, help_overrides=None, flag_values=flags.FLAGS):
    """Defines the absl flags of `TrainConfig`'s fields (all, or `names`), unset by default so that a preset's values
    and the dataclass defaults apply; `REQUIRED_FLAGS` among them are required. Returns {name: FlagHolder}."""
    required = [name for name in REQUIRED_FLAGS if names is None or name in names]
    return cli.define_flags(TrainConfig, names=names, required=required, help_overrides=help_overrides,
                            use_defaults=False, flag_values=flag_values)


def from_flags(holders, **extra):
    """The `TrainConfig` of parsed flags (from `define_flags`): the preset if given, then every flag set, then
    `extra`."""
    overrides = {**cli.overrides(holders), **extra}
    return TrainConfig.from_preset(overrides.pop("preset", None), **overrides)


def command_args(config):
    """The `experiments/train.py` flags that reproduce `config`: `REQUIRED_FLAGS`, the preset, the steps and the
    held-out sequence, then every field that differs from the preset (or the defaults) with those (so the splits a
    held-out sequence sets are not repeated)."""
    given = {} if config.steps is None else {"steps": config.steps}
    if config.holdout_sequence is not None:
        given.update(dataset=config.dataset, holdout_sequence=config.holdout_sequence)
    reference = TrainConfig.from_preset(config.preset, **given)
    return cli.command_args(config, reference, always=(*REQUIRED_FLAGS, "preset", "steps", "holdout_sequence"))
