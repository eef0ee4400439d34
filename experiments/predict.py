r"""Predicts label maps for image files or folders, at any image size.

    python experiments/predict.py --model=runs/cn14/best.keras --input=/data/cityscapes/leftImg8bit/test \
        --output_dir=/tmp/pred --format=labelids

Formats: color (palette PNGs), overlay (colours over the image), labelids (Cityscapes label ids, the test-server
format; train ids for CamVid). Output files mirror the input's relative paths with a .png extension.
"""

import keras
from absl import app, flags

from contextnet_tf import data  # importing the package registers its custom layers
from contextnet_tf.reports import model_card  # importing the package registers its custom layers
from contextnet_tf.evaluation import prediction  # importing the package registers its custom layers

MODEL = flags.DEFINE_string("model", None, "Path of a .keras model.", required=True)
INPUT = flags.DEFINE_string("input", None, "Image file or folder (searched recursively).", required=True)
OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the PNGs go.", required=True)
FORMAT = flags.DEFINE_enum("format", "color", list(prediction.FORMATS), "Output format.")
DATASET = flags.DEFINE_enum("dataset", "cityscapes", ["cityscapes", "camvid", "synthetic"],
                            "Dataset the model was trained on (palette, label ids).")
FLIP = flags.DEFINE_bool("flip", False, "Average with the horizontally flipped prediction.")
SCALES = flags.DEFINE_list("scales", ["1.0"], "Input scales to average, e.g. 0.75,1,1.25 (default: the "
                            "input scale in the model card's .json beside the .keras file, else 1).")


def main(argv):
    del argv
    model = keras.saving.load_model(MODEL.value, compile=False)
    written = prediction.predict_files(
        model, INPUT.value, OUTPUT_DIR.value, FORMAT.value, data.get_info(DATASET.value),
        flip=FLIP.value, scales=model_card.resolve_scales(MODEL.value, SCALES.value, SCALES.present),
    )
    print(f"wrote {len(written)} {FORMAT.value} PNGs to {OUTPUT_DIR.value}")


if __name__ == "__main__":
    app.run(main)
