r"""Predicts label maps for image files or folders, or segments a video, at any size.

Images:

    python experiments/predict.py --model=runs/cn14/best.keras --input=/data/cityscapes/leftImg8bit/test \
        --output_dir=/tmp/pred --format=labelids

Formats: color (palette PNGs), overlay (colours over the image), labelids (Cityscapes label ids, the test-server
format; train ids for CamVid). Output files mirror the input's relative paths with a .png extension.

A video (any file OpenCV can read that is not an image), written at its frame rate and size:

    python experiments/predict.py --model=pretrained/fast_scnn_camvid.keras --input=clip.mp4 \
        --output=clip_seg.mp4 --format=side_by_side --caption

Formats: overlay, color, side_by_side (frame | overlay, twice as wide). --caption draws the model's name and the
measured fps on each frame; --start, --stride and --max_frames pick the frames. The program prints the demo's fps
(decode, network and encode overlapped) and the network's alone (contextnet_tf.evaluation.video).

The palette and the input scale come from the model (`model.palette`, `model.input_scale`); --dataset colours a model
that carries no palette, --scales overrides the scale. --format=labelids writes the label ids of --dataset (default:
the model's own dataset) and is refused up front when the model's classes are not that dataset's (a 19-class
Cityscapes model has no CamVid label ids).

The input, the output and the flags are checked before the model loads; a user error ends the program with one line
naming the file or flag and status 1 (--verbose shows the traceback).
"""

import os

from absl import flags

from contextnet_tf import cli, data, load_model, program
from contextnet_tf.evaluation import prediction, video

MODEL = flags.DEFINE_string("model", None, "Path of a .keras model.", required=True)
INPUT = flags.DEFINE_string("input", None, "Image file or folder (searched recursively), or a video file.",
                            required=True)
OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the PNGs go (image input).")
OUTPUT = flags.DEFINE_string("output", None, "The video to write (video input), e.g. clip_seg.mp4.")
FORMAT = flags.DEFINE_enum("format", "color", list(dict.fromkeys(prediction.FORMATS + video.FORMATS)),
                           f"Output format: images {'/'.join(prediction.FORMATS)}, video {'/'.join(video.FORMATS)}.")
DATASET = flags.DEFINE_enum("dataset", None, list(data.DATASET_NAMES),
                            "Dataset the model was trained on (palette, label ids), for a model that does not carry "
                            "its own; default cityscapes.")
FLIP = flags.DEFINE_bool("flip", False, "Average with the horizontally flipped prediction.")
SCALES = flags.DEFINE_list("scales", None, "Input scales to average, e.g. 0.75,1,1.25 (default: the model's own "
                            "input scale).")
CAPTION = flags.DEFINE_bool("caption", False, "Video: draw the model's name and the measured fps on each frame.")
START = flags.DEFINE_integer("start", 0, "Video: first frame (0-based).", lower_bound=0)
STRIDE = flags.DEFINE_integer("stride", 1, "Video: keep every n-th frame (the output's fps is divided by it).",
                              lower_bound=1)
MAX_FRAMES = flags.DEFINE_integer("max_frames", None, "Video: at most this many frames.", lower_bound=1)
FOURCC = flags.DEFINE_string("fourcc", None, "Video: four-character codec (default by extension: "
                             + ", ".join(f"{e} {c}" for e, c in video.DEFAULT_FOURCC.items()) + ").")
PROGRESS = flags.DEFINE_bool("progress", True, "Video: show frames, fps and ETA on stderr.")


def is_video(path):
    """True for a file whose extension is not an image's (folders and images are predicted as images)."""
    return os.path.isfile(path) and not path.lower().endswith(prediction.IMAGE_EXTENSIONS)


def dataset_info(model):
    if getattr(model, "palette", None) is None and DATASET.value is None:
        print(f"{MODEL.value} carries no palette: using --dataset=cityscapes's (pass --dataset to choose)")
    return prediction.model_dataset_info(model, DATASET.value or "cityscapes")


def scales(model):
    """--scales when given, else the model's own input scale (said when it is not 1)."""
    if SCALES.value:
        try:
            values = [float(s) for s in SCALES.value]
        except ValueError:
            raise ValueError(f"--scales: expected numbers such as 0.75,1,1.25, got {','.join(SCALES.value)!r}") from None
        if min(values) <= 0:
            raise ValueError(f"--scales must be positive numbers, got {','.join(SCALES.value)!r}")
        return values
    values = prediction.default_scales(model)
    if values != (1.0,):
        print(f"--scales={values[0]:g}: the model's input scale (pass --scales to choose another)")
    return values


def predict_video(model):
    summary = video.segment_video(
        model, INPUT.value, OUTPUT.value, fmt=FORMAT.value, info=dataset_info(model), flip=FLIP.value,
        scales=scales(model), start=START.value, stride=STRIDE.value, max_frames=MAX_FRAMES.value,
        caption=os.path.splitext(os.path.basename(MODEL.value))[0] if CAPTION.value else None,
        fourcc=FOURCC.value, progress=PROGRESS.value,
    )
    print(f"wrote {summary.output}: {summary.frames} frames of {summary.width}x{summary.height} at "
          f"{summary.fps:g} fps ({FORMAT.value}); {summary.demo_fps:.2f} fps end to end, "
          f"network alone {summary.network_fps:.2f} fps, decode + network + encode one after another "
          f"{summary.serial_fps:.2f} fps")


def label_ids_info(model):
    """The dataset whose label ids --format=labelids writes: --dataset when given, else the model's own (else
    Cityscapes); refused unless the model predicts that dataset's classes (`prediction.check_label_ids`)."""
    info = data.get_info(DATASET.value) if DATASET.value else dataset_info(model)
    try:
        prediction.check_label_ids(model, info, name=MODEL.value)
    except ValueError as error:
        asked = f" --dataset={DATASET.value}" if DATASET.value else ""
        raise ValueError(f"--format=labelids{asked}: {error}") from None
    return info


def predict_images(model):
    info = label_ids_info(model) if FORMAT.value == "labelids" else dataset_info(model)
    written = prediction.predict_files(
        model, INPUT.value, OUTPUT_DIR.value, FORMAT.value, info, flip=FLIP.value, scales=scales(model),
    )
    print(f"wrote {len(written)} {FORMAT.value} PNGs to {OUTPUT_DIR.value}")


def main(argv):
    del argv
    if is_video(INPUT.value):
        if not OUTPUT.value:
            raise ValueError(f"{INPUT.value} is a video: pass --output=FILE (e.g. clip_seg.mp4)")
        if FORMAT.value not in video.FORMATS:
            raise ValueError(f"--format={FORMAT.value} is for images; videos take {', '.join(video.FORMATS)}")
        # The input and the output are checked before the model loads, to fail fast.
        video.probe(INPUT.value)
        video.check_output(OUTPUT.value, INPUT.value)
        predict_video(load_model(MODEL.value))
    else:
        if not OUTPUT_DIR.value:
            raise ValueError(f"{INPUT.value} is not a video: pass --output_dir=DIR for the PNGs")
        if FORMAT.value not in prediction.FORMATS:
            raise ValueError(f"--format={FORMAT.value} is for videos; images take {', '.join(prediction.FORMATS)}")
        # The input and the output are checked before the model loads, to fail fast.
        if not prediction.list_images(INPUT.value):
            raise ValueError(f"--input {INPUT.value}: no image files ({', '.join(prediction.IMAGE_EXTENSIONS)}) "
                             "in this folder or below it")
        cli.check_folder_flag(OUTPUT_DIR.value, "output_dir")
        predict_images(load_model(MODEL.value))


if __name__ == "__main__":
    program.run(main)  # a user error (bad file, flag or value) ends it in one line
