"""pretrained/: the committed CamVid models load, have their network's architecture, agree with their model cards,
their cards' held-out mIoU reproduces on real CamVid, and `experiments/evaluate.py` reads a CamVid `test` split with
them.

The published models are trained on every CamVid frame the project has (`trainval`); each card's accuracy is its
selection run's (the same recipe trained on `trainval-0006R0`), evaluated on sequence 0006R0, which that run never saw,
and published as `NAME_selection.keras` so the number can be re-checked here.

The real-data tests read CamVid from CONTEXTNET_CAMVID_DIR (`.ci/run` sets it when ../shared/data/camvid exists) and
are skipped without it; the file checks always run.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

import contextnet_tf
from contextnet_tf import data
from contextnet_tf.evaluation import metrics as evaluation

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRETRAINED = os.path.join(REPO, "pretrained")
CAMVID_DIR = os.environ.get("CONTEXTNET_CAMVID_DIR")
needs_camvid = pytest.mark.skipif(not CAMVID_DIR, reason="CONTEXTNET_CAMVID_DIR is not set")

# Published model -> the network it is.
MODELS = {"fast_scnn_camvid": "fast_scnn", "cn14_camvid": "cn14"}


def _load(name):
    return keras.saving.load_model(os.path.join(PRETRAINED, f"{name}.keras"), compile=False)


def _card(name):
    with open(os.path.join(PRETRAINED, f"{name}.json")) as f:
        metrics = json.load(f)
    with open(os.path.join(PRETRAINED, f"{name}.md")) as f:
        return metrics, f.read()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_pretrained_model_is_its_network_and_matches_its_card(name):
    model = _load(name)
    assert model.output_shape[-1] == 11 and len(model.outputs) == 1
    reference = contextnet_tf.build_model(MODELS[name], num_classes=11, input_shape=model.input_shape[1:])
    assert [layer.name for layer in model.layers] == [layer.name for layer in reference.layers]
    assert model.count_params() == reference.count_params()
    metrics, card = _card(name)
    # The card's number is the held-out sequence's, measured on the selection run's weights (issue 16), never val.
    assert metrics["split"] == "sequence:0006R0" and metrics["evaluated_model"] == f"{name}_selection.keras"
    assert metrics["plain"]["dataset"] == "camvid" and metrics["plain"]["num_images"] == 101
    scale = metrics["plain"]["scales"]
    assert len(scale) == 1 and not metrics["plain"]["flip"]
    # The file carries what the card says: its input scale, variant and the dataset's classes (issue 15).
    config = model.get_config()
    assert config["input_scale"] == scale[0] and config["variant"] == MODELS[name] and config["num_classes"] == 11
    assert list(config["class_names"]) == list(data.get_info("camvid").class_names)
    selection = _load(f"{name}_selection")  # the same network at the same input scale, other weights
    assert selection.get_config() == config
    single = "single scale" if scale == [1.0] else f"single scale, input resized x{scale[0]:g}"
    row = f"| held-out mIoU (selection run, `sequence:0006R0`) | **{100 * metrics['plain']['miou']:.1f}%** ({single})"
    assert row in card
    assert "| val mIoU" not in card and "`trainval` (468 images)" in card and "`trainval-0006R0` (367 images)" in card
    for class_name, iou in metrics["plain"]["class_iou"].items():
        assert f"| {class_name} | {100 * iou:.1f} |" in card
    assert f"--model=pretrained/{name}.keras" in card  # commands that run from the repository root
    assert f"--model=pretrained/{name}_selection.keras" in card and "--split=sequence:0006R0" in card
    assert os.path.exists(os.path.join(PRETRAINED, f"{name}_curve.png"))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_readme_table_gives_each_cards_numbers(name):
    """README's "Pretrained models" row of each file says what its card and its file say: the held-out mIoU single
    scale and with the card's test-time augmentation, the input scale the file carries, the card's frame rate."""
    with open(os.path.join(REPO, "README.md")) as f:
        rows = [line for line in f if line.startswith("|") and f"(pretrained/{name}.md)" in line]
    assert len(rows) == 1, f"README.md has {len(rows)} table rows for pretrained/{name}"
    cells = [cell.strip() for cell in rows[0].strip().strip("|").split("|")]
    metrics, card = _card(name)
    scale = _load(name).get_config()["input_scale"]
    fps = re.search(r"\| \d+x\d+ \| keras_folded \| end_to_end \| ([\d.]+) \|", card).group(1)
    assert cells[4].startswith(f"x{scale:g} "), cells[4]
    assert cells[5] == f"{fps} fps"
    assert cells[6] == f"{100 * metrics['plain']['miou']:.1f}%"
    assert cells[7] == f"{100 * metrics['tta']['miou']:.1f}% ({metrics['tta_setting']})"
    with open(os.path.join(REPO, "WORKSPACE.md")) as f:  # its pretrained row: "fast_scnn 35.0% (35.6% with flip)"
        assert f"{MODELS[name]} {cells[6]} ({cells[7].split()[0]}" in f.read()


@needs_camvid
@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.slow
def test_pretrained_cards_held_out_miou_reproduces_on_camvid(name):
    """The card's held-out numbers (single scale, and with its test-time augmentation) from its evaluation commands:
    the selection weights on the 101 frames of sequence 0006R0."""
    metrics, _ = _card(name)
    model = _load(f"{name}_selection")
    info = data.get_info("camvid")
    settings = [("plain", dict(scales=tuple(metrics["plain"]["scales"])))]
    if "tta" in metrics:
        settings.append(("tta", dict(scales=tuple(metrics["tta"]["scales"]), flip=metrics["tta"]["flip"])))
    for key, kwargs in settings:
        batches = data.make_dataset("camvid", CAMVID_DIR, metrics["split"], training=False, batch_size=1)
        result = evaluation.evaluate(model, batches, info, **kwargs)
        assert result["num_images"] == 101
        # Stated tolerance: 0.05 points of mIoU, for the few boundary pixels a different CPU's kernels may flip.
        assert result["miou"] == pytest.approx(metrics[key]["miou"], abs=5e-4), key


@needs_camvid
@pytest.mark.slow
def test_evaluate_py_reads_a_camvid_test_split_with_a_pretrained_model(tmp_path):
    """The held-back CamVid test split has the train/val layout: three val frames copied to ``test/`` and
    ``testannot/`` must give exactly what evaluating those frames as val gives, at the card's input scale (what
    evaluate.py uses when --scales is not given)."""
    pairs = data.list_examples("camvid", CAMVID_DIR, "val")[:3]
    os.makedirs(tmp_path / "test")
    os.makedirs(tmp_path / "testannot")
    for image, label in pairs:
        shutil.copy(image, tmp_path / "test")
        shutil.copy(label, tmp_path / "testannot")
    output = tmp_path / "test.json"
    subprocess.run([sys.executable, os.path.join(REPO, "experiments", "evaluate.py"),
                    "--model=pretrained/fast_scnn_camvid.keras", "--dataset=camvid", f"--data_dir={tmp_path}",
                    "--split=test", f"--output={output}"], check=True, capture_output=True, cwd=REPO)
    with open(output) as f:
        on_test = json.load(f)
    batches = data.make_dataset("camvid", CAMVID_DIR, "val", training=False, batch_size=1)
    metrics, _ = _card("fast_scnn_camvid")
    on_val = evaluation.evaluate(_load("fast_scnn_camvid"), batches, data.get_info("camvid"), max_images=3,
                                 scales=tuple(metrics["plain"]["scales"]))
    assert on_test["num_images"] == 3 and on_test["scales"] == metrics["plain"]["scales"]
    np.testing.assert_array_equal(on_test["confusion_matrix"], on_val["confusion_matrix"])
