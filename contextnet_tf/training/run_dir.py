"""The run folder: resolved config, `metrics.jsonl`, TensorBoard scalars and images, prediction PNGs.

Layout of ``workdir``::

    config.json            the resolved `TrainConfig` the run started with; never rewritten
    config_changes.jsonl   settings changed on resume with ``allow_changes``: {"step", "changes": {name: {"from",
                           "to"}}, "time"} per line, ``step`` being the steps done when the change took effect
    metrics.jsonl          one JSON object per line: {"step", "split": "train" | "val", ...scalars}
    tensorboard/train/     loss parts, learning rate, images/s
    tensorboard/val/       mIoU, category mIoU, prediction images
    predictions/           step_XXXXXXX.png: image | ground truth | prediction for a few validation images
    checkpoints/           tf.train.CheckpointManager checkpoints (step, model, optimiser)
    best.keras, best.json  the inference model with the best validation mIoU so far, and its step and scores
    final.keras            the inference model at the end of the run
    val_metrics.json       the evaluation at the end of the run (`contextnet_tf.evaluation.metrics` format)

Only the chief worker writes; on other workers every method is a no-op.

The record is append-only: a run resumed with a setting that changes what it trains (`RESULT_FIELDS`: steps, batch
size, learning rate and schedule, seed, crop, scales, class weighting, ...) is refused with `RunRecordError` naming
each change, unless ``allow_changes`` is set, in which case `record` appends the changes and their step to
``config_changes.jsonl``. Settings that do not change the weights (`BOOKKEEPING_FIELDS`: where the data and run
live, logging, checkpoint cadence, the distribution strategy) may differ freely. Changes that make the checkpoints
unloadable (`config.TrainConfig.structural_differences`: model, width, dataset, optimiser, ...) are always refused.
"""

import dataclasses
import datetime
import json
import math
import os

import cv2
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from contextnet_tf.training.config import TrainConfig

# TrainConfig fields that do not change what a run trains (its weights, schedule or evaluation record).
BOOKKEEPING_FIELDS = (
    "workdir", "data_dir", "strategy", "deterministic_ops", "cache", "progress", "stop_at_step", "log_every",
    "eval_every", "eval_batch_size", "checkpoint_every", "keep_checkpoints", "num_prediction_images", "allow_changes",
)
RESULT_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in BOOKKEEPING_FIELDS)


class RunRecordError(ValueError):
    """A resumed run whose settings differ from its record (the message names each one and what to do)."""

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


def _listed(recorded, config, names):
    return ", ".join(f"{name} {getattr(recorded, name)!r} -> {getattr(config, name)!r}" for name in names)


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

    def config_changes(self):
        """The records of ``config_changes.jsonl`` (oldest first; empty without changes)."""
        path = self.path("config_changes.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def recorded_config(self):
        """The settings in force: config.json with the changes of ``config_changes.jsonl`` applied (None for a new
        run)."""
        text = self.read_config_text()
        if text is None:
            return None
        fields = json.loads(text)
        for record in self.config_changes():
            fields.update({name: change["to"] for name, change in record["changes"].items()})
        return TrainConfig(**fields)

    def check_resume(self, config, step):
        """The result-changing settings of `config` that differ from the record, ``{name: (recorded, new)}``.

        Args:
            config: the `TrainConfig` of this invocation.
            step: steps done so far (named in the message).

        Raises:
            RunRecordError: a structural change (always), or any change without ``config.allow_changes``.
        """
        recorded = self.recorded_config()
        if recorded is None:
            return {}
        structural = config.structural_differences(recorded)
        if structural:
            raise RunRecordError(
                f"{self.workdir} holds a run of other {', '.join(structural)} "
                f"({_listed(recorded, config, structural)}); its checkpoints cannot be resumed as this one: "
                "use a new --workdir"
            )
        old, new = json.loads(recorded.to_json()), json.loads(config.to_json())
        changed = {name: (old[name], new[name]) for name in RESULT_FIELDS if old.get(name) != new.get(name)}
        if changed and not config.allow_changes:
            raise RunRecordError(
                f"{self.workdir} holds a run ({step} steps done) with other settings: "
                f"{_listed(recorded, config, changed)}. These change what the run trains: use a new --workdir, or "
                f"pass --allow_changes to apply them from step {step} (recorded in config_changes.jsonl; "
                "config.json keeps the settings the run started with)"
            )
        return changed

    def record(self, config, step, changes):
        """Writes config.json for a new run, or appends `changes` (from `check_resume`) taking effect at `step`."""
        if not self.chief:
            return
        if self.read_config_text() is None:
            self.write_json("config.json", json.loads(config.to_json()))
        elif changes:
            entry = {
                "step": int(step),
                "changes": {name: {"from": old, "to": new} for name, (old, new) in changes.items()},
                "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            }
            with open(self.path("config_changes.jsonl"), "a") as f:
                f.write(json.dumps(entry) + "\n")

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


def training_wall_time(run_dir):
    """Seconds from the first to the last train scalar in the run's TensorBoard events (None without events).

    Gaps of more than 10 minutes between consecutive events (a killed and later resumed run) are left out.
    """
    folder = os.path.join(run_dir, "tensorboard", "train")
    if not os.path.isdir(folder):
        return None
    times = []
    for name in sorted(os.listdir(folder)):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
            if event.summary.value:
                times.append(event.wall_time)
    times.sort()
    if len(times) < 2:
        return None
    return float(sum(b - a for a, b in zip(times, times[1:]) if b - a < 600))
