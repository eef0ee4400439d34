"""Publishes a finished training run as a pretrained model: ``.keras`` file, model card, metrics, training curve.

    python experiments/model_card.py --run=runs/fast_scnn_camvid --name=fast_scnn_camvid --out_dir=pretrained \
        --data_dir=../shared/data/camvid --input_scale=2 --eval_flip --eval_scales=1.5,2,2.5
    python experiments/model_card.py --run=runs/fs_trainval --selection_run=runs/fs_holdout \
        --name=fast_scnn_camvid --eval_flip   # a model trained on every frame: the held-out run gives its number

See `contextnet_tf.reports.model_card` for what is written.
"""

from absl import flags

from contextnet_tf import program
from contextnet_tf.reports import model_card

RUN = flags.DEFINE_string("run", None, "Training run folder (experiments/train.py --workdir).", required=True)
NAME = flags.DEFINE_string("name", None, "File stem of the published model, e.g. fast_scnn_camvid.", required=True)
OUT_DIR = flags.DEFINE_string("out_dir", "pretrained", "Where the files go.")
DATA_DIR = flags.DEFINE_string("data_dir", None, "Dataset root for the evaluation (default: the run's).")
CHECKPOINT = flags.DEFINE_enum("checkpoint", "final", ["final", "best"], "Which weights of the run to publish.")
SPLIT = flags.DEFINE_string("split", "val", "Split to evaluate.")
EVAL_FLIP = flags.DEFINE_bool("eval_flip", False, "Also evaluate with flip averaging.")
EVAL_SCALES = flags.DEFINE_list("eval_scales", None, "Also evaluate averaging these input scales "
                                  "(default: the model's input scale alone).")
HARDWARE = flags.DEFINE_string("hardware", None, "Where the run trained (default: this machine's CPU).")
INPUT_SCALE = flags.DEFINE_float("input_scale", None, "Record this input scale in the published model and evaluate "
                                  "there (default: the scale the model was trained with, its own input_scale).")
NOTES = flags.DEFINE_string("notes", None, "Markdown file whose text is appended to the card.")
SELECTION_RUN = flags.DEFINE_string(
    "selection_run", None, "For a run trained on every frame (CamVid trainval): the run folder of the same recipe "
    "trained with a held-out part (--holdout_sequence). Its weights, evaluated on the part it never saw, give the "
    "card's accuracy and are published beside the model as NAME_selection.keras; --split is not used then.")

SPEED_JSON = flags.DEFINE_string(
    "speed_json", None, "JSON report of experiments/benchmark.py timing this network (e.g. --model=RUN/final.keras "
    "--resolutions=360x480 --paths=keras_folded): its rows become the card's Speed section.")


def main(argv):
    del argv
    notes = None
    if NOTES.value:
        with open(NOTES.value) as f:
            notes = f.read()
    model_card.publish(
        RUN.value, NAME.value, OUT_DIR.value, data_dir=DATA_DIR.value, checkpoint=CHECKPOINT.value,
        flip=EVAL_FLIP.value, scales=EVAL_SCALES.value, split=SPLIT.value,
        hardware=HARDWARE.value, notes=notes, input_scale=INPUT_SCALE.value,
        selection_run=SELECTION_RUN.value, speed_report=SPEED_JSON.value,
    )


if __name__ == "__main__":
    program.run(main)  # a user error (bad file, flag or value) ends it in one line
