r"""The one-command quick start: synthetic city -> train -> evaluate -> fold -> benchmark -> export -> report.

    python experiments/quickstart.py

No download: it generates the built-in synthetic city, trains Fast-SCNN (500 steps; 6 minutes in all on a busy
2-core CPU, val mIoU 23%), evaluates it on val, folds its batch norms and checks the folded logits, times both end
to end, exports a SavedModel and checks it, and writes runs/quickstart/report.md with the training curve,
predictions, per-class IoU and benchmark tables (`contextnet_tf.reports.quickstart`). On real data, the same program:

    python experiments/quickstart.py --dataset=camvid --data_dir=../shared/data/camvid --crop=352,480 \
        --workdir=runs/quickstart_camvid --steps=2000

Running again with the same --workdir reuses its synthetic city and its training run (resuming an interrupted one,
continuing for a larger --steps) and redoes the rest; --fresh deletes the quickstart's outputs there and starts over.
"""

import os
import shlex
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # A quick start should not open with pages of TensorFlow logs.

from absl import app, flags  # noqa: E402
from absl import logging as absl_logging  # noqa: E402

from contextnet_tf import MODEL_NAMES, data  # noqa: E402
from contextnet_tf.reports import quickstart  # noqa: E402
from contextnet_tf.training import NonFiniteLossError  # noqa: E402
from contextnet_tf.training.config import OPTIMIZERS  # noqa: E402

_DEFAULTS = quickstart.QuickstartConfig()

WORKDIR = flags.DEFINE_string("workdir", _DEFAULTS.workdir, "Report folder (run, data, SavedModel and report inside).")
DATASET = flags.DEFINE_enum("dataset", _DEFAULTS.dataset, list(data.DATASET_NAMES),
                            "synthetic (generated, no download), cityscapes or camvid (need --data_dir).")
DATA_DIR = flags.DEFINE_string("data_dir", None, "Dataset root; required for cityscapes and camvid, optional for "
                               "synthetic (an existing city instead of generating one).")
MODEL = flags.DEFINE_enum("model", _DEFAULTS.model, list(MODEL_NAMES), "Network.")
NUM_TRAIN = flags.DEFINE_integer("num_train", _DEFAULTS.num_train, "Synthetic city: training images.")
NUM_VAL = flags.DEFINE_integer("num_val", _DEFAULTS.num_val, "Synthetic city: validation images.")
IMAGE_SIZE = flags.DEFINE_list("image_size", [str(v) for v in _DEFAULTS.image_size],
                               "Synthetic city: height,width of the images.")
STEPS = flags.DEFINE_integer("steps", _DEFAULTS.steps, "Training steps.")
BATCH_SIZE = flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Training batch size.")
CROP = flags.DEFINE_list("crop", [str(v) for v in _DEFAULTS.crop], "Training crop: height,width.")
OPTIMIZER = flags.DEFINE_enum("optimizer", _DEFAULTS.optimizer, list(OPTIMIZERS), "Optimiser.")
LR = flags.DEFINE_float("lr", _DEFAULTS.lr, "Base learning rate of the poly schedule.")
AUX_WEIGHT = flags.DEFINE_float("aux_weight", _DEFAULTS.aux_weight, "Weight of each auxiliary loss (0: none).")
EVAL_EVERY = flags.DEFINE_integer("eval_every", _DEFAULTS.eval_every,
                                  "Validate every N training steps (the mIoU curve; 0: at the end only).")
SEED = flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed of the synthetic city, the weights and the data order.")
MAX_VAL_IMAGES = flags.DEFINE_integer("max_val_images", None, "Evaluate on at most N val images (default: all).")
NUM_PREDICTION_IMAGES = flags.DEFINE_integer("num_prediction_images", _DEFAULTS.num_prediction_images,
                                             "Val images in predictions.png.")
BURN_IN = flags.DEFINE_integer("burn_in", _DEFAULTS.burn_in, "Benchmark: untimed frames first.")
FRAMES = flags.DEFINE_integer("frames", _DEFAULTS.frames, "Benchmark: timed frames.")
FRESH = flags.DEFINE_bool("fresh", False, "Delete the quickstart's outputs in --workdir and start over.")


def _size(flag):
    try:
        height, width = (int(v) for v in flag.value)
    except ValueError:
        sys.exit(f"quickstart.py: error: --{flag.name}: expected height,width, got {','.join(flag.value)}")
    return height, width


def main(argv):
    del argv
    if not flags.FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)  # Stage banners and progress bars, not TensorFlow's INFO.
    config = quickstart.QuickstartConfig(
        workdir=WORKDIR.value, dataset=DATASET.value, data_dir=DATA_DIR.value, model=MODEL.value,
        num_train=NUM_TRAIN.value, num_val=NUM_VAL.value, image_size=_size(IMAGE_SIZE), steps=STEPS.value,
        batch_size=BATCH_SIZE.value, crop=_size(CROP), optimizer=OPTIMIZER.value, lr=LR.value,
        aux_weight=AUX_WEIGHT.value, eval_every=EVAL_EVERY.value, seed=SEED.value,
        max_val_images=MAX_VAL_IMAGES.value, num_prediction_images=NUM_PREDICTION_IMAGES.value,
        burn_in=BURN_IN.value, frames=FRAMES.value, fresh=FRESH.value,
    )
    try:
        summary = quickstart.run(config, command=shlex.join(["python", *sys.argv]))
    except (quickstart.QuickstartError, NonFiniteLossError) as error:
        sys.exit(f"quickstart.py: error: {error}")
    if not summary["passed"]:
        sys.exit(f"quickstart.py: error: a check failed (folding or SavedModel); see {summary['report']}")


if __name__ == "__main__":
    app.run(main)
