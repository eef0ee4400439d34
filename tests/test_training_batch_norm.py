"""training.batch_norm: recalibrated moving statistics are exactly the average of the batch statistics each batch
norm sees in a training-mode pass; nothing else in the model changes. The fused training-mode batch norm gives Keras'
outputs, gradients and moving statistics to float32 rounding, and a whole training step with it the same weights."""

import contextlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from contextnet_tf.training import batch_norm, optim
from contextnet_tf.training.loop import make_train_step


def _model():
    keras.utils.set_random_seed(3)
    image = keras.Input((8, 12, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(image)
    x = keras.layers.BatchNormalization(momentum=0.99, name="bn1")(x)
    x = keras.layers.ReLU()(x)
    inner_in = keras.Input((8, 12, 4))
    y = keras.layers.Conv2D(5, 1, name="conv2")(inner_in)
    y = keras.layers.BatchNormalization(momentum=0.99, name="bn2")(y)
    inner = keras.Model(inner_in, y, name="inner")  # a nested model: its batch norm is found too
    return keras.Model(image, inner(x), name="outer")


def test_moving_statistics_become_the_average_of_the_batch_statistics():
    model = _model()
    rng = np.random.default_rng(0)
    batches = [rng.normal(2.0, 3.0, (2, 8, 12, 3)).astype(np.float32) for _ in range(3)]
    weights = [w.copy() for w in model.get_weights()]
    # The batch norms' inputs in a training-mode pass (bn1 normalising with batch statistics feeds conv2).
    conv1, bn1, inner = model.get_layer("conv1"), model.get_layer("bn1"), model.get_layer("inner")
    expected = {"bn1": [], "bn2": []}
    for batch in batches:
        a = conv1(batch)
        b = inner.get_layer("conv2")(keras.layers.ReLU()(bn1(a, training=True)))
        for name, t in (("bn1", a), ("bn2", b)):
            t = np.asarray(t, np.float64)
            expected[name].append((t.mean(axis=(0, 1, 2)), t.var(axis=(0, 1, 2))))
    model.set_weights(weights)  # undo the moving-average updates of the pass above
    assert batch_norm.recalibrate(model, iter([(b, None) for b in batches] + [(batches[0], None)]), 3) == 2
    stats = batch_norm.statistics(model)
    for name in ("bn1", "bn2"):
        mean = np.mean([m for m, _ in expected[name]], axis=0)
        var = np.mean([v for _, v in expected[name]], axis=0)
        np.testing.assert_allclose(stats[name][0], mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(stats[name][1], var, rtol=1e-5, atol=1e-5)
        assert not np.allclose(stats[name][1], 1.0)  # moved away from the initial variance
    # Only the moving statistics changed; the momentum is back to 0.99.
    after = model.get_weights()
    changed = [i for i, (w0, w1) in enumerate(zip(weights, after)) if not np.array_equal(w0, w1)]
    names = [v.path for v in model.weights]
    assert sorted(names[i].split("/")[-1] for i in changed) == ["moving_mean", "moving_mean", "moving_variance",
                                                                 "moving_variance"]
    assert [layer.momentum for layer in batch_norm.batch_norm_layers(model)] == [0.99, 0.99]


def test_clear_errors():
    model = _model()
    with pytest.raises(ValueError, match="ran out after 1 of 2"):
        batch_norm.recalibrate(model, [np.zeros((1, 8, 12, 3), np.float32)], 2)
    assert [layer.momentum for layer in batch_norm.batch_norm_layers(model)] == [0.99, 0.99]
    with pytest.raises(ValueError, match="at least 1"):
        batch_norm.recalibrate(model, [], 0)
    plain = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 1)], name="plain")
    with pytest.raises(ValueError, match="plain has no batch-norm layer"):
        batch_norm.recalibrate(plain, [np.zeros((1, 4, 4, 3), np.float32)], 1)


def _outputs_gradients_statistics(model, images, fused):
    """One training-mode pass from fixed weights: output, gradients of a weighted sum, moving statistics."""
    weights = [w.copy() for w in model.get_weights()]
    target = tf.constant(np.random.default_rng(1).normal(size=(2, 8, 12, 5)).astype(np.float32))

    @tf.function
    def run():
        with tf.GradientTape() as tape, (batch_norm.fused_training(model) if fused else contextlib.nullcontext()):
            out = model(images, training=True)
            loss = tf.reduce_sum(out * target)
        return out, tape.gradient(loss, model.trainable_variables)

    out, grads = run()
    stats = batch_norm.statistics(model)
    model.set_weights(weights)
    return np.asarray(out), [np.asarray(g) for g in grads], stats


def test_fused_training_gives_keras_outputs_gradients_and_moving_statistics():
    model = _model()
    images = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (2, 8, 12, 3)).astype(np.float32))
    keras_out, keras_grads, keras_stats = _outputs_gradients_statistics(model, images, fused=False)
    fused_out, fused_grads, fused_stats = _outputs_gradients_statistics(model, images, fused=True)
    np.testing.assert_allclose(fused_out, keras_out, rtol=1e-4, atol=1e-4)
    assert len(fused_grads) == len(keras_grads) == 8  # two convolutions and two batch norms: kernel, bias / gamma, beta
    # The convolutions' biases before a batch norm have zero gradient in exact arithmetic (both paths give rounding
    # noise there), so the absolute tolerance is relative to the largest gradient of the model.
    largest = max(np.abs(k).max() for k in keras_grads)
    for f, k in zip(fused_grads, keras_grads):
        np.testing.assert_allclose(f, k, rtol=1e-4, atol=1e-5 * largest)
    for name in ("bn1", "bn2"):
        for f, k in zip(fused_stats[name], keras_stats[name]):
            np.testing.assert_allclose(f, k, rtol=1e-5, atol=1e-6)
        assert not np.allclose(fused_stats[name][1], 1.0)  # the moving variance was updated
    # The patch is gone after the block: the layers call their class's own method again.
    assert all("call" not in layer.__dict__ for layer in batch_norm.batch_norm_layers(model))


def test_fused_training_leaves_inference_and_unfusable_layers_to_keras():
    image = keras.Input((6,))
    dense = keras.layers.BatchNormalization(name="bn_dense")(image)  # 2-D: not fusable
    model = keras.Model(image, dense)
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32))
    with batch_norm.fused_training(model) as layers:
        assert [layer.name for layer in layers] == ["bn_dense"]
        assert not batch_norm.fusable(layers[0], x)
        np.testing.assert_allclose(model(x, training=True), keras.layers.BatchNormalization.call(
            layers[0], x, training=True), rtol=1e-6)
    conv_model = _model()
    images = np.random.default_rng(2).normal(size=(2, 8, 12, 3)).astype(np.float32)
    before = conv_model(images, training=False)
    with batch_norm.fused_training(conv_model):
        np.testing.assert_array_equal(conv_model(images, training=False), before)  # inference: Keras' own path


def test_a_training_step_with_the_fused_batch_norm_ends_with_keras_weights():
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (2, 8, 12, 3)).astype(np.float32))
    labels = tf.constant(np.random.default_rng(1).integers(0, 5, (2, 8, 12)).astype(np.int32))
    ends = []
    for fused in (False, True):
        model = _model()  # same seed: same initial weights
        optimizer = optim.make_optimizer("sgd", 0.01, 0.9)
        optimizer.build(model.trainable_variables)
        step = make_train_step(tf.distribute.get_strategy(), model, optimizer, ignore_label=255, aux_weight=0.0,
                               weight_decay=1e-4, fused_batch_norm=fused)
        for _ in range(3):
            step((images, labels))
        ends.append([np.asarray(w) for w in model.weights])
    for k, f in zip(*ends):
        np.testing.assert_allclose(f, k, rtol=1e-4, atol=1e-5)
    assert not np.allclose(ends[0][0], _model().get_weights()[0])  # the steps did change the weights
