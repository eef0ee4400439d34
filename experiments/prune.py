r"""The ContextNet paper's pruning schedule: train at 2x width, prune by filter L1 norm to 1.5x, 1.25x and 1x,
fine-tuning after each step (`contextnet_tf.pruning.schedule`).

    python experiments/prune.py --model=cn14 --dataset=camvid --data_dir=../shared/data/camvid \
        --workdir=runs/prune_cn14 --wide_steps=3000 --finetune_steps=1000 --batch_size=8 --crop=352,480

Each stage writes its own run folder (``stage{i}_w{width}``) with metrics, checkpoints and final.keras; the table
of parameters and val mIoU per stage is printed and written to ``{workdir}/pruning.json``. Running again resumes.
"""

import logging

from absl import app, flags

from contextnet_tf import MODEL_NAMES
from contextnet_tf.pruning import schedule as prune_schedule
from contextnet_tf.training import PRESETS, TrainConfig

MODEL = flags.DEFINE_enum("model", None, list(MODEL_NAMES), "Network (the 1x target).", required=True)
DATASET = flags.DEFINE_enum("dataset", None, ["cityscapes", "camvid", "synthetic"], "Dataset.", required=True)
DATA_DIR = flags.DEFINE_string("data_dir", None, "Dataset root.", required=True)
WORKDIR = flags.DEFINE_string("workdir", None, "Parent folder of the stage run folders.", required=True)
PRESET = flags.DEFINE_enum("preset", None, list(PRESETS), "Paper recipe to start from.")
WIDTHS = flags.DEFINE_list("widths", ["2", "1.5", "1.25", "1"], "Decreasing widths; the first is trained from scratch.")
WIDE_STEPS = flags.DEFINE_integer("wide_steps", 1000, "Training steps of the widest network.")
FINETUNE_STEPS = flags.DEFINE_integer("finetune_steps", 300, "Fine-tuning steps after each pruning step.")
FINETUNE_LR = flags.DEFINE_float("finetune_lr", None, "Base learning rate of the fine-tuning stages (default: --lr).")
BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Global batch size.")
CROP = flags.DEFINE_list("crop", None, "Training crop: height,width.")
OPTIMIZER = flags.DEFINE_enum("optimizer", None, ["rmsprop", "sgd"], "Optimiser.")
LR = flags.DEFINE_float("lr", None, "Base learning rate of each stage's poly schedule.")
AUX_WEIGHT = flags.DEFINE_float("aux_weight", None, "Weight of the auxiliary losses.")
EVAL_EVERY = flags.DEFINE_integer("eval_every", None, "Validate every N steps within a stage (0: at its end).")
SEED = flags.DEFINE_integer("seed", None, "Seed.")


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    overrides = dict(model=MODEL.value, dataset=DATASET.value, data_dir=DATA_DIR.value, workdir=WORKDIR.value,
                     steps=WIDE_STEPS.value)
    optional = dict(batch_size=BATCH_SIZE.value, optimizer=OPTIMIZER.value, lr=LR.value,
                    aux_weight=AUX_WEIGHT.value, eval_every=EVAL_EVERY.value, seed=SEED.value,
                    crop=tuple(int(v) for v in CROP.value) if CROP.value else None)
    overrides.update({k: v for k, v in optional.items() if v is not None})
    config = TrainConfig.from_preset(PRESET.value, **overrides)
    rows = prune_schedule.run_schedule(config, widths=[float(w) for w in WIDTHS.value],
                                       wide_steps=WIDE_STEPS.value, finetune_steps=FINETUNE_STEPS.value,
                                       finetune_lr=FINETUNE_LR.value)
    print(prune_schedule.markdown_table(rows))
    print(f"wrote {WORKDIR.value}/pruning.json")


if __name__ == "__main__":
    app.run(main)
