"""training.batch_norm: recalibrated moving statistics are exactly the average of the batch statistics each batch
norm sees in a training-mode pass; nothing else in the model changes."""

import keras
import numpy as np
import pytest

from contextnet_tf.training import batch_norm


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
