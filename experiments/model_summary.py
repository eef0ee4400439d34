"""Prints (and optionally writes) the model table: parameters and GMACs of every variant beside the papers'.

    python experiments/model_summary.py --resolutions=1024x2048,512x1024,256x512 --output=models.json

Runs in about a minute on a 2-core CPU (it builds every model once per resolution; no weights are trained).
"""

import json

from absl import flags

from contextnet_tf import MODEL_NAMES, cli, data, program
from contextnet_tf.reports import summary

MODELS = flags.DEFINE_list("models", list(MODEL_NAMES), "Model names to tabulate.")
RESOLUTIONS = cli.define_sizes("resolutions", ["1024x2048"], "Input sizes HxW for the GMACs columns.")
DATASET = flags.DEFINE_enum("dataset", data.PAPERS_DATASET, list(data.DATASET_NAMES),
                            "Dataset whose class count the classifier has.")
OUTPUT = flags.DEFINE_string("output", None, "Optional JSON file for the table.")


def main(argv):
    del argv
    resolutions = RESOLUTIONS.value
    rows = summary.model_rows(MODELS.value, resolutions, data.get_info(DATASET.value).num_classes)
    print(summary.markdown_table(rows, resolutions))
    if OUTPUT.value:
        with open(OUTPUT.value, "w") as f:
            json.dump(rows, f, indent=2)
        print(f"wrote {OUTPUT.value}")


if __name__ == "__main__":
    program.run(main)  # a user error (bad file, flag or value) ends it in one line
