r"""The one-command quick start: synthetic city -> train -> evaluate -> fold -> benchmark -> export -> report.

    python experiments/quickstart.py

No download: it generates the built-in synthetic city, trains Fast-SCNN (500 steps; 6 minutes in all on a busy
2-core CPU, val mIoU 23%), evaluates it on val, folds its batch norms and checks the folded logits, times both end
to end, exports a SavedModel and checks it, and writes runs/quickstart/report.md with the training curve,
predictions, per-class IoU and benchmark tables (`contextnet_tf.reports.quickstart`). On real data, the same program:

    python experiments/quickstart.py --dataset=camvid --data_dir=../shared/data/camvid --crop=352x480 \
        --workdir=runs/quickstart_camvid --steps=2000

Running again with the same --workdir reuses its synthetic city and its training run (resuming an interrupted one,
continuing for a larger --steps) and redoes the rest; --fresh deletes the quickstart's outputs there and starts over.
"""

import os
import shlex
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # A quick start should not open with pages of TensorFlow logs.

from absl import flags  # noqa: E402
from absl import logging as absl_logging  # noqa: E402

from contextnet_tf import cli, program  # noqa: E402
from contextnet_tf.reports import quickstart  # noqa: E402
from contextnet_tf.training import NonFiniteLossError  # noqa: E402

# One flag per `QuickstartConfig` field: name, type, default and help text come from its declaration.
FLAGS = cli.define_flags(quickstart.QuickstartConfig)


def main(argv):
    del argv
    if not flags.FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)  # Stage banners and progress bars, not TensorFlow's INFO.
    config = quickstart.QuickstartConfig(**cli.overrides(FLAGS, only_set=False))
    try:
        summary = quickstart.run(config, command=shlex.join(["python", *sys.argv]))
    except (quickstart.QuickstartError, NonFiniteLossError) as error:
        sys.exit(f"quickstart.py: error: {error}")
    if not summary["passed"]:
        sys.exit(f"quickstart.py: error: a check failed (folding or SavedModel); see {summary['report']}")


if __name__ == "__main__":
    program.run(main)  # a user error (bad file, flag or value) ends it in one line
