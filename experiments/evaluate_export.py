r"""mIoU of a TFLite or ONNX ``cls`` export on a dataset split (e.g. float vs int8 on frames the model did not train on).

    python experiments/export.py --model=M.keras --format=tflite_int8 --head=cls --output=OUT/m_int8.tflite \
        --data_dir=../shared/data/camvid
    python experiments/evaluate_export.py --export=OUT/m_int8.tflite --dataset=camvid \
        --data_dir=../shared/data/camvid --split=sequence:0006R0 --output=OUT/m_int8.json

The export's static input size is read from the file. Writes the metrics JSON (with the confusion matrix) and prints
the mIoU (`contextnet_tf.deploy.export_check.evaluate_export`).
"""

import json
import os

from absl import flags

from contextnet_tf import program
from contextnet_tf.data.labels import DATASET_NAMES
from contextnet_tf.deploy import export_check

EXPORT = flags.DEFINE_string("export", None, "A .tflite or .onnx cls export.", required=True)
DATASET = flags.DEFINE_enum("dataset", "camvid", list(DATASET_NAMES), "Dataset of the frames.")
DATA_DIR = flags.DEFINE_string("data_dir", None, "Dataset root.", required=True)
SPLIT = flags.DEFINE_string("split", "val", "Split to evaluate (CamVid also sequence:0006R0).")
MAX_IMAGES = flags.DEFINE_integer("max_images", None, "At most this many frames (evenly spread).")
OUTPUT = flags.DEFINE_string("output", None, "Metrics JSON to write.")


def _input_size(path):
    if path.endswith(".onnx"):
        import onnx

        dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
        return int(dims[1].dim_value), int(dims[2].dim_value)
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=path)
    return tuple(int(d) for d in interpreter.get_input_details()[0]["shape"][1:3])


def main(argv):
    del argv
    if not os.path.isfile(EXPORT.value):
        raise FileNotFoundError(f"--export: {EXPORT.value} does not exist")
    if not os.path.isdir(DATA_DIR.value):
        raise ValueError(f"--data_dir: {DATA_DIR.value} is not a folder")
    fmt = "onnx" if EXPORT.value.endswith(".onnx") else "tflite"
    result = export_check.evaluate_export(EXPORT.value, fmt, DATASET.value, DATA_DIR.value, SPLIT.value,
                                          _input_size(EXPORT.value), MAX_IMAGES.value, log=print)
    if OUTPUT.value:
        os.makedirs(os.path.dirname(os.path.abspath(OUTPUT.value)), exist_ok=True)
        with open(OUTPUT.value, "w") as f:
            json.dump(result, f, indent=2)
    print(f"{EXPORT.value}: mIoU {100 * result['miou']:.2f}% on {result['num_images']} frames of {DATASET.value} "
          f"{SPLIT.value}")


if __name__ == "__main__":
    program.run(main)
