import numpy as np
import pytest
from keras import ops

from contextnet_tf.models.layers import (
    AdaptiveAveragePooling2D,
    PartialInstanceNormalization,
    Resize,
    adaptive_pool_matrix,
)

import numpy_references  # tests/numpy_references.py


def _reference_adaptive_pool(x, bins):
    """Loop reference: PyTorch AdaptiveAvgPool2d windows [floor(i*L/b), ceil((i+1)*L/b))."""
    n, h, w, c = x.shape
    out = np.zeros((n, bins, bins, c), np.float64)
    for i in range(bins):
        r0, r1 = (i * h) // bins, -((-(i + 1) * h) // bins)
        for j in range(bins):
            c0, c1 = (j * w) // bins, -((-(j + 1) * w) // bins)
            out[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("height,width", [(32, 64), (7, 11), (6, 6), (1, 5), (13, 47)])
@pytest.mark.parametrize("bins", [1, 2, 3, 6])
def test_adaptive_pooling_matches_loop_reference(height, width, bins):
    x = np.random.default_rng(0).normal(size=(2, height, width, 3)).astype(np.float32)
    got = ops.convert_to_numpy(AdaptiveAveragePooling2D(bins)(x))
    np.testing.assert_allclose(got, _reference_adaptive_pool(x, bins), atol=1e-5)


def test_adaptive_pool_matrix_rows_sum_to_one_and_cover_everything():
    m = adaptive_pool_matrix(32, 6)  # 32 is not a multiple of 6: windows overlap.
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-6)
    assert (m > 0).any(axis=0).all()
    assert (m > 0).sum() > 32  # overlapping windows


def test_adaptive_pool_rejects_bad_sizes():
    with pytest.raises(ValueError, match="bins"):
        adaptive_pool_matrix(4, 0)


def test_resize_to_a_reference_size_and_identity():
    x = np.random.default_rng(1).normal(size=(1, 5, 7, 2)).astype(np.float32)
    assert Resize()([x, np.zeros((1, 20, 28, 9), np.float32)]).shape == (1, 20, 28, 2)
    np.testing.assert_array_equal(ops.convert_to_numpy(Resize()([x, x])), x)
    np.testing.assert_allclose(
        ops.convert_to_numpy(Resize()([x, np.zeros((1, 20, 28, 1))])),
        ops.convert_to_numpy(ops.image.resize(x, (20, 28), interpolation="bilinear", antialias=False)),
    )


def test_resize_by_a_divisor_rounds_up():
    x = np.zeros((1, 13, 30, 3), np.float32)
    assert Resize(divisor=4)(x).shape == (1, 4, 8, 3)  # ceil(13 / 4), ceil(30 / 4)


def test_resize_of_constant_is_constant():
    x = np.full((1, 3, 3, 1), 4.0, np.float32)
    np.testing.assert_allclose(ops.convert_to_numpy(Resize()([x, np.zeros((1, 10, 13, 1))])), 4.0, atol=1e-6)


def test_runtime_sized_layers_equal_static_ones():
    """Sizes unknown when traced (a SavedModel's any-size signature) give what static sizes give."""
    import tensorflow as tf

    x = np.random.default_rng(2).normal(size=(2, 13, 47, 3)).astype(np.float32)
    ref = np.zeros((2, 29, 31, 1), np.float32)
    spec = tf.TensorSpec((None, None, None, None))
    for bins in (1, 2, 3, 6):
        pool = AdaptiveAveragePooling2D(bins)
        runtime = tf.function(lambda t, pool=pool: pool(t), input_signature=[spec])
        np.testing.assert_allclose(runtime(x).numpy(), _reference_adaptive_pool(x, bins), atol=1e-5)
    for layer, args in ((Resize(), (x, ref)), (Resize(divisor=4), (x,))):
        runtime = tf.function(lambda *t, layer=layer: layer(list(t) if len(t) > 1 else t[0]),
                              input_signature=[spec] * len(args))
        static = layer(list(args) if len(args) > 1 else args[0])
        np.testing.assert_allclose(runtime(*args).numpy(), ops.convert_to_numpy(static), atol=1e-6)


def test_layers_round_trip_config():
    layer = Resize(divisor=4, interpolation="nearest", name="r")
    clone = Resize.from_config(layer.get_config())
    assert (clone.divisor, clone.interpolation) == (4, "nearest")
    pool = AdaptiveAveragePooling2D.from_config(AdaptiveAveragePooling2D(6, name="p").get_config())
    assert pool.bins == 6


@pytest.mark.parametrize("channels,fraction,normalised", [(32, 0.5, 16), (48, 0.5, 24), (10, 0.25, 2), (3, 0.9, 2)])
def test_partial_instance_norm_normalises_the_first_channels_and_passes_the_rest(channels, fraction, normalised,
                                                                                  tmp_path):
    import keras

    layer = PartialInstanceNormalization(fraction, epsilon=1e-3)
    rng = np.random.default_rng(0)
    x = numpy_references.images_in_different_light(rng, (2, 6, 9, channels))
    layer.build(x.shape)
    assert layer.normalised_channels(channels) == normalised
    gamma, beta = rng.uniform(0.5, 2, normalised), rng.normal(0, 1, normalised)
    layer.set_weights([gamma, beta])
    got = ops.convert_to_numpy(layer(x))
    expected = numpy_references.instance_norm(x[..., :normalised], gamma, beta, 1e-3)
    np.testing.assert_allclose(got[..., :normalised], expected, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(got[..., normalised:], x[..., normalised:])  # untouched, bit for bit
    # Per image: the first image alone gives the same output, in training mode too.
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x[:1], training=True)), got[:1], rtol=0, atol=1e-5)

    # Its learned scale and offset survive saving inside a model.
    image = keras.Input((6, 9, channels))
    model = keras.Model(image, PartialInstanceNormalization(fraction, name="pin")(image))
    model.get_layer("pin").set_weights([gamma, beta])
    path = str(tmp_path / "pin.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(ops.convert_to_numpy(reloaded(x)), ops.convert_to_numpy(model(x)), rtol=0, atol=0)


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.5])
def test_partial_instance_norm_refuses_a_fraction_outside_zero_one(fraction):
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\)"):
        PartialInstanceNormalization(fraction)
