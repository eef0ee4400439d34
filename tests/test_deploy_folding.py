"""Batch-norm folding: equal logits for every variant, no batch norm left, exact parameter bookkeeping."""

import keras
import numpy as np
import pytest

import contextnet_tf
from contextnet_tf import build_model, fold_batch_norm
from contextnet_tf.models import logits_only

SHAPE = (64, 128, 3)


def randomise_batch_norms(model, seed=0):
    """Sets every batch norm's gamma, beta and moving statistics far from identity."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights(
                [rng.uniform(0.5, 2.0, c), rng.normal(0.0, 1.0, c), rng.normal(0.0, 2.0, c), rng.uniform(0.2, 5.0, c)]
            )
    return model


def batch_norm_channels(model):
    return [layer.gamma.shape[0] for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


@pytest.mark.parametrize("name", contextnet_tf.MODEL_NAMES + contextnet_tf.models.OFF_PAPER_NAMES)
def test_folded_logits_equal_original_for_every_variant(name):
    model = randomise_batch_norms(build_model(name, SHAPE, num_classes=19, aux=True))
    folded = fold_batch_norm(model)
    image = np.random.default_rng(1).uniform(0, 255, (2, *SHAPE)).astype(np.float32)

    expected = model(image, training=False)["logits"].numpy()
    actual = folded(image).numpy()
    assert np.abs(expected).max() > 1.0  # The statistics are far from identity: the logits are not all near zero.
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4)

    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    assert not any(layer.name.startswith("aux_") for layer in folded.layers)
    # Each batch norm's four vectors (gamma, beta, mean, variance) become one bias: 3 x channels fewer parameters.
    inference = logits_only(model)
    assert folded.count_params() == inference.count_params() - 3 * sum(batch_norm_channels(inference))
    assert sorted(l.name for l in folded.layers) == sorted(l.name for l in inference.layers if not l.name.endswith("_bn"))


def test_fold_leaves_the_original_model_untouched():
    model = randomise_batch_norms(build_model("cn14-160", SHAPE, num_classes=5))
    before = [w.copy() for w in model.get_weights()]
    fold_batch_norm(model)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_fold_separable_and_depthwise_multiplier_with_bias():
    """Kernels folded along their own axes: a separable conv, and a depthwise conv with multiplier 2 and a bias."""
    image = keras.Input((16, 16, 3))
    x = keras.layers.SeparableConv2D(8, 3, padding="same", name="sep")(image)
    x = keras.layers.BatchNormalization(name="sep_bn")(x)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, use_bias=True, name="dw")(x)
    x = keras.layers.BatchNormalization(name="dw_bn")(x)
    model = randomise_batch_norms(keras.Model(image, x))
    inputs = np.random.default_rng(2).normal(size=(2, 16, 16, 3)).astype(np.float32)
    folded = fold_batch_norm(model)
    np.testing.assert_allclose(folded(inputs).numpy(), model(inputs, training=False).numpy(), atol=1e-4)
    assert folded.get_layer("dw").kernel.shape == (3, 3, 8, 2)


def test_unfoldable_batch_norm_is_a_clear_error():
    image = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(image)
    x = keras.layers.Add(name="add")([x, x])
    x = keras.layers.BatchNormalization(name="add_bn")(x)
    with pytest.raises(ValueError, match="cannot fold batch norm 'add_bn'"):
        fold_batch_norm(keras.Model(image, x))


def test_fold_rejects_non_functional_models():
    with pytest.raises(ValueError, match="functional"):
        fold_batch_norm("fast_scnn")
