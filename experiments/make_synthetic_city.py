"""Writes the built-in synthetic city in the Cityscapes layout (no download needed).

    python experiments/make_synthetic_city.py --out_dir /tmp/synthetic_city

100 train + 20 val images at 256x512 take a few seconds. Read them with
`data.make_dataset("synthetic", "/tmp/synthetic_city", "train", training=True, batch_size=8)`.
"""

from absl import flags

from contextnet_tf import cli, data, program

OUT_DIR = flags.DEFINE_string("out_dir", None, "Root folder to write.", required=True)
NUM_TRAIN = flags.DEFINE_integer("num_train", 100, "Training images.")
NUM_VAL = flags.DEFINE_integer("num_val", 20, "Validation images.")
NUM_TEST = flags.DEFINE_integer("num_test", 0, "Unlabelled test images.")
IMAGE_SIZE = cli.define_size("image_size", data.DEFAULT_IMAGE_SIZE, "Image size HxW.")
SEED = flags.DEFINE_integer("seed", 0, "Generator seed; the same seed writes identical files.")


def main(argv):
    del argv
    written = data.generate_synthetic_city(
        OUT_DIR.value,
        num_train=NUM_TRAIN.value,
        num_val=NUM_VAL.value,
        num_test=NUM_TEST.value,
        image_size=IMAGE_SIZE.value,
        seed=SEED.value,
    )
    print(", ".join(f"{len(pairs)} {split}" for split, pairs in written.items()), "images under", OUT_DIR.value)


if __name__ == "__main__":
    program.run(main)  # a user error (bad file, flag or value) ends it in one line
