r"""Trains ContextNet or Fast-SCNN with the custom loop (`contextnet_tf.training.train`).

    python experiments/train.py --model=cn14 --dataset=cityscapes --data_dir=/data/cityscapes \
        --workdir=runs/cn14 --preset=contextnet_paper

A preset sets the paper's recipe; any flag given explicitly overrides it (flags left unset keep the preset's value,
or `TrainConfig`'s default without a preset). Running again with the same --workdir resumes from the latest
checkpoint. Quick check on the synthetic city (about 2 minutes on 2 CPU cores, val mIoU about 0.13):

    python experiments/make_synthetic_city.py --out_dir=/tmp/city ...
    python experiments/train.py --model=fast_scnn --dataset=synthetic --data_dir=/tmp/city --workdir=/tmp/run \
        --steps=300 --batch_size=4 --crop=64,128 --eval_every=100
"""

import logging

from absl import app, flags

from contextnet_tf import MODEL_NAMES
from contextnet_tf.models import ABLATION_NAMES
from contextnet_tf.training import PRESETS, NonFiniteLossError, TrainConfig, train
from contextnet_tf.training.config import CLASS_WEIGHTINGS, OPTIMIZERS, PRECISIONS, STRATEGIES

MODEL = flags.DEFINE_enum(
    "model", None, list(MODEL_NAMES + ABLATION_NAMES), "Network to train.", required=True
)
DATASET = flags.DEFINE_enum("dataset", None, ["cityscapes", "camvid", "synthetic"], "Dataset.", required=True)
DATA_DIR = flags.DEFINE_string("data_dir", None, "Dataset root.", required=True)
WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (resumed if it holds a run).", required=True)
PRESET = flags.DEFINE_enum("preset", None, list(PRESETS), "Paper recipe to start from.")
STEPS = flags.DEFINE_integer("steps", None, "Total optimiser steps (overrides --epochs).")
EPOCHS = flags.DEFINE_float("epochs", None, "Epochs over the training split (when --steps is unset).")
BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Global batch size.")
CROP = flags.DEFINE_list("crop", None, "Training crop: height,width.")
SCALE_RANGE = flags.DEFINE_list("scale_range", None, "Random scale range: min,max.")
STRATEGY = flags.DEFINE_enum("strategy", None, list(STRATEGIES), "tf.distribute strategy.")
SYNC_BATCH_NORM = flags.DEFINE_bool("sync_batch_norm", None, "Batch-norm statistics over all replicas.")
OPTIMIZER = flags.DEFINE_enum("optimizer", None, list(OPTIMIZERS), "Optimiser.")
LR = flags.DEFINE_float("lr", None, "Base learning rate of the poly schedule.")
LR_POWER = flags.DEFINE_float("lr_power", None, "Power of the poly schedule.")
MOMENTUM = flags.DEFINE_float("momentum", None, "Momentum.")
WEIGHT_DECAY = flags.DEFINE_float("weight_decay", None, "L2 factor on convolution kernels.")
AUX_WEIGHT = flags.DEFINE_float("aux_weight", None, "Weight of each auxiliary loss (0: no auxiliary heads).")
CLASS_WEIGHTING = flags.DEFINE_enum("class_weighting", None, list(CLASS_WEIGHTINGS),
                                     "Per-class loss weights from the training labels (not in the papers).")
INIT_FROM = flags.DEFINE_string("init_from", None, "A .keras model whose weights initialise layers of the same name.")
WIDTH = flags.DEFINE_float("width", None, "Extra width multiplier.")
MIXED_PRECISION = flags.DEFINE_bool("mixed_precision", None, "16-bit compute, float32 weights.")
PRECISION = flags.DEFINE_enum("precision", None, list(PRECISIONS), "16-bit type of --mixed_precision.")
SEED = flags.DEFINE_integer("seed", None, "Seed of weights, dropout, data order and augmentation.")
DETERMINISTIC = flags.DEFINE_bool("deterministic", None, "Deterministic input order (exact resume).")
DETERMINISTIC_OPS = flags.DEFINE_bool("deterministic_ops", None, "Deterministic TF kernels (exact resume on GPU).")
CACHE = flags.DEFINE_bool("cache", None, "Cache decoded images in memory.")
LABEL_SOURCE = flags.DEFINE_string("label_source", None, "Label source (fine, coarse).")
TRAIN_SPLIT = flags.DEFINE_string("train_split", None, "Training split (e.g. train, train+val).")
VAL_SPLIT = flags.DEFINE_string("val_split", None, "Validation split.")
EVAL_EVERY = flags.DEFINE_integer("eval_every", None, "Validate every N steps (0: at the end only; <0: never).")
EVAL_BATCH_SIZE = flags.DEFINE_integer("eval_batch_size", None, "Validation batch size.")
EVAL_MAX_IMAGES = flags.DEFINE_integer("eval_max_images", None, "Validate on at most N images.")
EVAL_FLIP = flags.DEFINE_bool("eval_flip", None, "Flip test-time augmentation in validation.")
EVAL_SCALES = flags.DEFINE_list("eval_scales", None, "Multi-scale validation, e.g. 0.75,1,1.25.")
CHECKPOINT_EVERY = flags.DEFINE_integer("checkpoint_every", None, "Checkpoint every N steps.")
KEEP_CHECKPOINTS = flags.DEFINE_integer("keep_checkpoints", None, "Checkpoints to keep.")
LOG_EVERY = flags.DEFINE_integer("log_every", None, "Log train scalars every N steps.")
NUM_PREDICTION_IMAGES = flags.DEFINE_integer("num_prediction_images", None, "Images in the prediction PNGs.")
PROGRESS = flags.DEFINE_bool("progress", None, "Console progress bar.")
STOP_AT_STEP = flags.DEFINE_integer("stop_at_step", None, "End this invocation after step N (resume later).")

# Flags whose (non-None) values go into TrainConfig under the same name, with their converter.
_FIELDS = {
    "model": (MODEL, str), "dataset": (DATASET, str), "data_dir": (DATA_DIR, str), "workdir": (WORKDIR, str),
    "steps": (STEPS, int), "epochs": (EPOCHS, float), "batch_size": (BATCH_SIZE, int),
    "crop": (CROP, lambda v: tuple(int(x) for x in v)),
    "scale_range": (SCALE_RANGE, lambda v: tuple(float(x) for x in v)),
    "strategy": (STRATEGY, str), "sync_batch_norm": (SYNC_BATCH_NORM, bool), "optimizer": (OPTIMIZER, str),
    "lr": (LR, float), "lr_power": (LR_POWER, float), "momentum": (MOMENTUM, float),
    "weight_decay": (WEIGHT_DECAY, float), "aux_weight": (AUX_WEIGHT, float), "width": (WIDTH, float),
    "class_weighting": (CLASS_WEIGHTING, str), "init_from": (INIT_FROM, str),
    "mixed_precision": (MIXED_PRECISION, bool), "precision": (PRECISION, str), "seed": (SEED, int),
    "deterministic": (DETERMINISTIC, bool), "deterministic_ops": (DETERMINISTIC_OPS, bool), "cache": (CACHE, bool),
    "label_source": (LABEL_SOURCE, str),
    "train_split": (TRAIN_SPLIT, str), "val_split": (VAL_SPLIT, str), "eval_every": (EVAL_EVERY, int),
    "eval_batch_size": (EVAL_BATCH_SIZE, int), "eval_max_images": (EVAL_MAX_IMAGES, int),
    "eval_flip": (EVAL_FLIP, bool), "eval_scales": (EVAL_SCALES, lambda v: tuple(float(x) for x in v)),
    "checkpoint_every": (CHECKPOINT_EVERY, int), "keep_checkpoints": (KEEP_CHECKPOINTS, int),
    "log_every": (LOG_EVERY, int), "num_prediction_images": (NUM_PREDICTION_IMAGES, int),
    "progress": (PROGRESS, bool), "stop_at_step": (STOP_AT_STEP, int),
}


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    overrides = {name: convert(flag.value) for name, (flag, convert) in _FIELDS.items() if flag.value is not None}
    config = TrainConfig.from_preset(PRESET.value, **overrides)
    try:
        result = train(config)
    except NonFiniteLossError as error:
        logging.error("%s", error)
        raise SystemExit(2) from error
    status = "completed" if result.completed else f"stopped at step {result.step} (run again to resume)"
    best = "n/a" if result.best_miou is None else f"{100 * result.best_miou:.2f}% at step {result.best_step}"
    print(f"{config.workdir}: {status}; best val mIoU {best}")


if __name__ == "__main__":
    app.run(main)
