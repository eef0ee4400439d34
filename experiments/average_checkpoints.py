"""Averages the weights of a run's last checkpoints into one inference model (see contextnet_tf.training.averaging).

    python experiments/average_checkpoints.py --run=runs/sel_fs --last=3 --output=runs/sel_fs/averaged.keras
    python experiments/evaluate.py --model=runs/sel_fs/averaged.keras --dataset=camvid \
        --data_dir=../shared/data/camvid --split=sequence:0006R0
"""

from absl import flags

from contextnet_tf import program
from contextnet_tf.training import averaging

RUN = flags.DEFINE_string("run", None, "Training run folder (experiments/train.py --workdir).", required=True)
OUTPUT = flags.DEFINE_string("output", None, "Where the averaged .keras model goes.", required=True)
LAST = flags.DEFINE_integer("last", 3, "Average the newest this many checkpoints the run kept.")
STEPS = flags.DEFINE_list("steps", None, "Average the checkpoints of these steps instead (e.g. 1500,1750,2000).")


def main(argv):
    del argv
    steps = [int(step) for step in STEPS.value] if STEPS.value else None
    averaging.average_checkpoints(RUN.value, OUTPUT.value, last=LAST.value, steps=steps)


if __name__ == "__main__":
    program.run(main)  # a user error (bad file, flag or value) ends it in one line
