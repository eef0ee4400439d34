import keras
import numpy as np
import pytest

from contextnet_tf.models import blocks


def _model(fn, shape=(16, 16, 8)):
    x = keras.Input(shape)
    return keras.Model(x, fn(x))


def _layer_types(model):
    return {layer.name: type(layer).__name__ for layer in model.layers}


def test_conv_bn_act_names_and_no_bias():
    model = _model(lambda x: blocks.conv_bn_act(x, 12, 3, 2, "relu6", name="c"))
    types = _layer_types(model)
    assert types["c"] == "Conv2D" and types["c_bn"] == "BatchNormalization" and types["c_act"] == "Activation"
    assert model.get_layer("c").use_bias is False
    assert model.output.shape == (None, 8, 8, 12)


def test_separable_conv_has_no_activation_between_depthwise_and_pointwise():
    model = _model(lambda x: blocks.separable_conv(x, 16, 2, "relu", name="ds"))
    order = [layer.name for layer in model.layers[1:]]
    assert order == ["ds_dw", "ds_dw_bn", "ds_pw", "ds_pw_bn", "ds_act"]
    # Params: depthwise 3*3*8, pointwise 8*16, two BNs (gamma, beta, mean, var).
    assert model.count_params() == 72 + 128 + 4 * 8 + 4 * 16
    assert model.output.shape == (None, 8, 8, 16)


@pytest.mark.parametrize(
    "filters,stride,residual", [(8, 1, True), (8, 2, False), (12, 1, False)]
)
def test_bottleneck_residual_only_when_shapes_match(filters, stride, residual):
    model = _model(lambda x: blocks.bottleneck(x, filters, 6, stride, "relu", name="b"))
    names = {layer.name for layer in model.layers}
    assert ("b_add" in names) is residual
    # Expand 8 -> 48, depthwise 3x3, project 48 -> filters; the projection is linear (no activation after it).
    assert model.get_layer("b_expand").filters == 48
    assert "b_project_act" not in names
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 8 * 48 + 2 * 48 + 9 * 48 + 2 * 48 + 48 * filters + 2 * filters


def test_bottleneck_with_expansion_one_keeps_expand_conv():
    model = _model(lambda x: blocks.bottleneck(x, 8, 1, 1, "relu6", name="b"))
    assert model.get_layer("b_expand").filters == 8


def test_pyramid_pooling_concat_shapes_and_params_on_size_not_multiple_of_six():
    model = _model(lambda x: blocks.pyramid_pooling(x, 16, mode="concat", name="ppm"), shape=(32, 64, 16))
    assert model.output.shape == (None, 32, 64, 16)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    # Four 1x1 convs 16 -> 4 (+BN), projection 32 -> 16 (+BN).
    assert trainable == 4 * (16 * 4 + 2 * 4) + 32 * 16 + 2 * 16
    out = model(np.random.default_rng(0).normal(size=(1, 32, 64, 16)).astype(np.float32))
    assert np.isfinite(keras.ops.convert_to_numpy(out)).all()


def test_pyramid_pooling_sum_of_constant_input_is_five_times_input():
    model = _model(lambda x: blocks.pyramid_pooling(x, mode="sum", name="ppm"), shape=(13, 27, 4))
    assert model.count_params() == 0
    x = np.full((1, 13, 27, 4), 2.0, np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), 10.0, atol=1e-5)


def test_pyramid_pooling_rejects_bad_mode_and_filters():
    x = keras.Input((8, 8, 4))
    with pytest.raises(ValueError, match="mode"):
        blocks.pyramid_pooling(x, 4, mode="max", name="p")
    with pytest.raises(ValueError, match="keeps the 4"):
        blocks.pyramid_pooling(x, 8, mode="sum", name="p")


def test_feature_fusion_upsamples_to_high_resolution_and_uses_dilation():
    high = keras.Input((25, 38, 6))
    low = keras.Input((7, 10, 5))  # not an exact quarter: resized to the high-resolution size
    out = blocks.feature_fusion(high, low, 8, 4, "relu", name="ffm")
    model = keras.Model([high, low], out)
    assert model.output.shape == (None, 25, 38, 8)
    assert model.get_layer("ffm_dw").dilation_rate == (4, 4)
    assert model.get_layer("ffm_low_pw").kernel_size == (1, 1)
    assert model.get_layer("ffm_high_pw").kernel_size == (1, 1)
    y = model([np.ones((1, 25, 38, 6), np.float32), np.ones((1, 7, 10, 5), np.float32)])
    assert keras.ops.convert_to_numpy(keras.ops.min(y)) >= 0.0  # activation after the add


@pytest.mark.parametrize("channels,width,expected", [(32, 1.0, 32), (32, 2.0, 64), (48, 1.25, 64), (32, 0.4, 16),
                                                     (128, 0.72, 96), (19, 0.1, 8)])
def test_scale_channels(channels, width, expected):
    assert blocks.scale_channels(channels, width) == expected
