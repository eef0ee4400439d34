r"""Evaluates a saved model on a dataset split: class (and category) mIoU, per-class IoU table, JSON.

    python experiments/evaluate.py --model=runs/cn14/best.keras --dataset=cityscapes --data_dir=/data/cityscapes \
        --split=val --output=metrics.json [--flip] [--scales=0.75,1,1.25]

The JSON holds {"miou": fraction, "class_iou": {name: fraction}, "category_miou", "category_iou", ...}; see
`contextnet_tf.evaluation.metrics.evaluate`. Conventions match the official Cityscapes evaluator (tests/test_evaluation_metrics.py).
"""

import keras
from absl import app, flags

from contextnet_tf import data  # importing the package registers its custom layers
from contextnet_tf.evaluation import metrics as evaluation  # importing the package registers its custom layers
from contextnet_tf.reports import model_card  # importing the package registers its custom layers

MODEL = flags.DEFINE_string("model", None, "Path of a .keras model.", required=True)
DATASET = flags.DEFINE_enum("dataset", None, ["cityscapes", "camvid", "synthetic"], "Dataset.", required=True)
DATA_DIR = flags.DEFINE_string("data_dir", None, "Dataset root.", required=True)
SPLIT = flags.DEFINE_string("split", "val", "Split to evaluate.")
OUTPUT = flags.DEFINE_string("output", None, "Where to write the metrics JSON.")
BATCH_SIZE = flags.DEFINE_integer("batch_size", 1, "Images per batch (full images).")
FLIP = flags.DEFINE_bool("flip", False, "Average with the horizontally flipped prediction.")
SCALES = flags.DEFINE_list("scales", ["1.0"], "Input scales to average, e.g. 0.75,1,1.25 (default: the "
                            "input scale in the model card's .json beside the .keras file, else 1).")
MAX_IMAGES = flags.DEFINE_integer("max_images", None, "Evaluate at most this many images.")
LABEL_SOURCE = flags.DEFINE_string("label_source", "fine", "Label source (fine, coarse).")


def main(argv):
    del argv
    info = data.get_info(DATASET.value)
    model = keras.saving.load_model(MODEL.value, compile=False)
    dataset = data.make_dataset(
        DATASET.value, DATA_DIR.value, SPLIT.value, training=False, batch_size=BATCH_SIZE.value,
        label_source=LABEL_SOURCE.value,
    )
    num_images = len(data.list_examples(DATASET.value, DATA_DIR.value, SPLIT.value))
    scales = model_card.resolve_scales(MODEL.value, SCALES.value, SCALES.present)
    metrics = evaluation.evaluate(
        model, dataset, info, flip=FLIP.value, scales=scales,
        max_images=min(num_images, MAX_IMAGES.value or num_images), verbose=True,
    )
    metrics.update(model=MODEL.value, split=SPLIT.value)
    print(evaluation.format_table(metrics))
    if OUTPUT.value:
        evaluation.write_json(metrics, OUTPUT.value)
        print(f"wrote {OUTPUT.value}")


if __name__ == "__main__":
    app.run(main)
