"""Exports a trained model (SavedModel, TFLite float32 / int8, ONNX) and checks the export in a fresh process.

    python experiments/export.py --model=pretrained/fast_scnn_camvid.keras --format=saved_model --output=OUT/sm
    python experiments/export.py --model=pretrained/fast_scnn_camvid.keras --format=tflite --output=OUT/fs.tflite
    python experiments/export.py --model=pretrained/fast_scnn_camvid.keras --format=tflite_int8 \
        --output=OUT/fs_int8.tflite --data_dir=../shared/data/camvid

int8 calibrates by default on 100 frames spread over the training split of the model's own dataset (--data_dir,
--calibration_split); --calibration_images='GLOB' overrides that. Where the calibration images came from is written
beside the file (OUT/fs_int8.tflite.calibration.json) and printed.

Every export runs the model at its own input scale (`model.input_scale`) and returns labels or probabilities at
the input's size, as `evaluate.py` and `predict.py` do. The SavedModel takes any size; TFLite and ONNX take the static
--input_size (default: the native frame size of the model's dataset). The model is folded first (--nofold to keep
batch norms). After writing, the artifact is reloaded in a new process and compared with the Keras model (tolerance
relative to the logits' scale, labels equal wherever the reference is not a near-tie; int8: label agreement
reported); the report is printed as one JSON line and the program exits non-zero when a check fails. See
docs/export.md.

The flags and --output are checked before the model loads: a user error (a bad flag value, a missing or corrupt
file, an --output that cannot be written) ends the program with one line naming it and status 1 (--verbose shows the
traceback).
"""

import glob
import json
import logging
import os
import sys

from absl import flags

from contextnet_tf import cli, program
from contextnet_tf.deploy import export
from contextnet_tf.deploy import export_check

MODEL = flags.DEFINE_string("model", None, "Path of a .keras model, or a variant name (random weights unless "
                            "--weights).", required=True)
FORMAT = flags.DEFINE_enum("format", None, list(export.FORMATS), "Export format.", required=True)
OUTPUT = flags.DEFINE_string("output", None, "Output path (directory for saved_model, file otherwise).",
                             required=True)
HEAD = flags.DEFINE_enum("head", "logits", list(export.HEADS),
                         "TFLite / ONNX output: logits (float32 input), cls (uint8 in, labels out) or prob.")
FOLD = flags.DEFINE_bool("fold", True, "Fold batch norms into the convolutions before exporting.")
WEIGHTS = flags.DEFINE_string("weights", None, "Optional .weights.h5 file loaded into the model.")
INPUT_SIZE = flags.DEFINE_string("input_size", None, "HxW input of a TFLite / ONNX export (default: the native frame "
                                 "size of the model's dataset, CamVid 360x480, Cityscapes 1024x2048; required for a "
                                 "model of no dataset). The SavedModel takes any size.")
NUM_CLASSES = flags.DEFINE_integer("num_classes", 19, "Classes of a model built by variant name.")
CALIBRATION_IMAGES = flags.DEFINE_string("calibration_images", None,
                                         "Glob of RGB images for int8 calibration (default: frames of the model's "
                                         "own dataset, --calibration_split of --data_dir).")
DATA_DIR = flags.DEFINE_string("data_dir", None, "Root of the model's dataset, for the default int8 calibration.")
CALIBRATION_SPLIT = flags.DEFINE_string("calibration_split", "train", "Split of the model's dataset whose frames "
                                        "calibrate int8 (default: the training split).")
CALIBRATION_COUNT = flags.DEFINE_integer("calibration_count", 100, "Calibration images used at most.")
CHECK = flags.DEFINE_bool("check", True, "Reload the export in a fresh process and compare with Keras.")
CHECK_IMAGES = flags.DEFINE_string("check_images", None,
                                   "Glob of images for the check (default: random images; int8 agreement on "
                                   "random images says little, give real ones).")


EXTENSIONS = {"tflite": ".tflite", "tflite_int8": ".tflite", "onnx": ".onnx"}


def check_output(path, fmt):
    """Raises ValueError naming --output unless the `fmt` export can be written at `path` (before any work)."""
    extension = EXTENSIONS.get(fmt)
    if extension is None:  # saved_model: a folder
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"--output {path} is a file; a SavedModel is a folder (give a new folder path)")
    else:
        if os.path.isdir(path):
            raise ValueError(f"--output {path} is a folder; --format={fmt} writes one file, e.g. "
                             f"{os.path.join(path, 'model' + extension)}")
        if not path.endswith(extension):
            raise ValueError(f"--output {path}: a --format={fmt} file name must end with {extension}")
    existing = cli.nearest_existing(os.path.dirname(os.path.abspath(path)))
    if not os.path.isdir(existing):
        raise ValueError(f"--output {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ValueError(f"--output {path} cannot be written ({existing}: permission denied)")


def main(argv):
    del argv
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    check_output(OUTPUT.value, FORMAT.value)
    input_size = cli.parse_size(INPUT_SIZE.value, "input_size") if INPUT_SIZE.value else None
    if input_size and FORMAT.value == "saved_model":
        raise ValueError("--input_size is for tflite, tflite_int8 and onnx: the SavedModel takes any size")
    if FORMAT.value == "tflite_int8" and not CALIBRATION_IMAGES.value and not DATA_DIR.value:
        raise ValueError("--format=tflite_int8 calibrates on the training split of the model's dataset: give "
                         "--data_dir (its root), or --calibration_images (a glob of real images)")
    if DATA_DIR.value and not os.path.isdir(DATA_DIR.value):
        raise ValueError(f"--data_dir: {DATA_DIR.value} is not a folder")
    for flag, pattern in (("calibration_images", CALIBRATION_IMAGES.value), ("check_images", CHECK_IMAGES.value)):
        if pattern and not glob.glob(pattern):
            raise ValueError(f"--{flag}: no file matches {pattern!r}")
    model = export.load_model(MODEL.value, None, NUM_CLASSES.value, WEIGHTS.value)
    if FORMAT.value != "saved_model":
        input_size = input_size or export.default_input_size(model)
    calibration = calibration_record = None
    if FORMAT.value == "tflite_int8":
        if CALIBRATION_IMAGES.value:
            files = sorted(glob.glob(CALIBRATION_IMAGES.value))[:CALIBRATION_COUNT.value]
            calibration_record = dict(source="--calibration_images", pattern=CALIBRATION_IMAGES.value,
                                      count=len(files), files=[os.path.basename(f) for f in files])
        else:
            files, calibration_record = export.calibration_files(model, DATA_DIR.value, CALIBRATION_SPLIT.value,
                                                                 CALIBRATION_COUNT.value)
        calibration = export.representative_images(files, input_size, CALIBRATION_COUNT.value)
    head = "logits" if FORMAT.value == "saved_model" else HEAD.value
    os.makedirs(os.path.dirname(os.path.abspath(OUTPUT.value)), exist_ok=True)
    try:
        export.export(model, OUTPUT.value, FORMAT.value, head, calibration, input_size, fold=FOLD.value)
        scale = export.input_scale(model)
        size = "any size" if input_size is None else cli.format_size(input_size)
        print(f"wrote {OUTPUT.value} ({size} in, input scale {scale:g})")
        if calibration_record is not None:
            calibration_record.update(model=MODEL.value, input_size=list(input_size))
            with open(OUTPUT.value + ".calibration.json", "w") as f:
                json.dump(calibration_record, f, indent=2)
            where = (f"{calibration_record['dataset']} {calibration_record['split']}"
                     if "dataset" in calibration_record else calibration_record["pattern"])
            print(f"int8 calibrated on {calibration_record['count']} frames of {where}: "
                  f"{OUTPUT.value}.calibration.json")
        if not CHECK.value:
            return
        images = export_check.check_images(model, FORMAT.value, CHECK_IMAGES.value, input_size=input_size)
        report = export_check.verify_export(model, OUTPUT.value, FORMAT.value, images, head)
    except RuntimeError as error:  # another Keras backend; the fresh process could not reload the export
        if flags.FLAGS.verbose:
            raise
        program.fail(str(error))
    print(export_check.format_report(report))
    if not report["passed"]:
        sys.exit(f"export.py: the {FORMAT.value} export does not match the Keras model (see the report above)")


if __name__ == "__main__":
    program.run(main)  # a user error (bad file, flag or value) ends it in one line
