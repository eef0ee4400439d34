r"""Evaluates a saved model on a dataset split: class (and category) mIoU, per-class IoU table, JSON.

    python experiments/evaluate.py --model=runs/cn14/best.keras --dataset=cityscapes --data_dir=/data/cityscapes \
        --split=val --output=metrics.json [--flip] [--scales=0.75,1,1.25]

The JSON holds {"miou": fraction, "class_iou": {name: fraction}, "category_miou", "category_iou", ...}; see
`contextnet_tf.evaluation.metrics.evaluate`. Conventions match the official Cityscapes evaluator (tests/test_evaluation_metrics.py).

Before the pass, everything is checked up front: the --output path can be written, the model's classes are the
dataset's, and every image and label file of the split decodes whole with label values in the dataset's table
(cached, so a second evaluation of the same files skips it). A problem ends the program with one line naming the
file or flag at fault and status 1 (--verbose shows the traceback).
"""

import os

from absl import flags

from contextnet_tf import data, program
from contextnet_tf.evaluation import metrics as evaluation
from contextnet_tf.evaluation.prediction import class_mismatch
from contextnet_tf.models.segmenter import load_model

MODEL = flags.DEFINE_string("model", None, "Path of a .keras model.", required=True)
DATASET = flags.DEFINE_enum("dataset", None, list(data.DATASET_NAMES), "Dataset.", required=True)
DATA_DIR = flags.DEFINE_string("data_dir", None, "Dataset root.", required=True)
SPLIT = flags.DEFINE_string("split", "val", "Split to evaluate.")
OUTPUT = flags.DEFINE_string("output", None, "Where to write the metrics JSON.")
BATCH_SIZE = flags.DEFINE_integer("batch_size", 1, "Images per batch (full images).", lower_bound=1)
FLIP = flags.DEFINE_bool("flip", False, "Average with the horizontally flipped prediction.")
SCALES = flags.DEFINE_list("scales", ["1.0"], "Input scales to average, e.g. 0.75,1,1.25 (default: the "
                            "input scale in the model card's .json beside the .keras file, else 1).")
MAX_IMAGES = flags.DEFINE_integer("max_images", None, "Evaluate at most this many images.", lower_bound=1)
LABEL_SOURCE = flags.DEFINE_string("label_source", "fine", "Label source (fine, coarse).")


def check_output(path):
    """Raises ValueError naming --output unless a file can be written at `path` (checked before the pass)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"--output {path} is a folder; give a file path such as {os.path.join(path, 'metrics.json')}")
    if not os.path.isdir(folder):
        raise ValueError(f"--output {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ValueError(f"--output {path} cannot be written (permission denied)")


def check_fits(model, path, info):
    """Raises ValueError unless `model` predicts the classes of the dataset `info` describes
    (`prediction.class_mismatch`, worded for --model)."""
    mismatch = class_mismatch(model, info)
    if mismatch is None:
        return
    origin = f", trained on {mismatch.trained_on}" if mismatch.trained_on else ""
    if not mismatch.differ:
        raise ValueError(
            f"--model {path} predicts {mismatch.classes} classes{origin}, but {info.name} has {info.num_classes}; "
            f"evaluate it on {mismatch.trained_on or 'the dataset it was trained on'}"
        )
    raise ValueError(f"--model {path}{origin} has other classes than {info.name} ({', '.join(mismatch.differ[:3])})")


def scale_values(texts):
    """--scales as positive floats, or a ValueError naming the flag."""
    try:
        scales = [float(s) for s in texts]
    except ValueError:
        raise ValueError(f"--scales: expected numbers such as 0.75,1,1.25, got {','.join(texts)!r}") from None
    if not scales or min(scales) <= 0:
        raise ValueError(f"--scales must be positive numbers, got {','.join(texts)!r}")
    return scales


def main(argv):
    del argv
    info = data.get_info(DATASET.value)
    if OUTPUT.value:
        check_output(OUTPUT.value)
    scale_values(SCALES.value)
    model = load_model(MODEL.value)
    check_fits(model, MODEL.value, info)
    examples = data.list_examples(DATASET.value, DATA_DIR.value, SPLIT.value, label_source=LABEL_SOURCE.value)
    data.verify_examples(DATASET.value, examples, cache=True, progress=True)
    dataset = data.make_dataset(
        DATASET.value, DATA_DIR.value, SPLIT.value, training=False, batch_size=BATCH_SIZE.value,
        label_source=LABEL_SOURCE.value,
    )
    scales = scale_values(SCALES.value) if SCALES.present else None
    if scales is None and getattr(model, "input_scale", 1.0) != 1.0:
        print(f"running {MODEL.value} at its input scale x{model.input_scale:g} (input_scale in its config; "
              "--scales overrides)")
    metrics = evaluation.evaluate(
        model, dataset, info, flip=FLIP.value, scales=scales,
        max_images=min(len(examples), MAX_IMAGES.value or len(examples)), verbose=True,
    )
    metrics.update(model=MODEL.value, split=SPLIT.value)
    print(evaluation.format_table(metrics))
    if OUTPUT.value:
        evaluation.write_json(metrics, OUTPUT.value)
        print(f"wrote {OUTPUT.value}")


if __name__ == "__main__":
    program.run(main)
