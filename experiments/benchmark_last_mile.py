r"""The last mile of inference, before and after issue 18: labels from the upsampled logits vs from the 1/8 logits.

    python experiments/benchmark_last_mile.py --models=pretrained/fast_scnn_camvid.keras,pretrained/cn14_camvid.keras \
        --image=../shared/data/camvid/val/0016E5_07959.png --resolution=1024x2048 --output=runs/last_mile.json

Each model (a ``.keras`` file of this package, or a variant name for random weights) is rebuilt at --resolution and
folded; the frame is resized to it. Three end-to-end paths are timed interleaved in one process
(`contextnet_tf.deploy.speed.compare_last_mile`): to the 1/8 logits, labels by the plain path and by the fused one.
The network runs at --resolution whatever its input scale (this times the last mile, not the model's recipe).
Writes the JSON record and a markdown table beside it (.md).
"""

import json
import os

import cv2
import numpy as np
from absl import flags

from contextnet_tf import cli, program
from contextnet_tf.deploy import speed

MODELS = flags.DEFINE_list("models", ["pretrained/fast_scnn_camvid.keras", "pretrained/cn14_camvid.keras"],
                           "Models to time: .keras files of this package or variant names (random weights).")
IMAGE = flags.DEFINE_string("image", None, "A real frame (resized to --resolution).", required=True)
RESOLUTION = cli.define_size("resolution", (1024, 2048), "Input size HxW.")
FRAMES = flags.DEFINE_integer("frames", 30, "Timed frames per path.")
BURN_IN = flags.DEFINE_integer("burn_in", 10, "Untimed frames first.")
OUTPUT = flags.DEFINE_string("output", "runs/last_mile.json", "The JSON record; the table goes beside it (.md).")


def main(argv):
    del argv
    if not os.path.isfile(IMAGE.value):
        raise FileNotFoundError(f"--image: {IMAGE.value} does not exist")
    bgr = cv2.imread(IMAGE.value, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"--image: cannot read {IMAGE.value} as an image")
    height, width = RESOLUTION.value
    frame = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (width, height), interpolation=cv2.INTER_LINEAR)
    models, images = {}, {}
    for name in MODELS.value:
        label = f"{os.path.splitext(os.path.basename(name))[0]} {height}x{width}"
        models[label] = speed.models_at_resolutions(name, [(height, width)])[f"{height}x{width}"]
        images[label] = frame[None].astype(np.uint8)
    report = speed.compare_last_mile(models, images, frames=FRAMES.value, burn_in=BURN_IN.value)
    report["command"] = "python experiments/benchmark_last_mile.py " + " ".join(
        f"--{k}={v}" for k, v in (("models", ",".join(MODELS.value)), ("image", IMAGE.value),
                                   ("resolution", f"{height}x{width}"), ("frames", FRAMES.value),
                                   ("burn_in", BURN_IN.value)))
    os.makedirs(os.path.dirname(os.path.abspath(OUTPUT.value)), exist_ok=True)
    with open(OUTPUT.value, "w") as f:
        json.dump(report, f, indent=2)
    table = speed.last_mile_markdown(report)
    with open(os.path.splitext(OUTPUT.value)[0] + ".md", "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    program.run(main)
