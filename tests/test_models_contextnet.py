"""ContextNet against its paper's Tables 2-4 and section 2.2, with pinned parameter counts for every variant."""

import keras
import pytest

from contextnet_tf import build_model
from contextnet_tf.models import contextnet
from contextnet_tf.models.profiling import count_trainable_params, paper_layer_count

# Paper Table 4 (and section 3.2 for the thin variants), and the tolerance this project promises.
PAPER = {
    "cn14": (850_000, 0.03),
    "cn12": (850_000, 0.03),
    "cn18": (850_000, 0.03),
    "cn124": (930_000, 0.03),
    "cn14-500": (490_459, 0.05),
    "cn14-160": (159_387, 0.05),
}
PINNED = {
    "cn14": 856_851,
    "cn12": 856_851,
    "cn18": 856_851,
    "cn124": 922_195,
    "cn14-500": 483_859,
    "cn14-160": 158_427,
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_parameter_counts_pinned_and_close_to_paper(name):
    params = count_trainable_params(build_model(name, (128, 256, 3)))
    assert params == PINNED[name]
    target, tolerance = PAPER[name]
    assert abs(params - target) / target < tolerance


@pytest.fixture(scope="module")
def cn14():
    return build_model("cn14", (1024, 2048, 3), aux=True)


@pytest.mark.parametrize(
    "layer,shape",
    [
        ("context_downscale", (256, 512, 3)),  # Table 2 input: 256 x 512 x 3
        ("context_conv1_act", (128, 256, 32)),
        ("context_bottleneck1_1_project_bn", (128, 256, 32)),
        ("context_bottleneck2_1_add", (128, 256, 32)),
        ("context_bottleneck3_3_add", (64, 128, 48)),
        ("context_bottleneck4_3_add", (32, 64, 64)),
        ("context_bottleneck5_2_add", (32, 64, 96)),
        ("context_bottleneck6_2_add", (32, 64, 128)),
        ("context_ppm_add", (32, 64, 128)),
        ("context_conv2_act", (32, 64, 128)),
        ("detail_conv1_act", (512, 1024, 32)),  # section 2.2: 32, 64, 128, 128; stride 2 but the last
        ("detail_dsconv2_act", (256, 512, 64)),
        ("detail_dsconv3_act", (128, 256, 128)),
        ("detail_dsconv4_act", (128, 256, 128)),
        ("fusion_up", (128, 256, 128)),  # Table 3: upsample x4
        ("fusion_act", (128, 256, 128)),
        ("cls_conv", (128, 256, 19)),
        ("logits", (1024, 2048, 19)),
    ],
)
def test_cn14_branch_shapes(cn14, layer, shape):
    assert tuple(cn14.get_layer(layer).output.shape[1:]) == shape


def test_cn14_paper_layer_counts_and_choices(cn14):
    assert paper_layer_count(cn14, "context_") == 38  # section 2.2: "a total of only 38 highly efficient layers"
    assert paper_layer_count(cn14, "detail_") == 4  # "only consists of four layers"
    assert cn14.get_layer("fusion_dw").dilation_rate == (4, 4)
    assert cn14.get_layer("context_conv2").kernel_size == (1, 1)  # our choice for Table 2's last Conv2d
    assert cn14.get_layer("context_ppm_add").count_params() == 0  # ICNet-style, parameter-free pyramid pooling
    activations = {layer.activation.__name__ for layer in cn14.layers if isinstance(layer, keras.layers.Activation)}
    assert activations == {"relu6"}
    assert set(cn14.output) == {"logits", "aux_context"}
    assert cn14.get_layer("aux_context_conv").input.shape[1:] == (32, 64, 128)


@pytest.mark.parametrize(
    "name,context_shape,dilation", [("cn12", (512, 1024), 2), ("cn18", (128, 256), 8), ("cn14", (256, 512), 4)]
)
def test_context_resolution_variants(name, context_shape, dilation):
    model = build_model(name, (1024, 2048, 3))
    assert tuple(model.get_layer("context_downscale").output.shape[1:3]) == context_shape
    assert model.get_layer("fusion_dw").dilation_rate == (dilation, dilation)
    assert tuple(model.get_layer("fusion_act").output.shape[1:3]) == (128, 256)


def test_cn124_has_half_and_full_resolution_shallow_branches():
    model = build_model("cn124", (1024, 2048, 3))
    assert tuple(model.get_layer("detail2_downscale").output.shape[1:3]) == (512, 1024)
    assert tuple(model.get_layer("detail2_dsconv4_act").output.shape[1:]) == (64, 128, 128)
    assert tuple(model.get_layer("fusion2_act").output.shape[1:]) == (64, 128, 128)  # context (1/32) into 1/16
    assert tuple(model.get_layer("fusion_act").output.shape[1:]) == (128, 256, 128)  # then into 1/8
    assert model.get_layer("fusion2_dw").dilation_rate == (2, 2)
    assert model.get_layer("fusion_dw").dilation_rate == (2, 2)


def test_thin_variants_are_width_multiples_of_cn14():
    assert contextnet.VARIANTS["cn14-500"]["width"] == 0.72
    assert contextnet.VARIANTS["cn14-160"]["width"] == 0.4
    thin = build_model("cn14-160", (128, 256, 3))
    assert thin.get_layer("context_conv2").filters == 48  # 128 * 0.4 = 51.2 -> 48
    assert thin.get_layer("detail_conv1").filters == 16  # 32 * 0.4 = 12.8 -> 16
