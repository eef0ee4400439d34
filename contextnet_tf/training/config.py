"""`TrainConfig`: everything one training run needs, resolved once and written to the run folder as JSON."""

import dataclasses
import json
import math

from contextnet_tf.training.presets import PRESETS

OPTIMIZERS = ("rmsprop", "sgd")
STRATEGIES = ("default", "mirrored", "multi_worker")
PRECISIONS = ("auto", "float16", "bfloat16")
CLASS_WEIGHTINGS = ("none", "median_frequency", "enet")

# Fields whose change makes a checkpoint unloadable or a resumed run a different experiment.
_STRUCTURAL_FIELDS = ("model", "width", "dataset", "optimizer", "aux_weight", "mixed_precision")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults are a small generic recipe; `from_preset` applies the papers' recipes.

    Attributes:
        model: a name from `contextnet_tf.MODEL_NAMES`.
        dataset: ``cityscapes``, ``camvid`` or ``synthetic``.
        data_dir: dataset root (the layout `contextnet_tf.data` reads).
        workdir: run folder; an existing run there is resumed from its latest checkpoint.
        preset: name of the preset the config was built from (recorded only).
        steps: total optimiser steps; when None, ``epochs * (train images // batch_size)``.
        epochs: used when `steps` is None.
        batch_size: global batch size (split evenly over replicas).
        crop: (height, width) of the training crops; the training model is built at this size.
        scale_range: random rescaling range of the augmentation.
        optimizer: ``rmsprop`` (ContextNet) or ``sgd`` (Fast-SCNN).
        lr, lr_power, end_lr: poly schedule ``(lr - end_lr) * (1 - step / steps) ** lr_power + end_lr``.
        momentum: momentum of either optimiser.
        weight_decay: L2 factor on convolution kernels (not depthwise kernels, biases or batch norm).
        aux_weight: weight of each auxiliary loss; 0 trains the model without its auxiliary heads.
        class_weighting: ``none`` (the papers), ``median_frequency`` or ``enet``: per-class weights of the
            cross-entropies, computed from the training split's labels (`losses.class_weights`) and stored in the run
            folder as ``class_weights.json``.
        init_from: a ``.keras`` model whose weights initialise the layers of the same name and shape before step 1
            (fine-tuning a finished run); a resumed run restores its own checkpoint instead.
        width: extra width multiplier passed to `build_model`.
        mixed_precision: compute in 16-bit floats with float32 weights.
        precision: ``auto`` (float16 with loss scaling on GPU, bfloat16 elsewhere), ``float16`` or ``bfloat16``.
        strategy: ``default`` (one device), ``mirrored`` (all local GPUs) or ``multi_worker`` (TF_CONFIG cluster).
        sync_batch_norm: with several replicas, compute batch-norm statistics over the global batch.
        seed: seeds weights, dropout, data order and augmentation.
        deterministic: deterministic input pipeline (needed for exact resume).
        deterministic_ops: also make TensorFlow's kernels deterministic (`enable_op_determinism`; slower; what
            exact resume needs on GPUs, whose default kernels are not deterministic).
        cache: cache decoded training images in memory.
        label_source: ``fine`` or another source the data module offers.
        train_split, val_split: split names.
        eval_every: evaluate on `val_split` every this many steps (0: only at the end; negative: never).
        eval_batch_size: batch size of evaluation (full images).
        eval_max_images: evaluate on at most this many validation images (None: all).
        eval_flip, eval_scales: test-time augmentation of the evaluations.
        checkpoint_every: save a checkpoint every this many steps (and always at the end).
        keep_checkpoints: how many checkpoints `tf.train.CheckpointManager` keeps.
        log_every: write train scalars to metrics.jsonl / TensorBoard every this many steps.
        num_prediction_images: validation images drawn into the run's prediction images at each evaluation.
        progress: show a console progress bar.
        stop_at_step: end this invocation after that step without the end-of-run work, as a killed job would
            (tests and time-sliced jobs; the next call resumes from the latest checkpoint).
    """

    model: str = "cn14"
    dataset: str = "cityscapes"
    data_dir: str = ""
    workdir: str = ""
    preset: str | None = None
    steps: int | None = None
    epochs: float | None = 10
    batch_size: int = 8
    crop: tuple = (512, 1024)
    scale_range: tuple = (0.5, 2.0)
    optimizer: str = "rmsprop"
    lr: float = 0.045
    lr_power: float = 0.98
    end_lr: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 4e-5
    aux_weight: float = 0.4
    class_weighting: str = "none"
    init_from: str | None = None
    width: float = 1.0
    mixed_precision: bool = False
    precision: str = "auto"
    strategy: str = "default"
    sync_batch_norm: bool = True
    seed: int = 0
    deterministic: bool = True
    deterministic_ops: bool = False
    cache: bool = False
    label_source: str = "fine"
    train_split: str = "train"
    val_split: str = "val"
    eval_every: int = 1000
    eval_batch_size: int = 1
    eval_max_images: int | None = None
    eval_flip: bool = False
    eval_scales: tuple = (1.0,)
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    num_prediction_images: int = 2
    progress: bool = True
    stop_at_step: int | None = None

    def __post_init__(self):
        # Tuples, also when read back from JSON lists.
        for name in ("crop", "scale_range", "eval_scales"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            raise ValueError(f"class_weighting must be one of {CLASS_WEIGHTINGS}, got {self.class_weighting!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if len(self.crop) != 2 or min(self.crop) < 32:
            raise ValueError(f"crop must be (height, width), each at least 32, got {self.crop}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.steps is None and (self.epochs is None or self.epochs <= 0):
            raise ValueError("set steps or a positive number of epochs")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be positive, got {self.steps}")

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
