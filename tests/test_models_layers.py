import numpy as np
import pytest
from keras import ops

from contextnet_tf.models.layers import AdaptiveAveragePooling2D, Resize, adaptive_pool_matrix


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


def test_resize_to_static_size_and_identity():
    x = np.random.default_rng(1).normal(size=(1, 5, 7, 2)).astype(np.float32)
    assert Resize(20, 28)(x).shape == (1, 20, 28, 2)
    np.testing.assert_array_equal(ops.convert_to_numpy(Resize(5, 7)(x)), x)


def test_resize_of_constant_is_constant():
    x = np.full((1, 3, 3, 1), 4.0, np.float32)
    np.testing.assert_allclose(ops.convert_to_numpy(Resize(10, 13)(x)), 4.0, atol=1e-6)


def test_layers_round_trip_config():
    layer = Resize(10, 12, interpolation="nearest", name="r")
    clone = Resize.from_config(layer.get_config())
    assert (clone.height, clone.width, clone.interpolation) == (10, 12, "nearest")
    pool = AdaptiveAveragePooling2D.from_config(AdaptiveAveragePooling2D(6, name="p").get_config())
    assert pool.bins == 6
