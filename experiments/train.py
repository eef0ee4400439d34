r"""Trains ContextNet or Fast-SCNN with the custom loop (`contextnet_tf.training.train`).

    python experiments/train.py --model=cn14 --dataset=cityscapes --data_dir=/data/cityscapes \
        --workdir=runs/cn14 --preset=contextnet_paper

A preset sets the paper's recipe; any flag given explicitly overrides it (flags left unset keep the preset's value,
or `TrainConfig`'s default without a preset). The flags are generated from `TrainConfig`'s fields (one flag per
field, same name, help text from the field; `--helpfull` lists them). Running again with the same --workdir resumes
from the latest checkpoint. Quick check on the synthetic city (about 2 minutes on 2 CPU cores, val mIoU about 0.13):

    python experiments/make_synthetic_city.py --out_dir=/tmp/city ...
    python experiments/train.py --model=fast_scnn --dataset=synthetic --data_dir=/tmp/city --workdir=/tmp/run \
        --steps=300 --batch_size=4 --crop=64x128 --eval_every=100

A user error (an impossible flag value, a --workdir that cannot be written, a run folder whose record differs from
the flags, a missing --init_from file, a bad data file) ends the program with one line naming the flag or file and
status 1, checked before anything trains (--verbose shows the traceback). A diverging run stops with status 2.
"""

import logging
import os

from absl import flags

from contextnet_tf import cli, program
from contextnet_tf.training import DivergenceError, config as config_lib, train

FLAGS = config_lib.define_flags()


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    config = config_lib.from_flags(FLAGS)  # impossible values: ValueError naming the flag
    cli.check_folder_flag(config.workdir, "workdir", "run folder")
    if config.init_from and not os.path.isfile(config.init_from):
        raise ValueError(f"--init_from {config.init_from} does not exist")
    try:
        result = train(config)
    except DivergenceError as error:
        if flags.FLAGS.verbose:
            raise
        program.fail(str(error), status=2)
    status = "completed" if result.completed else f"stopped at step {result.step} (run again to resume)"
    best = "n/a" if result.best_miou is None else f"{100 * result.best_miou:.2f}% at step {result.best_step}"
    print(f"{config.workdir}: {status}; best val mIoU {best}")


if __name__ == "__main__":
    program.run(main)  # a user error (flag, file or run record) ends it in one line
