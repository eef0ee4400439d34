"""contextnet_tf.reports.model_card: a finished run becomes a loadable .keras file, a model card with the command and the
per-class table, metrics JSON and a training curve."""

import json
import os
import shlex
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest

from contextnet_tf import data, load_model
from contextnet_tf.evaluation import metrics as evaluation
from contextnet_tf.reports import model_card
from contextnet_tf.training import TrainConfig, train
from contextnet_tf.training import config as config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    city = str(root / "city")
    data.generate_synthetic_city(city, num_train=8, num_val=2, image_size=(64, 128), seed=0)
    config = TrainConfig.from_preset("fast_scnn_paper", model="fast_scnn", dataset="synthetic", data_dir=city,
                                     workdir=str(root / "run"), steps=4, batch_size=2, crop=(64, 64), eval_every=2,
                                     log_every=1, checkpoint_every=2, progress=False)
    train(config)
    return config, root


@pytest.fixture(scope="module")
def trainval_run(finished_run):
    """`finished_run`'s recipe trained on train+val without validation: a final run whose selection run it is."""
    import dataclasses

    selection, root = finished_run
    final = dataclasses.replace(selection, workdir=str(root / "all"), train_split="train+val", eval_every=-1)
    train(final)
    return final


@pytest.mark.slow
def test_train_command_round_trips_the_config(finished_run):
    config, _ = finished_run
    command = model_card.train_command(config)
    assert command.startswith("python experiments/train.py")
    flags = dict(part.strip(" \\\n").lstrip("-").split("=", 1) for part in command.split("--")[1:] if "=" in part)
    assert flags["model"] == "fast_scnn" and flags["preset"] == "fast_scnn_paper"
    assert flags["steps"] == "4" and flags["batch_size"] == "2" and flags["crop"] == "64x64"
    assert "optimizer" not in flags and "lr" not in flags  # the preset's own values are not repeated


def test_card_command_reproduces_a_config_with_every_field_set():
    """The card's command, parsed by experiments/train.py's generated flags, gives back the same config, for a config
    whose every field differs from the defaults (the field table is tests/test_training_config.py's)."""
    from absl import flags as absl_flags

    from test_training_config import EVERY_FIELD

    config = TrainConfig(**EVERY_FIELD)
    command = model_card.train_command(config)
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[:2] == ["python", "experiments/train.py"]
    values = absl_flags.FlagValues()
    holders = config_lib.define_flags(flag_values=values)
    values(argv[1:])
    assert config_lib.from_flags(holders) == config
    for name in ("sync_batch_norm", "deterministic_ops", "eval_batch_size", "eval_max_images", "input_scale"):
        assert f"{name}" in command, name  # the fields the old hand-written list missed


@pytest.mark.slow
def test_publish_writes_a_loadable_model_and_a_card(finished_run, tmp_path):
    config, _ = finished_run
    out = str(tmp_path / "pretrained")
    result = model_card.publish(config.workdir, "tiny", out, flip=True, scales=(1.0, 1.5), log=lambda *_: None)
    files = sorted(os.listdir(out))
    assert files == ["tiny.json", "tiny.keras", "tiny.md", "tiny_curve.png"]
    assert cv2.imread(os.path.join(out, "tiny_curve.png")).shape[2] == 3
    with open(os.path.join(out, "tiny.json")) as f:
        stored = json.load(f)
    assert stored["plain"]["miou"] == result["plain"]["miou"] and stored["tta_setting"] == "flip+scales 1,1.5"
    card = open(os.path.join(out, "tiny.md")).read()
    assert f"**{100 * result['plain']['miou']:.1f}%** (single scale)" in card
    assert f"**{100 * result['tta']['miou']:.1f}%** (flip+scales 1,1.5)" in card
    for name in data.get_info("synthetic").class_names:
        assert f"| {name} |" in card
    assert "--steps=4" in card and "--flip --scales=1,1.5" in card
    assert "trained from scratch on synthetic" in card
    model = keras.saving.load_model(os.path.join(out, "tiny.keras"), compile=False)
    image = np.zeros((1, 64, 128, 3), np.float32)
    reference = keras.saving.load_model(os.path.join(config.workdir, "final.keras"), compile=False)
    np.testing.assert_array_equal(model(image).numpy(), reference(image).numpy())


@pytest.mark.slow
def test_published_model_is_accepted_by_evaluate_py(finished_run, tmp_path):
    config, _ = finished_run
    out = str(tmp_path / "pretrained")
    result = model_card.publish(config.workdir, "tiny", out, log=lambda *_: None)
    metrics_path = str(tmp_path / "m.json")
    subprocess.run([sys.executable, os.path.join(REPO, "experiments", "evaluate.py"),
                    f"--model={out}/tiny.keras", "--dataset=synthetic", f"--data_dir={config.data_dir}",
                    "--split=val", f"--output={metrics_path}"], check=True, capture_output=True)
    with open(metrics_path) as f:
        assert json.load(f)["miou"] == pytest.approx(result["plain"]["miou"], abs=1e-9)


def test_publish_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a training run folder"):
        model_card.publish(str(tmp_path), "x", str(tmp_path / "out"))
    with pytest.raises(ValueError, match="checkpoint"):
        model_card.publish(str(tmp_path), "x", str(tmp_path / "out"), checkpoint="last")


def test_card_names_class_weighting_mining_averaging_and_initialisation(finished_run):
    config, _ = finished_run
    assert model_card._extras(config) == ""
    tuned = TrainConfig(**{**json.loads(config.to_json()), "class_weighting": "enet", "init_from": "runs/a/final.keras",
                           "ohem_threshold": 0.7, "ohem_min_kept": 5000, "ema_momentum": 0.99, "cutmix": 0.5,
                           "classmix": 0.25})
    extras = model_card._extras(tuned)
    assert "enet class weighting" in extras and "initialised from `runs/a/final.keras`" in extras
    assert "(true-class probability < 0.7, at least 5000 pixels per image)" in extras
    assert "moving average of momentum 0.99" in extras and "CutMix of the batches (probability 0.5)" in extras
    command = model_card.train_command(tuned)
    assert "--class_weighting=enet" in command and "--init_from=runs/a/final.keras" in command
    assert "--ohem_threshold=0.7" in command and "--ohem_min_kept=5000" in command and "--ema_momentum=0.99" in command
    assert "--cutmix=0.5" in command and "--classmix=0.25" in command
    assert "ClassMix of the batches (probability 0.25)" in extras


@pytest.mark.slow
def test_publish_at_an_input_scale_records_it_in_the_model_and_evaluates_there(finished_run, tmp_path):
    """A model published at another input scale than its run trained at: the published file carries it, the
    single-scale number is the model on images resized by that factor, and the card says it was trained at x1."""
    config, _ = finished_run
    out = str(tmp_path / "pretrained")
    result = model_card.publish(config.workdir, "up", out, input_scale=1.5, log=lambda *_: None)
    assert result["plain"]["scales"] == [1.5] and result["tta"] is None
    model = load_model(os.path.join(out, "up.keras"))
    assert model.get_config()["input_scale"] == 1.5
    info = data.get_info("synthetic")
    batches = data.make_dataset("synthetic", config.data_dir, "val", training=False, batch_size=1)
    direct = evaluation.evaluate(model, batches, info)  # the model's own scale, from its config
    assert direct["scales"] == [1.5]
    np.testing.assert_array_equal(result["plain"]["confusion_matrix"], direct["confusion_matrix"])
    batches = data.make_dataset("synthetic", config.data_dir, "val", training=False, batch_size=1)
    at_one = evaluation.evaluate(model, batches, info, scales=(1.0,))
    assert at_one["confusion_matrix"] != direct["confusion_matrix"]  # the scale really changed the evaluation
    card = open(os.path.join(out, "up.md")).read()
    assert f"**{100 * result['plain']['miou']:.1f}%** (single scale, input resized x1.5)" in card
    assert "input_scale` in its config" in card
    assert "its training ran at x1: serving at x1.5 was chosen after training" in card  # config.input_scale is 1
    with pytest.raises(ValueError, match="input_scale"):
        model_card.publish(config.workdir, "up", out, input_scale=0)
    plain = model_card.publish(config.workdir, "plain", out, log=lambda *_: None)  # default: the run's own scale
    assert plain["plain"]["scales"] == [1.0] and load_model(os.path.join(out, "plain.keras")).input_scale == 1.0


def test_card_of_a_model_served_at_the_scale_it_trained_at(finished_run, tmp_path):
    """A run whose record says it trained at x1.5, published at x1.5: the card says that is the scale it was trained
    and evaluated at (the other wording, "chosen after training", would be false)."""
    import shutil

    config, _ = finished_run
    run = str(tmp_path / "run_x1.5")
    shutil.copytree(config.workdir, run)
    with open(os.path.join(run, "config.json")) as f:
        fields = json.load(f)
    assert fields["input_scale"] == 1.0
    with open(os.path.join(run, "config.json"), "w") as f:
        json.dump({**fields, "input_scale": 1.5, "workdir": run}, f)
    out = str(tmp_path / "pretrained")
    model_card.publish(run, "same", out, input_scale=1.5, log=lambda *_: None)
    card = open(os.path.join(out, "same.md")).read()
    assert "it runs on images resized x1.5, the scale it was trained and evaluated at" in card
    assert "chosen after training" not in card


@pytest.mark.slow
def test_evaluate_py_runs_a_model_at_its_own_input_scale(finished_run, tmp_path):
    """Without --scales, evaluate.py runs a model at the input scale its file records (and says so); an explicit
    --scales wins."""
    config, _ = finished_run
    out = str(tmp_path / "pretrained")
    result = model_card.publish(config.workdir, "up", out, input_scale=1.5, log=lambda *_: None)
    model_path = os.path.join(out, "up.keras")

    def evaluate_py(*extra):
        metrics_path = str(tmp_path / "m.json")
        run = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "evaluate.py"), f"--model={model_path}",
                              "--dataset=synthetic", f"--data_dir={config.data_dir}", "--split=val",
                              f"--output={metrics_path}", *extra], check=True, capture_output=True, text=True)
        with open(metrics_path) as f:
            return run.stdout, json.load(f)

    stdout, stored = evaluate_py()
    assert "at its input scale x1.5" in stdout
    assert stored["scales"] == [1.5] and stored["confusion_matrix"] == result["plain"]["confusion_matrix"]
    stdout, stored = evaluate_py("--scales=1")
    assert "input scale" not in stdout and stored["scales"] == [1.0]


def test_card_of_a_run_resumed_with_changes_shows_each_change_and_says_the_command_alone_does_not_reproduce_it(
        finished_run, tmp_path):
    """A run resumed with --allow_changes: its card lists each recorded change (setting, from, to, step), gives the
    command of the resumption, and says the start command alone does not reproduce the weights."""
    import dataclasses
    import shutil

    from contextnet_tf.training.run_dir import RunDir

    config, _ = finished_run
    run_dir = str(tmp_path / "run")
    shutil.copytree(config.workdir, run_dir)
    # The record train() appends when resumed after step 4 with --steps=6 --lr=0.01 --allow_changes.
    resumed = dataclasses.replace(config, workdir=run_dir, steps=6, lr=0.01, allow_changes=True)
    run = RunDir(run_dir)
    changes = run.check_resume(resumed, 4)
    assert changes == {"steps": (4, 6), "lr": (0.045, 0.01)}
    run.record(resumed, 4, changes)
    assert model_card.changes_section(config, []) == ""

    out = str(tmp_path / "pretrained")
    model_card.publish(run_dir, "tiny", out, log=lambda *_: None)
    card = open(os.path.join(out, "tiny.md")).read()
    assert "**resumed with changed settings**" in card and "this command alone does not reproduce" in card
    assert "| 4 | `steps` | 4 | 6 |" in card and "| 4 | `lr` | 0.045 | 0.01 |" in card
    assert "(step 6)" in card and "| training | 4 steps" in card
    assert "(as started; lr, steps changed during the run" in card
    start, resume = [block.split("```")[0] for block in card.split("```bash\n")[1:3]]
    assert "--steps=4" in start and "--allow_changes" not in start and "--lr" not in start
    assert resume.startswith("# resumed after step 4\npython experiments/train.py")
    assert "--steps=6" in resume and "--lr=0.01" in resume and "--allow_changes" in resume


@pytest.mark.slow
def test_publish_with_a_selection_run_reports_the_held_out_number_and_publishes_the_evaluated_weights(
        finished_run, trainval_run, tmp_path):
    """A model trained on every frame (train+val here) gets its card's accuracy from its selection run (the same
    recipe without the held-out part): that run's weights, evaluated on its own validation split, published beside
    the model so the number can be re-checked; a final run with another recipe is refused, naming the difference."""
    import dataclasses

    selection, _ = finished_run
    final = trainval_run
    out = str(tmp_path / "pretrained")
    result = model_card.publish(final.workdir, "tiny", out, flip=True, selection_run=selection.workdir,
                                log=lambda *_: None)
    assert sorted(os.listdir(out)) == ["tiny.json", "tiny.keras", "tiny.md", "tiny_curve.png",
                                       "tiny_selection.keras"]
    assert result["split"] == "val"
    info = data.get_info("synthetic")
    batches = data.make_dataset("synthetic", selection.data_dir, "val", training=False, batch_size=1)
    held_out = evaluation.evaluate(load_model(os.path.join(out, "tiny_selection.keras")), batches, info)
    assert held_out["confusion_matrix"] == result["plain"]["confusion_matrix"]
    image = np.random.default_rng(0).uniform(0, 255, (1, 64, 128, 3)).astype(np.float32)
    published = load_model(os.path.join(out, "tiny.keras"))
    trained = load_model(os.path.join(final.workdir, "final.keras"))
    np.testing.assert_array_equal(published(image).numpy(), trained(image).numpy())  # the final run's weights
    assert not np.array_equal(published(image).numpy(),
                              load_model(os.path.join(out, "tiny_selection.keras"))(image).numpy())
    with open(os.path.join(out, "tiny.json")) as f:
        stored = json.load(f)
    assert stored["split"] == "val" and stored["evaluated_model"] == "tiny_selection.keras"
    card = open(os.path.join(out, "tiny.md")).read()
    assert f"| held-out mIoU (selection run, `val`) | **{100 * result['plain']['miou']:.1f}%** (single scale)" in card
    assert "`train+val` (10 images)" in card and "`train` (8 images)" in card
    assert "measures memory, not accuracy" in card
    assert "--train_split=train+val" in card  # the published weights' command ...
    assert "## Selection run" in card and f"--model={out}/tiny_selection.keras" in card  # ... and the number's
    other = dataclasses.replace(final, workdir=str(tmp_path / "other"), lr=0.01)
    os.makedirs(other.workdir)
    with open(os.path.join(other.workdir, "config.json"), "w") as f:
        f.write(other.to_json())
    with pytest.raises(ValueError, match=r"lr: 0.045 \(selection\) vs 0.01"):
        model_card.publish(other.workdir, "x", str(tmp_path / "x"), selection_run=selection.workdir)
    with pytest.raises(ValueError, match="holds nothing out"):
        model_card.publish(selection.workdir, "x", str(tmp_path / "x"), selection_run=selection.workdir)


def _write_config(config):
    os.makedirs(config.workdir, exist_ok=True)
    with open(os.path.join(config.workdir, "config.json"), "w") as f:
        f.write(config.to_json())


@pytest.mark.slow
def test_a_staged_run_is_checked_stage_by_stage_against_its_staged_selection_run(finished_run, trainval_run,
                                                                                 tmp_path):
    """A run that continues another (--init_from its final.keras) is published with every stage's command and the
    whole schedule's wall time; its selection run must be staged the same way, stage by stage the same recipe, and
    no stage of it may have trained on the frames it is measured on."""
    import dataclasses

    selection, _ = finished_run
    sel2 = dataclasses.replace(selection, workdir=str(tmp_path / "sel2"), seed=1,
                               init_from=os.path.join(selection.workdir, "final.keras"))
    final1 = trainval_run
    final2 = dataclasses.replace(final1, workdir=str(tmp_path / "final2"), seed=1,
                                 init_from=os.path.join(final1.workdir, "final.keras"))
    for config in (sel2, final2):
        train(config)
    assert [stage.run_dir for stage in model_card.stages(final2.workdir)] == [final1.workdir, final2.workdir]
    assert model_card.stage_differences(sel2.workdir, final2.workdir) == {}
    out = str(tmp_path / "pretrained")
    result = model_card.publish(final2.workdir, "tiny", out, selection_run=sel2.workdir, log=lambda *_: None)
    batches = data.make_dataset("synthetic", selection.data_dir, "val", training=False, batch_size=1)
    held_out = evaluation.evaluate(load_model(os.path.join(sel2.workdir, "final.keras")), batches,
                                   data.get_info("synthetic"))
    assert held_out["confusion_matrix"] == result["plain"]["confusion_matrix"]  # the last selection stage's weights
    card = open(os.path.join(out, "tiny.md")).read()
    assert "in 2 stages" in card and "8 steps in all" in card and "step 4 of stage 2, the last" in card
    assert card.count("# stage 1 of 2") == 2 and card.count("# stage 2 of 2") == 2  # model and selection run
    assert f"--workdir={final1.workdir}" in card and f"--init_from={final1.workdir}/final.keras" in card
    assert f"--workdir={selection.workdir}" in card and f"--init_from={selection.workdir}/final.keras" in card

    other1 = dataclasses.replace(final1, workdir=str(tmp_path / "other1"), lr=0.01)
    other2 = dataclasses.replace(final2, workdir=str(tmp_path / "other2"),
                                 init_from=os.path.join(other1.workdir, "final.keras"))
    unstaged = dataclasses.replace(final2, workdir=str(tmp_path / "unstaged"), init_from=None)
    leaky1 = dataclasses.replace(selection, workdir=str(tmp_path / "leaky1"), train_split="train+val")
    leaky2 = dataclasses.replace(sel2, workdir=str(tmp_path / "leaky2"),
                                 init_from=os.path.join(leaky1.workdir, "final.keras"))
    for config in (other1, other2, unstaged, leaky1, leaky2):
        _write_config(config)
    with pytest.raises(ValueError, match=r"stage 1: lr: 0.045 \(selection\) vs 0.01"):
        model_card.publish(other2.workdir, "x", str(tmp_path / "x"), selection_run=sel2.workdir)
    with pytest.raises(ValueError, match=r"stages: 2 \(selection\) vs 1"):
        model_card.publish(unstaged.workdir, "x", str(tmp_path / "x"), selection_run=sel2.workdir)
    with pytest.raises(ValueError, match=r"leaky1, which trained on 'train\+val'.*may have seen 'val'"):
        model_card.publish(final2.workdir, "x", str(tmp_path / "x"), selection_run=leaky2.workdir)


@pytest.mark.slow
def test_speed_section_comes_from_a_benchmark_report_of_the_same_network(finished_run, tmp_path):
    """--speed_json puts the benchmark's own rows and command in the card; a report that timed another network (here
    the same weights at another input scale) is refused before anything is written."""
    from contextnet_tf.deploy import speed

    config, _ = finished_run
    timed = os.path.join(config.workdir, "final.keras")
    report = speed.run_benchmark(speed.models_at_resolutions(timed, [(64, 128)], num_classes=11),
                                 paths=["keras_folded"], modes=["end_to_end"], frames=3, burn_in=1)
    report["model"] = timed
    report["command"] = f"python experiments/benchmark.py --model={timed} --resolutions=64x128"
    path = str(tmp_path / "bench.json")
    with open(path, "w") as f:
        json.dump(report, f)
    out = str(tmp_path / "pretrained")
    model_card.publish(config.workdir, "tiny", out, speed_report=path, log=lambda *_: None)
    card = open(os.path.join(out, "tiny.md")).read()
    fps = report["results"][0]["fps"]
    assert f"| 64x128 | keras_folded | end_to_end | {fps:.1f} |" in card
    assert report["command"] in card and "## Speed" in card
    share = report["results"][0]["boundary_share"]
    assert 0 <= share <= 1
    assert (f"on a frame of uniform noise (seed 0), not a real scene (the last mile interpolated {100 * share:.1f}% "
            "of the 1/8 cells there: class boundaries):") in card  # the frame it was timed on, and its boundaries
    report["protocol"]["image"] = "frames/road.png"
    del report["results"][0]["boundary_share"]  # a report written before the benchmark recorded it
    assert "on the frame `frames/road.png`:" in model_card.speed_section(report, load_model(timed))
    other = str(tmp_path / "scaled.keras")
    load_model(timed).rebuild(input_scale=2.0).save(other)
    with pytest.raises(ValueError, match="architecture or input scale differs"):
        model_card.publish(config.workdir, "x", str(tmp_path / "x"), speed_report={**report, "model": other})
    assert not os.path.exists(tmp_path / "x")
