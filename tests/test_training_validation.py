"""Tests of contextnet_tf.training.validation: the validator reuses its predictors across validations (no new trace
per validation) and still scores the weights of the moment, exactly as a fresh evaluation of them does."""

import numpy as np
import pytest

from contextnet_tf import data
from contextnet_tf.evaluation import metrics as evaluation
from contextnet_tf.evaluation.prediction import Predictor
from contextnet_tf.training import TrainConfig
from contextnet_tf.training.loop import config_model_fn
from contextnet_tf.training.validation import Validator, val_batches


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = tmp_path_factory.mktemp("city")
    data.generate_synthetic_city(str(root), num_train=2, num_val=3, image_size=(64, 96), seed=5)
    return str(root)


def _perturb(model, seed):
    """New weights for every weighted layer (moving variances kept positive), as a few training steps give."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([np.abs(w) + 0.5 if "variance" in v.path else w + rng.normal(0, 0.3, w.shape)
                               for w, v in zip(layer.get_weights(), layer.weights)])


def test_validator_scores_the_current_weights_without_tracing_again(city):
    config = TrainConfig(model="cn14-detail", dataset="synthetic", data_dir=city, workdir="unused", eval_batch_size=2,
                         num_prediction_images=2)
    info = data.get_info("synthetic")
    model_fn = config_model_fn(config, info)
    train_model = model_fn((64, 96, 3), False)
    validator = Validator(config, info, model_fn)

    scores = []
    for seed in (1, 2):
        _perturb(train_model, seed)
        metrics = validator.evaluate(train_model)
        image = validator.prediction_image()
        # A fresh model with the same weights, evaluated and drawn with new predictors: the same numbers.
        fresh = model_fn((None, None, 3), False)
        fresh.set_weights(validator.model.get_weights())
        assert metrics["confusion_matrix"] == evaluation.evaluate(fresh, val_batches(config), info)[
            "confusion_matrix"]
        images, _ = validator.samples
        drawn = data.colorize(Predictor(fresh).labels(images), info)
        width = images.shape[2]
        np.testing.assert_array_equal(image.reshape(2, 64, 3 * width, 3)[:, :, 2 * width:], drawn)
        scores.append(metrics["confusion_matrix"])
        traces = (validator.predictor._fused_labels_fn().experimental_get_tracing_count(),
                  validator.sample_predictor._fused_labels_fn().experimental_get_tracing_count())
        if seed == 1:
            first_traces = traces
    assert scores[0] != scores[1]  # the second validation saw the new weights
    assert traces == first_traces  # and traced nothing again (the first: batches of 2 and 1, then the samples)


def test_evaluate_takes_a_predictor_and_refuses_settings_beside_it(city):
    info = data.get_info("synthetic")
    model = config_model_fn(TrainConfig(model="cn14-detail", dataset="synthetic"), info)((None, None, 3), False)
    batches = data.make_dataset("synthetic", city, "val", training=False, batch_size=3)
    flipped = Predictor(model, flip=True)
    assert evaluation.evaluate(flipped, batches, info)["flip"] is True
    assert (evaluation.evaluate(flipped, batches, info)["confusion_matrix"]
            == evaluation.evaluate(model, batches, info, flip=True)["confusion_matrix"])
    with pytest.raises(ValueError, match="give flip and scales to the Predictor"):
        evaluation.evaluate(flipped, batches, info, scales=(1.0, 1.5))
