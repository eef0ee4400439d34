import keras
import numpy as np
import pytest

from contextnet_tf import build_model
from contextnet_tf.models import profiling


def test_count_macs_matches_hand_count_on_small_model():
    x = keras.Input((10, 12, 3))
    y = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="a")(x)  # 5x6 out
    y = keras.layers.DepthwiseConv2D(3, padding="same", name="b")(y)
    y = keras.layers.Conv2D(4, 1, name="c")(y)
    model = keras.Model(x, y)
    expected = 5 * 6 * 9 * 3 * 8 + 5 * 6 * 9 * 8 + 5 * 6 * 8 * 4
    assert profiling.count_macs(model) == expected
    assert profiling.count_macs(model, prefix="b") == 5 * 6 * 9 * 8


def test_macs_scale_with_resolution_and_pinned_at_full_resolution():
    full = profiling.count_macs(build_model("fast_scnn", (1024, 2048, 3)))
    half = profiling.count_macs(build_model("fast_scnn", (512, 1024, 3)))
    assert full == 6_709_649_408
    assert full / half == pytest.approx(4.0, rel=0.01)


def test_count_trainable_params_excludes_batch_norm_statistics():
    model = build_model("cn14-160", (64, 128, 3))
    moving = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert profiling.count_trainable_params(model) + moving == model.count_params()
