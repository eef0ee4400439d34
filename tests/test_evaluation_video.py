"""Video in, video out (`contextnet_tf.evaluation.video`, `experiments/predict.py --input=VIDEO`).

Clips are written with FFV1, a lossless codec of OpenCV's FFmpeg build, so that decoded frames equal what was
encoded and the video's overlay can be compared exactly with `predict.py`'s PNGs of the same frames. The CamVid clip
(consecutive frames of sequence 0016E5, in time order) needs CONTEXTNET_CAMVID_DIR; the synthetic city always runs.
"""

import glob
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from contextnet_tf import data
from contextnet_tf.evaluation import prediction, video
from contextnet_tf.models.segmenter import build_model, dataset_recipe

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREDICT = os.path.join(REPO, "experiments", "predict.py")
CAMVID_DIR = os.environ.get("CONTEXTNET_CAMVID_DIR")
CLIP_FPS = 12.0
NUM_FRAMES = 6


def write_clip(path, frames, fps=CLIP_FPS, fourcc="FFV1"):
    """Writes RGB frames as a video (lossless FFV1 by default)."""
    height, width = frames[0].shape[:2] if frames else (64, 64)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} to {path}"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def read_clip(path):
    """(RGB frames, fps) of a video file."""
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames, fps


def run_predict(*args):
    return subprocess.run([sys.executable, PREDICT, *args], capture_output=True, text=True, cwd=REPO, timeout=600)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small CamVid-recipe Fast-SCNN (random weights, 11 classes, the CamVid palette in its config), saved."""
    model = build_model("fast_scnn", **dataset_recipe(data.get_info("camvid")))
    path = str(tmp_path_factory.mktemp("model") / "fast_scnn_camvid_test.keras")
    model.save(path)
    return model, path


@pytest.fixture(scope="module")
def synthetic_frames(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("city"))
    written = data.generate_synthetic_city(root, num_train=0, num_val=NUM_FRAMES, image_size=(96, 160))
    return [prediction.read_image(image).astype(np.uint8) for image, _ in written["val"]]


def camvid_frames():
    if not CAMVID_DIR:
        pytest.skip("CONTEXTNET_CAMVID_DIR is not set")
    paths = sorted(glob.glob(os.path.join(CAMVID_DIR, "val", "0016E5_*.png")))[:NUM_FRAMES]
    assert len(paths) == NUM_FRAMES, f"fewer than {NUM_FRAMES} frames of 0016E5 in {CAMVID_DIR}/val"
    return [prediction.read_image(path).astype(np.uint8) for path in paths]


@pytest.mark.parametrize("source", ["synthetic", "camvid"])
@pytest.mark.slow
def test_video_overlay_matches_predict_py_on_the_same_frames(source, model, synthetic_frames, tmp_path):
    frames = synthetic_frames if source == "synthetic" else camvid_frames()
    clip = write_clip(str(tmp_path / "clip.avi"), frames)
    out = str(tmp_path / "clip_seg.avi")
    result = run_predict(f"--model={model[1]}", f"--input={clip}", f"--output={out}", "--format=overlay",
                         "--fourcc=FFV1")
    assert result.returncode == 0, result.stderr[-3000:]
    speeds = re.search(r"([\d.]+) fps end to end, network alone ([\d.]+) fps, decode \+ network \+ encode one "
                       r"after another ([\d.]+) fps", result.stdout)
    assert speeds and 0 < float(speeds[1]) <= float(speeds[2]) and float(speeds[3]) <= float(speeds[2]), result.stdout
    assert re.search(rf"frames {NUM_FRAMES}/{NUM_FRAMES} .* fps", result.stderr), result.stderr[-2000:]

    segmented, fps = read_clip(out)
    assert len(segmented) == NUM_FRAMES
    assert fps == pytest.approx(CLIP_FPS)
    assert all(frame.shape == frames[0].shape for frame in segmented)
    assert sorted(os.listdir(tmp_path)) == ["clip.avi", "clip_seg.avi"]  # no temporary file left

    # predict.py on the clip's frames as PNGs: the same overlay colours, pixel for pixel.
    frame_dir = tmp_path / "frames"
    for i, frame in enumerate(frames):
        prediction.write_png(str(frame_dir / f"frame_{i:03d}.png"), frame)
    result = run_predict(f"--model={model[1]}", f"--input={frame_dir}", f"--output_dir={tmp_path / 'png'}",
                         "--format=overlay")
    assert result.returncode == 0, result.stderr[-3000:]
    for i, frame in enumerate(segmented):
        png = prediction.read_image(str(tmp_path / "png" / f"frame_{i:03d}.png")).astype(np.uint8)
        assert np.array_equal(frame, png), f"frame {i}: {np.abs(frame.astype(int) - png).max()} max difference"
    # The comparison means something: the network predicts several classes on these frames.
    labels = prediction.Predictor(model[0], scales=(1.0,)).labels(np.stack(frames).astype(np.float32))
    assert len(np.unique(labels)) > 1


def test_formats_start_stride_and_caption(model, synthetic_frames, tmp_path):
    net, _ = model
    clip = write_clip(str(tmp_path / "clip.avi"), synthetic_frames)
    info = prediction.model_dataset_info(net)
    assert info.name == "camvid" and np.array_equal(info.palette, data.get_info("camvid").palette)
    picked = [synthetic_frames[1], synthetic_frames[3]]  # --start=1 --stride=2 --max_frames=2
    labels = prediction.Predictor(net, scales=(1.0,)).labels(np.stack(picked).astype(np.float32))

    side = str(tmp_path / "side.avi")
    summary = video.segment_video(net, clip, side, fmt="side_by_side", start=1, stride=2, max_frames=2,
                                  fourcc="FFV1", progress=False)
    assert (summary.frames, summary.width, summary.height) == (2, 320, 96)
    assert summary.fps == pytest.approx(CLIP_FPS / 2)
    assert summary.demo_fps > 0 and summary.network_fps >= summary.demo_fps
    assert summary.decode_seconds > 0 and summary.encode_seconds > 0 and summary.serial_fps < summary.network_fps
    written, fps = read_clip(side)
    assert fps == pytest.approx(CLIP_FPS / 2) and len(written) == 2
    for frame, label, out in zip(picked, labels, written):
        assert np.array_equal(out[:, :160], frame)
        assert np.array_equal(out[:, 160:], prediction.overlay(frame, label, info))

    color = str(tmp_path / "color.avi")
    video.segment_video(net, clip, color, fmt="color", start=1, stride=2, max_frames=2, fourcc="FFV1", progress=False)
    written, _ = read_clip(color)
    for label, out in zip(labels, written):
        assert np.array_equal(out, data.colorize(label, info))

    captioned = str(tmp_path / "captioned.avi")
    video.segment_video(net, clip, captioned, fmt="color", start=1, stride=2, max_frames=2, fourcc="FFV1",
                        progress=False, caption="fast_scnn")
    written_captioned, _ = read_clip(captioned)
    for plain, out in zip(written, written_captioned):
        changed = np.any(plain != out, axis=-1)
        rows, cols = np.nonzero(changed)
        assert changed.any() and rows.max() < 40 and cols.min() == 0  # the caption band, top left only


def test_runs_the_model_at_its_own_input_scale(model, synthetic_frames, tmp_path):
    net = model[0].rebuild(input_scale=2.0)
    clip = write_clip(str(tmp_path / "clip.avi"), synthetic_frames[:2])
    out = str(tmp_path / "color.avi")
    video.segment_video(net, clip, out, fmt="color", fourcc="FFV1", progress=False)
    written, _ = read_clip(out)
    frames = np.stack(synthetic_frames[:2]).astype(np.float32)
    at_two = prediction.Predictor(net, scales=(2.0,)).labels(frames)
    at_one = prediction.Predictor(net, scales=(1.0,)).labels(frames)
    assert not np.array_equal(at_two, at_one)  # the scale changes the prediction, so the check below can fail
    info = prediction.model_dataset_info(net)
    for label, out_frame in zip(at_two, written):
        assert np.array_equal(out_frame, data.colorize(label, info))


def test_progress_line_shows_frames_fps_and_eta():
    assert video.Progress(total=100).line(25, 5.0) == "frames 25/100  5.0 fps  ETA 0:15"
    assert video.Progress(total=None).line(25, 5.0) == "frames 25  5.0 fps"


@pytest.mark.parametrize("case", ["not_a_video", "zero_frames", "no_frames_after_start", "unwritable_output",
                                  "unknown_codec"])
def test_bad_input_gives_one_line_and_leaves_nothing(case, model, synthetic_frames, tmp_path):
    output = str(tmp_path / "out.mp4")
    args = []
    if case == "not_a_video":
        clip = str(tmp_path / "notes.mp4")
        with open(clip, "w") as f:
            f.write("not a video\n")
        expected = "is not a video OpenCV can read"
    elif case == "zero_frames":
        clip = write_clip(str(tmp_path / "empty.avi"), [])
        expected = "has no frames"
    else:
        clip = write_clip(str(tmp_path / "clip.avi"), synthetic_frames)
        if case == "no_frames_after_start":
            args, expected = ["--start=100"], f"has no frames from --start=100 ({NUM_FRAMES} in all)"
        elif case == "unwritable_output":
            output, expected = str(tmp_path / "missing" / "out.mp4"), "does not exist"
        else:
            args, expected = ["--fourcc=XXXX"], "cannot encode --fourcc=XXXX into a .mp4 file"
    before = sorted(os.listdir(tmp_path))
    result = run_predict(f"--model={model[1]}", f"--input={clip}", f"--output={output}", *args)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("predict.py: error: ") and expected in last, result.stderr[-2000:]
    assert clip in last or output in last
    assert "Traceback" not in result.stderr and "moov atom" not in result.stderr
    assert sorted(os.listdir(tmp_path)) == before  # nothing written, not even a temporary file
