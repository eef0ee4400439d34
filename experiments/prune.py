r"""The ContextNet paper's pruning schedule: train at 2x width, prune by filter L1 norm to 1.5x, 1.25x and 1x,
fine-tuning after each step (`contextnet_tf.pruning.schedule`).

    python experiments/prune.py --model=cn14 --dataset=camvid --data_dir=../shared/data/camvid \
        --workdir=runs/prune_cn14 --wide_steps=3000 --finetune_steps=1000 --batch_size=8 --crop=352x480

Each stage writes its own run folder (``stage{i}_w{width}``) with metrics, checkpoints and final.keras; the table
of parameters and val mIoU per stage is printed and written to ``{workdir}/pruning.json``. Running again resumes.
``--importance=bn_scaled_l1`` ranks filters by their L1 norm scaled by the following batch norm (ours; the paper's
L1 is the default); ``--recalibrate_batches=N`` re-estimates each pruned stage's batch-norm statistics (ours);
``--wide_dir`` prunes a finished wide run instead of training one.
The training flags are `TrainConfig`'s (generated from its fields, as in experiments/train.py).
"""

import logging

from absl import flags

from contextnet_tf import program
from contextnet_tf.pruning import filters as pruning_filters
from contextnet_tf.pruning import schedule as prune_schedule
from contextnet_tf.training import config as config_lib

TRAIN_FLAGS = config_lib.define_flags(
    names=("model", "dataset", "data_dir", "workdir", "preset", "batch_size", "crop", "optimizer", "lr",
           "aux_weight", "eval_every", "seed", "holdout_sequence", "input_scale", "class_weighting", "cache"),
    help_overrides={"model": "Network (the 1x target).", "workdir": "Parent folder of the stage run folders.",
                    "lr": "Base learning rate of each stage's poly schedule.",
                    "eval_every": "Validate every N steps within a stage (0: at its end)."},
)
WIDTHS = flags.DEFINE_list("widths", [f"{w:g}" for w in prune_schedule.PAPER_WIDTHS],
                           "Decreasing widths; the first is trained from scratch.")
WIDE_STEPS = flags.DEFINE_integer("wide_steps", 1000, "Training steps of the widest network.")
FINETUNE_STEPS = flags.DEFINE_integer("finetune_steps", 300, "Fine-tuning steps after each pruning step.")
FINETUNE_LR = flags.DEFINE_float("finetune_lr", None, "Base learning rate of the fine-tuning stages (default: --lr).")
IMPORTANCE = flags.DEFINE_enum("importance", "l1", list(pruning_filters.IMPORTANCES),
                               "How each pruning step ranks filters: l1, the paper's filter L1 norm; bn_scaled_l1 "
                               "(ours, not the paper's), the L1 norm times |gamma| / sqrt(moving_var + eps) of the batch "
                               "norm after the conv (docs/pruning.md).")
RECALIBRATE = flags.DEFINE_integer("recalibrate_batches", 0, "If > 0, re-estimate each pruned stage's batch-norm "
                                   "statistics on this many training batches after its fine-tuning (ours; "
                                   "docs/pruning.md).")
WIDE_DIR = flags.DEFINE_string("wide_dir", None, "A finished widest-network run folder to prune instead of training "
                               "stage 0 (e.g. the stage 0 of a schedule with another --importance).")


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    config = config_lib.from_flags(TRAIN_FLAGS, steps=WIDE_STEPS.value)  # impossible values name their flag
    try:
        widths = [float(w) for w in WIDTHS.value]
    except ValueError:
        raise ValueError(f"--widths: expected numbers such as 2,1.5,1, got {','.join(WIDTHS.value)!r}") from None
    rows = prune_schedule.run_schedule(config, widths=widths, wide_steps=WIDE_STEPS.value,
                                       finetune_steps=FINETUNE_STEPS.value, finetune_lr=FINETUNE_LR.value,
                                       importance=IMPORTANCE.value, recalibrate_batches=RECALIBRATE.value,
                                       wide_dir=WIDE_DIR.value)
    print(prune_schedule.markdown_table(rows))
    print(f"wrote {config.workdir}/pruning.json")


if __name__ == "__main__":
    program.run(main)  # a user error (bad file, flag or value) ends it in one line
