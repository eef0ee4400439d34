"""Fast-SCNN against its paper's Table 1 (shapes at 1024x2048, channels) and pinned parameter counts."""

import keras
import numpy as np
import pytest

from contextnet_tf import build_model
from contextnet_tf.models import fast_scnn
from contextnet_tf.models.profiling import count_trainable_params

import numpy_references  # tests/numpy_references.py

PAPER_PARAMS = 1.11e6


@pytest.fixture(scope="module")
def model():
    return build_model("fast_scnn", (1024, 2048, 3), aux=True)


@pytest.mark.parametrize(
    "layer,shape",
    [
        ("ltd_conv1_act", (512, 1024, 32)),  # Table 1 row 2 input
        ("ltd_dsconv2_act", (256, 512, 48)),
        ("ltd_dsconv3_act", (128, 256, 64)),  # 1/8 with 64 channels after learning to downsample
        ("gfe_bottleneck1_3_add", (64, 128, 64)),
        ("gfe_bottleneck2_3_add", (32, 64, 96)),
        ("gfe_bottleneck3_3_add", (32, 64, 128)),
        ("gfe_ppm_project_act", (32, 64, 128)),  # 1/32 with 128 after the global feature extractor
        ("ffm_act", (128, 256, 128)),
        ("cls_dsconv2_act", (128, 256, 128)),
        ("cls_conv", (128, 256, 19)),
        ("logits", (1024, 2048, 19)),
    ],
)
def test_table1_shapes(model, layer, shape):
    assert tuple(model.get_layer(layer).output.shape[1:]) == shape


def test_table1_block_structure(model):
    names = [layer.name for layer in model.layers]
    # Three bottleneck stages of three blocks, t = 6, strides 2, 2, 1.
    for stage, (t, c, n, s) in enumerate(fast_scnn.GLOBAL_FEATURE_EXTRACTOR, start=1):
        for i in range(1, n + 1):
            expand = model.get_layer(f"gfe_bottleneck{stage}_{i}_expand")
            assert expand.filters == expand.input.shape[-1] * t
            assert model.get_layer(f"gfe_bottleneck{stage}_{i}_dw").strides == ((s, s) if i == 1 else (1, 1))
        assert f"gfe_bottleneck{stage}_{n + 1}_expand" not in names
    assert model.get_layer("ffm_dw").dilation_rate == (4, 4)
    assert model.get_layer("cls_dropout").rate == fast_scnn.DROPOUT
    activations = {layer.activation.__name__ for layer in model.layers if isinstance(layer, keras.layers.Activation)}
    assert activations == {"relu"}


def test_aux_heads_at_end_of_ltd_and_gfe(model):
    assert set(model.output) == {"logits", "aux_ltd", "aux_gfe"}
    for key in model.output:
        assert tuple(model.output[key].shape) == (None, 1024, 2048, 19)
    assert model.get_layer("aux_ltd_conv").input.shape[1:] == (128, 256, 64)
    assert model.get_layer("aux_gfe_conv").input.shape[1:] == (32, 64, 128)


def test_parameter_count_pinned_and_within_3_percent_of_paper():
    params = count_trainable_params(build_model("fast_scnn", (256, 512, 3)))
    assert params == 1_137_795
    assert abs(params - PAPER_PARAMS) / PAPER_PARAMS < 0.03


def test_aux_heads_do_not_change_main_parameters():
    main = build_model("fast_scnn", (64, 128, 3))
    with_aux = build_model("fast_scnn", (64, 128, 3), aux=True)
    main_names = {w.path for w in main.trainable_weights}
    aux_only = [w for w in with_aux.trainable_weights if w.path not in main_names]
    assert all(w.path.startswith("aux_") for w in aux_only) and aux_only


def test_ibn_variant_adds_instance_norm_after_the_first_two_layers_only():
    plain = build_model("fast_scnn", (256, 512, 3))
    ibn = build_model("fast_scnn-ibn", (256, 512, 3))
    added = [layer.name for layer in ibn.layers if isinstance(layer, keras.layers.GroupNormalization)]
    assert added == ["ltd_conv1_in", "ltd_dsconv2_in"]
    assert ibn.get_layer("ltd_conv1_in").groups == 32 and ibn.get_layer("ltd_dsconv2_in").groups == 48
    # Each instance norm has a scale and an offset per channel: 2 x (32 + 48) parameters, nothing else changes.
    assert count_trainable_params(ibn) - count_trainable_params(plain) == 2 * (32 + 48)
    assert {w.path: w.shape for w in plain.weights} == {
        w.path: w.shape for w in ibn.weights if not w.path.startswith(("ltd_conv1_in", "ltd_dsconv2_in"))}
    # Placed after the activation of its layer, and feeding the next one.
    assert ibn.get_layer("ltd_conv1_in").input is ibn.get_layer("ltd_conv1_act").output
    assert ibn.get_layer("ltd_dsconv2_dw").input is ibn.get_layer("ltd_conv1_in").output
    assert ibn.get_layer("ltd_dsconv3_dw").input is ibn.get_layer("ltd_dsconv2_in").output


def test_instance_norm_normalises_each_image_and_channel_over_its_pixels():
    model = build_model("fast_scnn-ibn", (32, 64, 3))
    layer = model.get_layer("ltd_conv1_in")
    rng = np.random.default_rng(0)
    gamma, beta = rng.uniform(0.5, 2.0, 32), rng.normal(0.0, 1.0, 32)
    layer.set_weights([gamma, beta])
    # Two images of very different light and contrast per channel.
    x = numpy_references.images_in_different_light(rng, (2, 16, 32, 32))
    expected = numpy_references.instance_norm(x, gamma, beta, 1e-3)
    actual = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4)
    # Per image, not per batch: an image gives the same output alone, and in training mode.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x[:1], training=True)), actual[:1], rtol=0, atol=1e-5)


def test_ibna_variant_normalises_half_of_the_same_layers_channels():
    plain = build_model("fast_scnn", (256, 512, 3))
    ibna = build_model("fast_scnn-ibna", (256, 512, 3))
    added = {layer.name: layer for layer in ibna.layers if layer.name.endswith("_in")}
    assert list(added) == ["ltd_conv1_in", "ltd_dsconv2_in"]
    assert [layer.normalised_channels(layer.input.shape[-1]) for layer in added.values()] == [16, 24]
    assert count_trainable_params(ibna) - count_trainable_params(plain) == 2 * (16 + 24)
    assert ibna.get_layer("ltd_dsconv2_dw").input is ibna.get_layer("ltd_conv1_in").output
