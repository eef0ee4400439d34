"""End to end on the synthetic city: experiments/train.py drives val mIoU clearly up and writes a complete run
folder; experiments/evaluate.py on the saved model reproduces the run's own evaluation.

Measured on the 2-core development machine (seed 0, 300 steps of 4 crops of 64x128, RMSprop recipe, about 90 s):
the untrained Fast-SCNN scores 0.8% val mIoU, the trained one 13.3% (pixel accuracy 60%). The thresholds below
leave wide margins on both sides.
"""

import json
import os
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from contextnet_tf import build_model, data
from contextnet_tf.evaluation import metrics as evaluation

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 300


def _events(folder):
    """{tag: [steps]} of the TensorBoard event files in `folder`."""
    tags = {}
    for name in os.listdir(folder):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


@pytest.mark.slow
def test_synthetic_city_training_run(tmp_path):
    city = str(tmp_path / "city")
    data.generate_synthetic_city(city, num_train=48, num_val=8, image_size=(128, 256), seed=0)
    info = data.get_info("synthetic")
    val = data.make_dataset("synthetic", city, "val", training=False, batch_size=4)
    untrained = evaluation.evaluate(build_model("fast_scnn", (128, 256, 3)), val, info)
    assert untrained["miou"] < 0.03

    workdir = tmp_path / "run"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "experiments", "train.py"), "--model=fast_scnn", "--dataset=synthetic",
         f"--data_dir={city}", f"--workdir={workdir}", f"--steps={STEPS}", "--batch_size=4", "--crop=64x128",
         "--optimizer=rmsprop", "--eval_every=150", "--eval_batch_size=4", "--checkpoint_every=100",
         "--log_every=10", "--seed=0"],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "completed; best val mIoU" in result.stdout and "img/s" in result.stdout  # the progress bar

    with open(workdir / "val_metrics.json") as f:
        final = json.load(f)
    assert final["miou"] > 0.08 and final["pixel_accuracy"] > 0.45, final["miou"]
    assert final["category_miou"] > final["miou"]

    # The run folder.
    config = json.loads((workdir / "config.json").read_text())
    resolved = (config["steps"], config["crop"], config["optimizer"], config["lr_power"])
    assert resolved == (STEPS, [64, 128], "rmsprop", 0.98)
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if r["split"] == "train"]
    assert train_steps == list(range(10, STEPS + 1, 10))
    assert {"loss", "ce", "aux_ltd", "aux_gfe", "l2", "lr", "images_per_s"} <= set(records[0])
    val_records = [r for r in records if r["split"] == "val"]
    assert [r["step"] for r in val_records] == [150, STEPS] and val_records[-1]["miou"] == final["miou"]
    lrs = [r["lr"] for r in records if r["split"] == "train"]
    assert lrs[-1] < 0.001 < lrs[0] <= 0.045 and lrs == sorted(lrs, reverse=True)  # poly decay to ~0
    train_tags, val_tags = _events(workdir / "tensorboard" / "train"), _events(workdir / "tensorboard" / "val")
    assert {"loss", "ce", "aux_ltd", "aux_gfe", "l2", "lr", "images_per_s"} <= set(train_tags)
    assert val_tags["miou"] == [150, STEPS] and val_tags["predictions"] == [150, STEPS]
    assert "category_miou" in val_tags
    grid = cv2.imread(str(workdir / "predictions" / f"step_{STEPS:07d}.png"))
    assert grid.shape == (2 * 128, 3 * 256, 3)  # two images: image | ground truth | prediction
    assert tf.train.latest_checkpoint(str(workdir / "checkpoints")).endswith(f"ckpt-{STEPS}")
    best = json.loads((workdir / "best.json").read_text())
    assert best["miou"] == max(r["miou"] for r in val_records)
    best_model = keras.saving.load_model(workdir / "best.keras", compile=False)
    # Saved for use, not for training: any input size, no auxiliary heads, and the recipe in its config.
    assert best_model.input_shape == (None, None, None, 3) and not isinstance(best_model.output, dict)
    assert best_model.get_config()["aux"] is False and best_model.get_config()["dataset"] == "synthetic"
    assert best_model(np.zeros((1, 96, 200, 3), np.float32)).shape[:3] == (1, 96, 200)

    # experiments/evaluate.py on the final model reproduces the run's evaluation.
    metrics_path = tmp_path / "metrics.json"
    evaluated = subprocess.run(
        [sys.executable, os.path.join(REPO, "experiments", "evaluate.py"), f"--model={workdir / 'final.keras'}",
         "--dataset=synthetic", f"--data_dir={city}", "--split=val", f"--output={metrics_path}"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "category mIoU" in evaluated.stdout
    offline = json.loads(metrics_path.read_text())
    assert offline["miou"] == pytest.approx(final["miou"], abs=1e-6)
    assert offline["confusion_matrix"] == final["confusion_matrix"]
