"""contextnet_tf.training.averaging: a run's checkpoints averaged weight by weight into one inference model."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from contextnet_tf import data, load_model
from contextnet_tf.models import build_model, dataset_recipe
from contextnet_tf.training import TrainConfig, averaging, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("avg")
    city = str(root / "city")
    data.generate_synthetic_city(city, num_train=4, num_val=1, image_size=(64, 128), seed=0)
    config = TrainConfig.from_preset("fast_scnn_paper", model="fast_scnn", dataset="synthetic", data_dir=city,
                                     workdir=str(root / "run"), steps=4, batch_size=2, crop=(64, 64), eval_every=-1,
                                     log_every=1, checkpoint_every=2, progress=False)
    train(config)
    return config


def _checkpoint_weights(config, step):
    """{name: value} of the inference layers' weights in checkpoint `step`, restored independently."""
    model = build_model(config.model, (*config.crop, 3), aux=True, input_scale=config.input_scale,
                        **dataset_recipe(data.get_info(config.dataset)))
    tf.train.Checkpoint(model=model).restore(os.path.join(config.workdir, "checkpoints", f"ckpt-{step}")) \
        .expect_partial()
    return {f"{layer.name}/{i}": w.numpy() for layer in model.layers for i, w in enumerate(layer.weights)}


def _published_weights(path):
    model = load_model(path)
    return {f"{layer.name}/{i}": w.numpy() for layer in model.layers for i, w in enumerate(layer.weights)}


@pytest.mark.slow
def test_averaged_model_holds_the_mean_of_the_checkpoints_weights(run, tmp_path):
    out = str(tmp_path / "avg.keras")
    assert averaging.average_checkpoints(run.workdir, out, last=2, log=lambda *_: None) == [2, 4]
    averaged = _published_weights(out)
    first, second = _checkpoint_weights(run, 2), _checkpoint_weights(run, 4)
    assert averaged and set(averaged) <= set(first)
    moved = 0
    for name, value in averaged.items():
        np.testing.assert_allclose(value, (first[name] + second[name]) / 2, rtol=1e-6, atol=1e-7, err_msg=name)
        moved += not np.allclose(first[name], second[name])
    assert moved > len(averaged) // 2  # the two checkpoints differ, so the mean is neither of them
    assert os.path.exists(str(tmp_path / "avg.averaging.json"))


@pytest.mark.slow
def test_averaging_the_newest_checkpoint_alone_reproduces_the_final_model(run, tmp_path):
    out = str(tmp_path / "last.keras")
    averaging.average_checkpoints(run.workdir, out, steps=[4], log=lambda *_: None)
    image = np.random.default_rng(0).uniform(0, 255, (1, 64, 128, 3)).astype(np.float32)
    np.testing.assert_allclose(load_model(out)(image).numpy(),
                               load_model(os.path.join(run.workdir, "final.keras"))(image).numpy(), atol=1e-5)


def test_bad_requests_name_the_run_and_the_steps_it_has(run, tmp_path):
    with pytest.raises(ValueError, match=r"no checkpoint of step\(s\) 3; it has 2, 4"):
        averaging.average_checkpoints(run.workdir, str(tmp_path / "x.keras"), steps=[3, 4])
    with pytest.raises(ValueError, match="5 checkpoints asked for, it keeps 2"):
        averaging.average_checkpoints(run.workdir, str(tmp_path / "x.keras"), last=5)
    with pytest.raises(FileNotFoundError, match="not a training run folder"):
        averaging.average_checkpoints(str(tmp_path), str(tmp_path / "x.keras"))
    result = subprocess.run([sys.executable, "experiments/average_checkpoints.py", f"--run={run.workdir}",
                             f"--output={tmp_path / 'x.keras'}", "--steps=7"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode != 0 and "no checkpoint of step(s) 7" in result.stderr
