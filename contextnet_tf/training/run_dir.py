"""The run folder: resolved config, `metrics.jsonl`, TensorBoard scalars and images, prediction PNGs.

Layout of ``workdir``::

    config.json            the resolved `TrainConfig`
    metrics.jsonl          one JSON object per line: {"step", "split": "train" | "val", ...scalars}
    tensorboard/train/     loss parts, learning rate, images/s
    tensorboard/val/       mIoU, category mIoU, prediction images
    predictions/           step_XXXXXXX.png: image | ground truth | prediction for a few validation images
    checkpoints/           tf.train.CheckpointManager checkpoints (step, model, optimiser)
    best.keras, best.json  the inference model with the best validation mIoU so far, and its step and scores
    final.keras            the inference model at the end of the run
    val_metrics.json       the evaluation at the end of the run (`contextnet_tf.evaluation.metrics` format)

Only the chief worker writes; on other workers every method is a no-op.
"""

import json
import math
import os

import cv2
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

# TensorBoard plugin tags for `tf.summary.write`, so that writing needs no `tensorboard` package (TensorFlow 2.21
# no longer installs it; it is needed only to view the logs).
_SCALARS = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
).SerializeToString()
_IMAGES = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="images")
).SerializeToString()


def _jsonable(value):
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


class RunDir:
    """Writer of one run folder (see the module docstring).

    Args:
        workdir: the run folder.
        chief: whether this process writes (False on non-chief workers).
    """

    def __init__(self, workdir, chief=True):
        self.workdir = workdir
        self.chief = chief
        self.checkpoint_dir = os.path.join(workdir, "checkpoints")
        self.metrics_path = os.path.join(workdir, "metrics.jsonl")
        self.config_path = os.path.join(workdir, "config.json")
        self._writers = {}
        if chief:
            os.makedirs(os.path.join(workdir, "predictions"), exist_ok=True)

    def path(self, name):
        """Absolute path of a file in the run folder."""
        return os.path.join(self.workdir, name)

    def read_config_text(self):
        """The stored config.json text, or None for a new run."""
        if not os.path.exists(self.config_path):
            return None
        with open(self.config_path) as f:
            return f.read()

    def write_config(self, config):
        """Writes config.json."""
        if self.chief:
            self.write_json("config.json", json.loads(config.to_json()))

    def read_json(self, name):
        """The JSON file `name` of the run folder, or None if it does not exist."""
        if not os.path.exists(self.path(name)):
            return None
        with open(self.path(name)) as f:
            return json.load(f)

    def write_json(self, name, obj):
        """Writes `obj` as indented JSON to `name` in the run folder."""
        if self.chief:
            with open(self.path(name), "w") as f:
                json.dump(obj, f, indent=2)
                f.write("\n")

    def truncate_metrics(self, step):
        """Drops metrics.jsonl records after `step`: a resumed run rewrites what the killed one logged past its
        last checkpoint."""
        if not self.chief or not os.path.exists(self.metrics_path):
            return
        with open(self.metrics_path) as f:
            lines = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= step]
        with open(self.metrics_path, "w") as f:
            f.writelines(lines)

    def log(self, step, split, scalars):
        """Appends one record to metrics.jsonl and writes the scalars to TensorBoard under `split`."""
        if not self.chief:
            return
        record = {"step": int(step), "split": split}
        record.update({k: _jsonable(v) for k, v in scalars.items()})
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        with self._writer(split).as_default(step=int(step)):
            for name, value in scalars.items():
                if isinstance(value, int | float | np.number):
                    tf.summary.write(name, tf.constant(float(value), tf.float32), metadata=_SCALARS)

    def prediction_image(self, step, image):
        """Saves a uint8 RGB [H, W, 3] image as predictions/step_XXXXXXX.png and as a TensorBoard image."""
        if not self.chief:
            return
        path = self.path(os.path.join("predictions", f"step_{int(step):07d}.png"))
        cv2.imwrite(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        height, width = image.shape[:2]
        # The TensorBoard image format: [width, height, PNG bytes...] as strings.
        encoded = tf.stack([str(width), str(height), tf.io.encode_png(image)])
        with self._writer("val").as_default(step=int(step)):
            tf.summary.write("predictions", encoded, metadata=_IMAGES)

    def flush(self):
        """Flushes the TensorBoard writers."""
        for writer in self._writers.values():
            writer.flush()

    def _writer(self, split):
        if split not in self._writers:
            self._writers[split] = tf.summary.create_file_writer(os.path.join(self.workdir, "tensorboard", split))
        return self._writers[split]
