"""Times Fast-SCNN / ContextNet end to end by the papers' protocol, side by side with folded, XLA, TFLite and ONNX.

    python experiments/benchmark.py --model=fast_scnn --resolutions=1024x2048,512x1024 --output=bench.json

Paths (--paths): keras_unfolded, keras_folded, keras_folded_xla, tflite, tflite_int8, onnxruntime; modes (--modes):
end_to_end (uint8 host image in, labels on the host out), network, pipelined. Each result carries its fps ratio to
keras_folded. Writes JSON to --output and prints a markdown table (also written to --markdown if given).
With KERAS_BACKEND=jax only the keras_* paths without _xla exist (JAX always compiles with XLA).
Expected runtime on the 2-core CPU of docs/benchmarks.md: about 11 minutes for all six paths at the three
resolutions with --max_seconds=120 (which cuts XLA, about 1.7 s a frame at 1024x2048, after two minutes).
"""

import json
import logging
import os
import shlex
import sys

from absl import app, flags

from contextnet_tf.deploy import speed
from contextnet_tf import cli, data, program
from contextnet_tf.deploy import timing

MODEL = flags.DEFINE_string("model", "fast_scnn", "Variant name or path of a .keras model.")
WEIGHTS = flags.DEFINE_string("weights", None, "Optional .weights.h5 file for a model built by name.")
DATASET = flags.DEFINE_enum("dataset", data.PAPERS_DATASET, list(data.DATASET_NAMES),
                            "Dataset whose class count a model built by name gets.")
RESOLUTIONS = cli.define_sizes("resolutions", ["1024x2048", "512x1024", "256x512"], "Input sizes HxW.")
PATHS = flags.DEFINE_list("paths", None, f"Paths to time, from {', '.join(speed.PATHS)} (default: all of "
                          "them under TensorFlow, int8 TFLite included; keras_unfolded and keras_folded under JAX).")
MODES = flags.DEFINE_list("modes", ["end_to_end"], f"Modes, from {', '.join(timing.MODES)}.")
HEAD = flags.DEFINE_enum("head", "cls", list(timing.HEADS), "cls: argmax labels; prob: softmax probabilities.")
FRAMES = flags.DEFINE_integer("frames", timing.FRAMES, "Timed frames.")
BURN_IN = flags.DEFINE_integer("burn_in", timing.BURN_IN, "Untimed frames first.")
MAX_SECONDS = flags.DEFINE_float("max_seconds", None, "Optional time budget per path and mode (cuts slow paths).")
THREADS = flags.DEFINE_integer("threads", os.cpu_count(), "CPU threads for every runtime (TF intra-op, TFLite, ORT).")
OUTPUT = flags.DEFINE_string("output", "bench.json", "JSON report.")
MARKDOWN = flags.DEFINE_string("markdown", None, "Optional markdown table file.")
IMAGE = flags.DEFINE_string("image", None, "An image file to time on, resized to each resolution (default: uniform "
                            "noise). The cls head's last mile costs more where the prediction has more class "
                            "boundaries, so a real frame times what a user gets.")


def main(argv):
    del argv
    paths = PATHS.value or speed.default_paths()
    for name in paths:
        if name not in speed.PATHS:
            raise app.UsageError(f"--paths: unknown path {name!r}; choose from {', '.join(speed.PATHS)}")
    for mode in MODES.value:
        if mode not in timing.MODES:
            raise app.UsageError(f"--modes: unknown mode {mode!r}; choose from {', '.join(timing.MODES)}")
    for flag, path in (("output", OUTPUT.value), ("markdown", MARKDOWN.value)):
        folder = os.path.dirname(os.path.abspath(path)) if path else None
        if folder and not os.path.isdir(folder):  # checked before the benchmark, not after it
            raise ValueError(f"--{flag} {path}: the folder {folder} does not exist")
    if IMAGE.value:  # checked before the models are built
        try:
            speed.benchmark_image(IMAGE.value, 8, 8)
        except ValueError as error:
            sys.exit(f"benchmark.py: error: --image: {error}")
    resolutions = RESOLUTIONS.value
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    timing.set_threads(THREADS.value)
    try:
        models = speed.models_at_resolutions(MODEL.value, resolutions, data.get_info(DATASET.value).num_classes,
                                              WEIGHTS.value)
        report = speed.run_benchmark(
            models,
            paths=paths,
            modes=MODES.value,
            head=HEAD.value,
            frames=FRAMES.value,
            burn_in=BURN_IN.value,
            max_seconds=MAX_SECONDS.value,
            threads=THREADS.value,
            image=IMAGE.value,
        )
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"benchmark.py: error: {error}")
    report["model"] = MODEL.value
    report["command"] = shlex.join(["python", "experiments/benchmark.py", *sys.argv[1:]])
    with open(OUTPUT.value, "w") as f:
        json.dump(report, f, indent=2)
    table = speed.markdown_table(report)
    if MARKDOWN.value:
        with open(MARKDOWN.value, "w") as f:
            f.write(table)
    print(table)


if __name__ == "__main__":
    program.run(main)  # a user error (bad file, flag or value) ends it in one line
