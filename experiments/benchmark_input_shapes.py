"""Static-size graphs against any-size models and run-time-sized graphs, side by side (issue 15).

    python experiments/benchmark_input_shapes.py --models=fast_scnn,cn14 --resolutions=1024x2048,360x480 \
        --output=runs/input_shapes.json

Writes the JSON record and, beside it, a markdown table (``.md``); ``x static`` is each path's fps over the
static-size graph's in the same interleaved run (`contextnet_tf.deploy.speed.compare_input_shapes`).
"""

import json
import os

from absl import flags

from contextnet_tf import cli, program
from contextnet_tf.deploy import speed

MODELS = flags.DEFINE_list("models", ["fast_scnn", "cn14"], "Variants to time.")
RESOLUTIONS = flags.DEFINE_list("resolutions", ["1024x2048"], "Input sizes, HxW.")
FRAMES = flags.DEFINE_integer("frames", speed.FRAMES, "Timed frames per path.")
BURN_IN = flags.DEFINE_integer("burn_in", speed.BURN_IN, "Untimed frames first.")
OUTPUT = flags.DEFINE_string("output", "runs/input_shapes.json", "The JSON record; the table goes beside it (.md).")


def main(argv):
    del argv
    resolutions = [cli.parse_size(value, "resolutions") for value in RESOLUTIONS.value]
    os.makedirs(os.path.dirname(os.path.abspath(OUTPUT.value)), exist_ok=True)
    report = speed.compare_input_shapes(MODELS.value, resolutions, frames=FRAMES.value, burn_in=BURN_IN.value)
    with open(OUTPUT.value, "w") as f:
        json.dump(report, f, indent=2)
    table = speed.markdown_table(report).replace("x folded", "x static")
    with open(os.path.splitext(OUTPUT.value)[0] + ".md", "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    program.run(main)
