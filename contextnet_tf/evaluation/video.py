"""Video in, video out: a clip segmented frame by frame, with decoding, inference and encoding overlapped.

    from contextnet_tf.evaluation import video
    summary = video.segment_video(model, "clip.mp4", "clip_seg.mp4", fmt="overlay")
    print(summary.fps, summary.network_fps)

Three threads share the work: a reader decodes frames (OpenCV) into a bounded queue, the calling thread runs the
network on them (`prediction.Predictor`, the code that predicts images) and puts the label maps on a second bounded
queue, and a writer renders and encodes them. OpenCV and TensorFlow release the GIL, so the demo runs at the speed of
its slowest stage (the network) instead of the sum of the three. Both speeds are measured: `VideoSummary.fps` is
frames over wall time, `VideoSummary.network_fps` frames over the time spent in the network alone.

Formats: ``overlay`` (class colours blended over the frame, exactly `prediction.overlay`, what `predict.py` writes
for images), ``color`` (the palette alone) and ``side_by_side`` (frame | overlay, twice as wide). Colours come from
the model (`model.palette`, see `prediction.model_dataset_info`). The output is written under a temporary name in its folder
and moved over the output name only once complete, so a failure never leaves a half-written file behind.
"""

import contextlib
import dataclasses
import math
import os
import queue
import sys
import threading
import time

import cv2
import numpy as np

from contextnet_tf.evaluation import prediction

FORMATS = ("overlay", "color", "side_by_side")
# The codec written for an output extension when --fourcc is not given (all in OpenCV's FFmpeg build).
DEFAULT_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "FFV1"}
QUEUE_SIZE = 8  # frames buffered between two stages: enough to absorb jitter, small enough to bound memory.
CAPTION_SCALE = 0.6


class VideoError(ValueError):
    """Bad video input or output; the message is one line that names the file or the flag."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What OpenCV reports of a video file: frames per second, frame size and frame count (0 when unknown)."""

    path: str
    fps: float
    width: int
    height: int
    frame_count: int


@dataclasses.dataclass(frozen=True)
class VideoSummary:
    """The result of `segment_video`.

    Attributes:
        output: the written file.
        frames: frames written.
        width, height: output frame size (``side_by_side`` is twice the input width).
        fps: the output's frame rate (the input's divided by the stride).
        seconds: wall time from the first frame decoded to the file complete (after the one warm-up prediction that
            traces the network).
        network_seconds: time spent in the network's forward pass and argmax (`Predictor.labels`).
        decode_seconds: time the reader spent decoding frames; encode_seconds: time the writer spent rendering
            and encoding them. Run one after another, the three would take their sum.
    """

    output: str
    frames: int
    width: int
    height: int
    fps: float
    seconds: float
    network_seconds: float
    decode_seconds: float = 0.0
    encode_seconds: float = 0.0

    @property
    def demo_fps(self):
        """Frames per second of the whole program: decode, network, render and encode, overlapped."""
        return self.frames / max(self.seconds, 1e-9)

    @property
    def network_fps(self):
        """Frames per second of the network alone (the time the inference thread spent in it)."""
        return self.frames / max(self.network_seconds, 1e-9)

    @property
    def serial_fps(self):
        """Frames per second that decoding, the network and encoding would give one after another (from the
        measured time of each stage)."""
        return self.frames / max(self.decode_seconds + self.network_seconds + self.encode_seconds, 1e-9)


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silences what OpenCV's FFmpeg backend prints to file descriptor 2 while opening files (``moov atom not
    found``, ``tag ... is not found``), so that bad input gives our one line instead."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def _open_capture(path):
    if not os.path.exists(path):
        raise VideoError(f"no video at {path}")
    if os.path.isdir(path):
        raise VideoError(f"{path} is a folder, not a video")
    with _quiet_native_stderr():
        capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise VideoError(f"{path} is not a video OpenCV can read")
    return capture


def probe(path):
    """The `VideoInfo` of a video file, after checking that its first frame decodes.

    Raises:
        VideoError: no such file, not a video, or a video with no frames.
    """
    capture = _open_capture(path)
    try:
        with _quiet_native_stderr():
            ok, frame = capture.read()
        if not ok or frame is None:
            raise VideoError(f"{path} has no frames")
        fps = capture.get(cv2.CAP_PROP_FPS)
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    finally:
        capture.release()
    if not (math.isfinite(fps) and fps > 0):
        raise VideoError(f"{path} does not state its frame rate")
    count = int(count) if math.isfinite(count) and count > 0 else 0
    return VideoInfo(path, float(fps), frame.shape[1], frame.shape[0], count)


def read_frames(path, start=0, stride=1, max_frames=None):
    """Yields RGB uint8 frames [H, W, 3] of a video: frames ``start``, ``start + stride``, ... (at most
    `max_frames`). Skipped frames are grabbed, not decoded, so seeking is exact for every codec."""
    capture = _open_capture(path)
    try:
        for _ in range(start):
            if not capture.grab():
                return
        count = 0
        while max_frames is None or count < max_frames:
            ok, frame = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            count += 1
            for _ in range(stride - 1):
                if not capture.grab():
                    return
    finally:
        capture.release()


def render_frame(frame, labels, fmt, info):
    """The output frame (RGB uint8) of one format of `FORMATS`: ``overlay`` and ``color`` are
    `prediction.render`'s, ``side_by_side`` is the frame beside its overlay."""
    if fmt == "side_by_side":
        return np.concatenate([frame, prediction.overlay(frame, labels, info)], axis=1)
    if fmt in ("overlay", "color"):
        return prediction.render(frame, labels, fmt, info)
    raise VideoError(f"unknown --format {fmt!r} for a video; choose one of {', '.join(FORMATS)}")


def draw_caption(frame, text):
    """Writes `text` in white on a black band at the top left of an RGB frame (in place) and returns it."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    thickness = 1
    (width, height), baseline = cv2.getTextSize(text, font, CAPTION_SCALE, thickness)
    cv2.rectangle(frame, (0, 0), (width + 12, height + baseline + 10), (0, 0, 0), cv2.FILLED)
    cv2.putText(frame, text, (6, height + 5), font, CAPTION_SCALE, (255, 255, 255), thickness, cv2.LINE_AA)
    return frame


class Progress:
    """One updating line on stderr: frames done (of the total when known), fps and ETA.

    On a terminal the line is redrawn at most every `interval` seconds; elsewhere (a log file) a line is printed at
    most every 10 seconds.
    """

    def __init__(self, total=None, stream=None, interval=0.2, enabled=True):
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval if self.interactive else 10.0
        self._last = -math.inf

    def line(self, done, fps):
        """The text of the progress line."""
        total = f"/{self.total}" if self.total else ""
        text = f"frames {done}{total}  {fps:.1f} fps"
        if self.total and fps > 0:
            remaining = max(self.total - done, 0) / fps
            text += f"  ETA {int(remaining // 60)}:{int(remaining % 60):02d}"
        return text

    def update(self, done, fps, final=False):
        if not self.enabled:
            return
        now = time.perf_counter()
        if not final and now - self._last < self.interval:
            return
        self._last = now
        text = self.line(done, fps)
        if self.interactive:
            self.stream.write("\r" + text.ljust(48) + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _default_fourcc(output):
    extension = os.path.splitext(output)[1].lower()
    if extension not in DEFAULT_FOURCC:
        raise VideoError(
            f"cannot tell the codec of {output}: use an extension among {', '.join(DEFAULT_FOURCC)} or pass --fourcc"
        )
    return DEFAULT_FOURCC[extension]


def check_output(output, input_path=None):
    """Checks that `output` can be written (its folder exists and is writable; it is not a folder or the input).

    Raises:
        VideoError: naming the output and why.
    """
    folder = os.path.dirname(os.path.abspath(output))
    if os.path.isdir(output):
        raise VideoError(f"cannot write the video {output}: it is a folder")
    if not os.path.isdir(folder):
        raise VideoError(f"cannot write the video {output}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise VideoError(f"cannot write the video {output}: folder {folder} is not writable")
    if input_path is not None and os.path.abspath(output) == os.path.abspath(input_path):
        raise VideoError(f"--output {output} is the input video; choose another name")


def _temporary_name(output):
    folder, name = os.path.split(os.path.abspath(output))
    stem, extension = os.path.splitext(name)
    # Same folder (so os.replace is atomic) and same extension (FFmpeg picks the container by it).
    return os.path.join(folder, f".{stem}.partial-{os.getpid()}{extension}")


def open_writer(path, fourcc, fps, size, output=None):
    """An opened `cv2.VideoWriter` of RGB frames of `size` (width, height) at `path`.

    Raises:
        VideoError: `fourcc` is not four characters, or OpenCV cannot encode it into the file's container.
    """
    output = output or path
    if len(fourcc) != 4:
        raise VideoError(f"--fourcc must be four characters (e.g. mp4v, MJPG, FFV1), got {fourcc!r}")
    with _quiet_native_stderr():
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        writer.release()
        if os.path.exists(path):
            os.remove(path)
        extension = os.path.splitext(output)[1] or "(no extension)"
        raise VideoError(
            f"OpenCV cannot encode --fourcc={fourcc} into a {extension} file ({output}); "
            f"try {', '.join(f'{e}: {c}' for e, c in DEFAULT_FOURCC.items())}"
        )
    return writer


class _Stop(Exception):
    pass


def _put(q, item, stop):
    while True:
        if stop.is_set():
            raise _Stop()
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            pass


def _get(q, stop):
    while True:
        if stop.is_set():
            raise _Stop()
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            pass


_END = object()


def segment_video(
    model,
    input_path,
    output,
    fmt="overlay",
    info=None,
    flip=False,
    scales=None,
    start=0,
    stride=1,
    max_frames=None,
    caption=None,
    fourcc=None,
    progress=True,
    queue_size=QUEUE_SIZE,
):
    """Segments a video and writes the result as a video of the same frame rate (divided by `stride`) and size.

    Args:
        model: a segmentation model (any input size).
        input_path: any video OpenCV can read.
        output: the video to write; its extension picks the container (and the default codec, `DEFAULT_FOURCC`).
        fmt: one of `FORMATS`.
        info: the `data.DatasetInfo` whose palette colours the classes (default: the model's, `prediction.model_dataset_info`).
        flip, scales: test-time augmentation of `prediction.Predictor` (default scales: the model's own input scale,
            `prediction.default_scales`).
        start: first frame (0-based); stride: keep every `stride`-th frame from there; max_frames: at most this many.
        caption: if given, each frame shows this text and the measured frames per second so far.
        fourcc: the four-character codec (default: by extension).
        progress: show the progress line on stderr.
        queue_size: frames buffered between the reader, the network and the writer.

    Returns:
        A `VideoSummary`.

    Raises:
        VideoError: unreadable input, no frames (in the file or in the range asked for), an unwritable output or a
            codec OpenCV cannot write. Nothing is left under `output` (or its temporary name) when it is raised.
    """
    if fmt not in FORMATS:
        raise VideoError(f"unknown --format {fmt!r} for a video; choose one of {', '.join(FORMATS)}")
    if start < 0 or stride < 1 or (max_frames is not None and max_frames < 1):
        raise VideoError(f"need --start >= 0, --stride >= 1, --max_frames >= 1; got {start}, {stride}, {max_frames}")
    source = probe(input_path)
    check_output(output, input_path)
    fourcc = fourcc or _default_fourcc(output)
    info = info or prediction.model_dataset_info(model)
    predictor = prediction.Predictor(model, flip=flip, scales=scales)

    available = max(source.frame_count - start, 0)
    total = math.ceil(available / stride) if source.frame_count else None
    if total is not None and max_frames is not None:
        total = min(total, max_frames)
    out_width = source.width * (2 if fmt == "side_by_side" else 1)
    out_fps = source.fps / stride
    temporary = _temporary_name(output)
    writer = open_writer(temporary, fourcc, out_fps, (out_width, source.height), output=output)

    try:
        # The first prediction traces the network: done before the clock starts, on a frame of the video's size.
        predictor.labels(np.zeros((1, source.height, source.width, 3), np.float32))
    except BaseException:
        writer.release()
        os.remove(temporary)
        raise

    frames_in = queue.Queue(queue_size)
    labelled = queue.Queue(queue_size)
    stop = threading.Event()
    errors = []
    written = [0]
    stage_seconds = {"decode": 0.0, "encode": 0.0}
    bar = Progress(total, enabled=progress)
    started = time.perf_counter()

    def read():
        frames = read_frames(input_path, start, stride, max_frames)
        try:
            while True:
                tick = time.perf_counter()
                frame = next(frames, None)
                stage_seconds["decode"] += time.perf_counter() - tick
                if frame is None:
                    break
                if frame.shape[:2] != (source.height, source.width):
                    raise VideoError(f"{input_path}: frame size changes from {source.width}x{source.height} "
                                     f"to {frame.shape[1]}x{frame.shape[0]}")
                _put(frames_in, frame, stop)
            _put(frames_in, _END, stop)
        except _Stop:
            pass
        except Exception as error:  # handed to the calling thread, which raises it
            errors.append(error)
            stop.set()
        finally:
            frames.close()  # releases the capture when stopped early

    def write():
        try:
            while (item := _get(labelled, stop)) is not _END:
                frame, labels = item
                tick = time.perf_counter()
                out = render_frame(frame, labels, fmt, info)
                done = written[0] + 1
                fps = done / max(time.perf_counter() - started, 1e-9)
                if caption:
                    out = draw_caption(np.ascontiguousarray(out), f"{caption}  {fps:.1f} fps")
                writer.write(cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
                stage_seconds["encode"] += time.perf_counter() - tick
                written[0] = done
                bar.update(done, fps)
        except _Stop:
            pass
        except Exception as error:
            errors.append(error)
            stop.set()

    threads = [threading.Thread(target=read, name="video-reader"), threading.Thread(target=write, name="video-writer")]
    for thread in threads:
        thread.start()
    network_seconds = 0.0
    try:
        while (frame := _get(frames_in, stop)) is not _END:
            tick = time.perf_counter()
            labels = predictor.labels(frame[None].astype(np.float32))[0]
            network_seconds += time.perf_counter() - tick
            _put(labelled, (frame, labels), stop)
        _put(labelled, _END, stop)
    except _Stop:
        pass
    except BaseException as error:
        errors.append(error)
        stop.set()
    finally:
        for thread in threads:
            thread.join()
        writer.release()
    seconds = time.perf_counter() - started

    if not errors and written[0] == 0:
        errors.append(VideoError(f"{input_path} has no frames from --start={start} ({source.frame_count} in all)"))
    if errors:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise errors[0]
    if not os.path.exists(temporary) or os.path.getsize(temporary) == 0:
        raise VideoError(f"OpenCV wrote nothing to {output} with --fourcc={fourcc}")
    os.replace(temporary, output)
    bar.update(written[0], written[0] / max(seconds, 1e-9), final=True)
    return VideoSummary(output, written[0], out_width, source.height, out_fps, seconds, network_seconds,
                        stage_seconds["decode"], stage_seconds["encode"])
