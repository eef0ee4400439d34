r"""Trains the arms of a comparison with several seeds and judges a claim by a stated rule (`reports.seeded`).

    python experiments/compare.py --model=fast_scnn --preset=fast_scnn_paper --dataset=camvid \
        --data_dir=../shared/data/camvid --holdout_sequence=0006R0 --workdir=runs/aux_resolution \
        --vary=aux_resolution --values=input --values=eighth --seeds=0,1,2 --claim=same --margin=1 \
        --batch_size=4 --crop=288x384 --steps=400 --eval_every=0

Every `experiments/train.py` flag sets what all arms share; ``--vary`` names the one setting that differs and each
``--values`` gives one arm (the first is the baseline the others are compared with). Each (arm, seed) trains in
``WORKDIR/{value}_s{seed}``, seed by seed; running the command again reuses finished runs and resumes an unfinished
one. The record goes to ``WORKDIR/comparison.json`` (every run's score and time, mean +- std per arm, each verdict
and the rule) and ``WORKDIR/comparison.md``. ``--claim`` is what is claimed of each later arm against the first:
higher, lower, or the same within ``--margin`` mIoU points. Evaluate on a split the recipe was not tuned on (CamVid:
``--holdout_sequence``).
"""

import logging
import os

from absl import flags

from contextnet_tf import cli, program
from contextnet_tf.reports import seeded
from contextnet_tf.training import TrainConfig, config as config_lib

# The train.py flags, with --model optional so that it can be the setting varied.
FLAGS = cli.define_flags(TrainConfig, required=[n for n in config_lib.REQUIRED_FLAGS if n != "model"],
                         use_defaults=False, help_overrides={
                             "workdir": "Folder of the comparison: one run folder per arm and seed, comparison.json "
                                        "and comparison.md.",
                             "model": "Network to train (required unless --vary=model)."})
_VARY = flags.DEFINE_string("vary", None, "The TrainConfig field the arms differ in.", required=True)
_VALUES = flags.DEFINE_multi_string("values", None, "One value of --vary per arm (repeat the flag); the first is the "
                                    "baseline.", required=True)
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds each arm trains with.")
_CLAIM = flags.DEFINE_enum("claim", "same", seeded.CLAIMS, "Claim about each later arm against the first.")
_MARGIN = flags.DEFINE_float("margin", 1.0, "For --claim=same: the largest mIoU difference, in points, still the "
                             "same.")


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    field = _VARY.value
    if field not in FLAGS:
        raise ValueError(f"--vary: TrainConfig has no field {field!r}")
    if field != "model" and FLAGS["model"].value is None:
        raise ValueError("--model is required unless --vary=model")
    parser = flags.FLAGS[field].parser
    try:
        values = [parser.parse(text) for text in _VALUES.value]
    except ValueError as error:
        raise ValueError(f"--values for --vary={field}: {error}") from None
    try:
        seeds = [int(s) for s in _SEEDS.value]
    except ValueError:
        raise ValueError(f"--seeds: expected integers separated by commas, got {','.join(_SEEDS.value)}") from None
    root = FLAGS["workdir"].value
    cli.check_folder_flag(root, "workdir", "comparison folder")
    given = [name for name, holder in FLAGS.items() if holder.value is not None]
    arms = seeded.arms_varying(lambda **kw: config_lib.from_flags(FLAGS, **kw), field, values, given=given)
    runs = seeded.run_arms(root, arms, seeds)
    names = list(arms)
    margin = _MARGIN.value / 100 if _CLAIM.value == "same" else None
    record = seeded.results_record(runs, [(names[0], name, _CLAIM.value, margin) for name in names[1:]])
    record["command_args"] = {"vary": field, "values": _VALUES.value, "seeds": seeds}
    seeded.write_record(os.path.join(root, "comparison.json"), record)
    table = seeded.markdown(record)
    with open(os.path.join(root, "comparison.md"), "w") as f:
        f.write(f"Split: {record['split']}. Rule: {record['rule']}.\n\n{table}")
    print(f"{root}: {record['metric']} on {record['split']}\n{table}")


if __name__ == "__main__":
    program.run(main)
