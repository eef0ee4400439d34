"""Input throughput benchmark: decode + training augmentation of 2048x1024 PNGs to 1024x1024 crops.

    python experiments/make_synthetic_city.py --out_dir /tmp/synthetic_1024 --image_size 1024x2048 \
        --num_train 32 --num_val 0
    python experiments/benchmark_input.py --data_dir /tmp/synthetic_1024 --out_dir /tmp/benchmark_input

Writes benchmark_input.json and benchmark_input.md to --out_dir and prints the markdown. About two minutes on two
cores with the defaults. See docs/data.md for the numbers.
"""

import sys

from absl import flags

from contextnet_tf import cli, program
from contextnet_tf.data import throughput

DATA_DIR = flags.DEFINE_string("data_dir", None, "Dataset root in the Cityscapes layout.", required=True)
OUT_DIR = flags.DEFINE_string("out_dir", "/tmp/benchmark_input", "Where the JSON and markdown go.")
NAME = flags.DEFINE_enum("dataset", "synthetic", ["cityscapes", "synthetic"], "Dataset name (the Cityscapes layout).")
SPLIT = flags.DEFINE_string("split", "train", "Split to read.")
CROP = cli.define_size("crop_size", (1024, 1024), "Crop HxW.")
CORES = flags.DEFINE_list("cores", ["1", "2"], "Core counts to measure.")
NUM_IMAGES = flags.DEFINE_integer("num_images", 24, "Images timed per measurement.")
ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds per pipeline and core count.")


def main(argv):
    del argv
    result = throughput.run(
        DATA_DIR.value,
        OUT_DIR.value,
        name=NAME.value,
        split=SPLIT.value,
        crop_size=CROP.value,
        cores_list=tuple(int(c) for c in CORES.value),
        num_images=NUM_IMAGES.value,
        rounds=ROUNDS.value,
        command=" ".join(["python", *sys.argv]),
    )
    print(throughput.markdown(result))


if __name__ == "__main__":
    program.run(main)  # a user error (bad file, flag or value) ends it in one line
