"""The quick start end to end with tiny settings: every report file is there and valid, the report's tables agree
with metrics.json, the folding and SavedModel checks hold, a second run reuses the first, bad flags name the flag.

    python -m pytest tests/test_reports_quickstart.py -q

One tiny run (24 train / 4 val synthetic images at 64x128, 20 steps, 2 + 3 benchmark frames) is shared by the
tests of this file; about a minute on the 2-core development machine.
"""

import json
import os
import re
import subprocess
import sys

import dataclasses
import shlex

import cv2
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from contextnet_tf import cli, data
from contextnet_tf.reports import quickstart

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# lr: the papers' 0.045, not the quick start's 0.1, which in 20 steps of 4 crops leaves batch-norm statistics far off
# and logits near 1000, where float32 round-off alone exceeds the folding check's absolute 1e-4.
TINY = dict(num_train=24, num_val=4, image_size=(64, 128), steps=20, batch_size=4, crop=(64, 96), lr=0.045,
            eval_every=10, num_prediction_images=2, burn_in=2, frames=3)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """(workdir, summary, logged lines) of one tiny quick start."""
    workdir = str(tmp_path_factory.mktemp("quickstart"))
    lines = []
    summary = quickstart.run(quickstart.QuickstartConfig(workdir=workdir, **TINY), log=lines.append)
    return workdir, summary, lines


def _read_json(path):
    assert os.path.getsize(path) > 0, path
    with open(path) as f:
        return json.load(f)


@pytest.mark.slow
def test_every_report_file_is_written_and_valid(tiny_run):
    workdir, summary, lines = tiny_run
    for name in ("training_curve.png", "predictions.png"):
        path = os.path.join(workdir, name)
        with open(path, "rb") as f:
            assert f.read(8) == PNG_SIGNATURE, name
        image = cv2.imread(path)
        assert image is not None and min(image.shape[:2]) > 100, name
        assert image.std() > 10, f"{name} is blank"  # Something is drawn on it.
    for name in ("metrics.json", "benchmark.json", "summary.json"):
        _read_json(os.path.join(workdir, name))
    for name in ("report.md", "benchmark.md"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0, name
    assert os.path.exists(os.path.join(workdir, "saved_model", "saved_model.pb"))
    run = os.path.join(workdir, "run")
    assert {"config.json", "metrics.jsonl", "final.keras", "checkpoints"} <= set(os.listdir(run))
    assert summary["report"] == os.path.join(workdir, "report.md")
    assert lines[-1] == f"Report: {os.path.join(workdir, 'report.md')}"
    assert [line for line in lines if line.startswith("\n==> [")] == [
        f"\n==> [{i}/7] {title}" for i, title in enumerate(
            ["Data (synthetic city)", "Training fast_scnn (20 steps)", "Evaluating on the val split",
             "Folding batch norms", "Benchmark: end to end, batch 1, 64x128, unfolded vs folded",
             "Exporting the folded model as a SavedModel", "Writing the report"], start=1)
    ]
    assert set(summary["stage_seconds"]) == set(quickstart.STAGES)
    assert all(seconds > 0 for seconds in summary["stage_seconds"].values())
    assert summary["training"] == dict(start_step=0, step=20, total_steps=20, completed=True, workdir=run)
    assert summary["data"]["num_train"] == 24 and summary["data"]["image_size"] == [64, 128]
    assert summary["passed"]


@pytest.mark.slow
def test_report_tables_agree_with_metrics_json(tiny_run):
    workdir, summary, _ = tiny_run
    metrics = _read_json(os.path.join(workdir, "metrics.json"))
    miou = metrics["miou"]
    # The mIoU is the mean IoU of the classes present, recomputed here from the stored confusion matrix.
    confusion = np.asarray(metrics["confusion_matrix"], np.float64)
    union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    assert isinstance(miou, float) and miou == pytest.approx(np.mean(np.diag(confusion)[union > 0] / union[union > 0]))
    assert summary["miou"] == miou
    with open(os.path.join(workdir, "report.md")) as f:
        report = f.read()
    # The per-class table: every class, then the mean as shown in percent.
    assert "| class | IoU (%) |" in report
    for name, value in metrics["class_iou"].items():
        assert f"| {name} | {'n/a' if value is None else f'{100 * value:.2f}'} |" in report, name
    shown = re.search(r"^\| \*\*mIoU\*\* \| \*\*([0-9.]+)\*\* \|$", report, re.MULTILINE)
    assert shown is not None
    assert float(shown.group(1)) == pytest.approx(100 * miou, abs=0.005)
    assert f"**{100 * miou:.2f}%**" in report  # The summary line says the same.
    # The benchmark table, also on its own in benchmark.md.
    with open(os.path.join(workdir, "benchmark.md")) as f:
        table = f.read()
    assert table in report
    assert "| resolution | path | mode | fps |" in table
    bench = _read_json(os.path.join(workdir, "benchmark.json"))
    assert {(r["path"], r["resolution"], r["mode"], r["frames"]) for r in bench["results"]} == {
        ("keras_unfolded", "64x128", "end_to_end", 3), ("keras_folded", "64x128", "end_to_end", 3)}
    for record in bench["results"]:
        assert f"| 64x128 | {record['path']} | end_to_end | {record['fps']:.2f} |" in table
    assert "![training curve](training_curve.png)" in report and "![predictions](predictions.png)" in report
    config = quickstart.QuickstartConfig(workdir=workdir, **TINY)
    assert f"`{quickstart.equivalent_command(config)}`" in report  # The command that gives the same run.
    assert quickstart.equivalent_command(config).startswith("python experiments/quickstart.py --workdir=")


@pytest.mark.slow
def test_folding_check_is_recorded_and_passes(tiny_run):
    workdir, summary, _ = tiny_run
    fold = _read_json(os.path.join(workdir, "summary.json"))["folding"]
    assert fold == summary["folding"]
    assert 0.0 <= fold["max_abs_logit_difference"] < 1e-4 and fold["passed"]
    assert fold["batch_norms_folded"] > 10 and fold["batch_norms_left"] == 0
    assert 0.1 < fold["max_abs_logit"] < 100  # Logits of a trained model, not of a trivially zero network.


@pytest.mark.slow
def test_saved_model_serving_returns_a_uint8_label_map_of_the_input_size(tiny_run):
    workdir, summary, _ = tiny_run
    assert summary["export"]["passed"] and summary["export"]["format"] == "saved_model"
    assert summary["export"]["label_agreement"] >= 0.999 and summary["export"]["images"] == [[64, 128]]
    serve = tf.saved_model.load(os.path.join(workdir, "saved_model")).signatures["serving_default"]
    for height, width in ((64, 128), (50, 70)):
        image = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
        labels = serve(image=tf.constant(image))["labels"]
        assert labels.dtype == tf.uint8 and tuple(labels.shape) == (1, height, width)
        assert int(tf.reduce_max(labels)) < data.get_info("synthetic").num_classes


@pytest.mark.slow
def test_second_run_reuses_the_data_and_the_finished_run(tiny_run):
    workdir, first, _ = tiny_run
    lines = []
    second = quickstart.run(quickstart.QuickstartConfig(workdir=workdir, **TINY), log=lines.append)
    assert second["data"]["reused"] and any("reusing the synthetic city" in line for line in lines)
    assert second["training"]["start_step"] == 20 and second["training"]["step"] == 20
    assert second["miou"] == pytest.approx(first["miou"], abs=1e-6)  # The same weights.
    with open(os.path.join(workdir, "report.md")) as f:
        assert "reused a finished run" in f.read()
    # A setting that makes the stored run a different experiment is refused, naming --fresh.
    with pytest.raises(quickstart.QuickstartError, match="--fresh"):
        quickstart.run(quickstart.QuickstartConfig(workdir=workdir, **{**TINY, "num_train": 28}), log=lines.append)
    with pytest.raises(quickstart.QuickstartError, match="--fresh.*model"):
        quickstart.run(quickstart.QuickstartConfig(workdir=workdir, **{**TINY, "model": "cn14"}), log=lines.append)


@pytest.mark.parametrize(
    "overrides, flag",
    [
        (dict(dataset="kitti"), "--dataset"),
        (dict(dataset="camvid"), "--data_dir"),
        (dict(dataset="cityscapes", data_dir="/nonexistent/cityscapes"), "--data_dir"),
        (dict(model="resnet"), "--model"),
        (dict(crop=(16, 64)), "--crop"),
        (dict(steps=0), "--steps"),
    ],
)
def test_bad_settings_name_the_flag(overrides, flag):
    with pytest.raises(quickstart.QuickstartError, match=f"^{flag}: "):
        quickstart.check_config(quickstart.QuickstartConfig(**overrides))


def test_flags_are_generated_from_the_config_and_the_command_round_trips():
    values = flags.FlagValues()
    holders = cli.define_flags(quickstart.QuickstartConfig, flag_values=values)
    assert list(holders) == [f.name for f in dataclasses.fields(quickstart.QuickstartConfig)]
    config = quickstart.QuickstartConfig(workdir="/tmp/q s", dataset="camvid", data_dir="/d", model="cn14",
                                         image_size=(96, 160), crop=(64, 96), lr=0.045, max_val_images=3, fresh=True)
    argv = shlex.split(quickstart.equivalent_command(config))[1:]
    assert "--crop=64x96" in argv and "--image_size=96x160" in argv and "--fresh" in argv
    values(argv)
    assert quickstart.QuickstartConfig(**cli.overrides(holders, only_set=False)) == config
    with pytest.raises(flags.IllegalFlagValueError, match="--image_size=256,512: expected HxW such as 352x480"):
        values(["quickstart.py", "--image_size=256,512"])


def test_program_rejects_a_real_dataset_without_data_dir(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "experiments", "quickstart.py"), "--dataset=camvid",
         f"--workdir={tmp_path / 'qs'}"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert result.returncode != 0
    assert "--data_dir: --dataset=camvid needs --data_dir" in result.stderr
    assert not os.path.exists(tmp_path / "qs")  # Refused before writing anything.
