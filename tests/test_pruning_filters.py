"""Filter pruning: L1 ranking, coupled channels, exact target architecture, and the zeroed-filter identity."""

import keras
import numpy as np
import pytest

from contextnet_tf import MODEL_NAMES, build_model
from contextnet_tf.pruning import filters as pruning
from contextnet_tf.models.profiling import count_trainable_params

SHAPE = (64, 128, 3)


def _randomise(model, seed=0):
    """Random kernels and batch-norm statistics far from identity, so rankings and outputs are non-trivial."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.3, n), rng.normal(0, 0.3, n),
                               rng.uniform(0.5, 2.0, n)])
        elif layer.weights:
            layer.set_weights([rng.normal(0, 0.3, w.shape) for w in layer.weights])
    return model


def test_kept_filters_have_the_largest_l1_norms():
    wide = _randomise(build_model("fast_scnn", SHAPE, num_classes=4, width=2.0))
    narrow = pruning.prune_model(wide, 1.0)
    norms = pruning.filter_l1_norms(wide, "ltd_conv1")  # its own channel group: 64 filters -> 32
    kept = np.sort(np.argsort(-norms)[:32])
    assert norms[kept].min() >= np.delete(norms, kept).max()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(narrow.get_layer("ltd_conv1").kernel),
                                  keras.ops.convert_to_numpy(wide.get_layer("ltd_conv1").kernel)[..., kept])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(narrow.get_layer("ltd_conv1_bn").gamma),
                                  keras.ops.convert_to_numpy(wide.get_layer("ltd_conv1_bn").gamma)[kept])


def test_residual_blocks_share_one_channel_group_ranked_by_summed_norms():
    wide = _randomise(build_model("fast_scnn", SHAPE, num_classes=4, width=2.0))
    layouts, groups, _ = pruning.channel_layouts(wide)
    stage = [f"gfe_bottleneck1_{i}_project" for i in (1, 2, 3)]
    roots = {groups.find(layouts[name][0][0]) for name in stage}
    assert len(roots) == 1
    assert sorted(groups.members[roots.pop()][0]) == stage
    kept = pruning.kept_channels(wide, build_model("fast_scnn", SHAPE, num_classes=4, width=1.0))
    score = sum(pruning.filter_l1_norms(wide, name) for name in stage)
    np.testing.assert_array_equal(kept[layouts[stage[0]][0][0]], np.sort(np.argsort(-score)[:64]))


def test_fusion_add_couples_both_inputs_and_classifier_keeps_all_classes():
    wide = build_model("cn14", SHAPE, num_classes=4, width=2.0)
    layouts, groups, _ = pruning.channel_layouts(wide)
    assert groups.find(layouts["fusion_low_pw"][0][0]) == groups.find(layouts["fusion_high_pw"][0][0])
    narrow = pruning.prune_model(wide, 1.0)
    assert narrow.get_layer("cls_conv").kernel.shape == (1, 1, 128, 4)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_pruned_model_is_exactly_the_narrow_build(name):
    wide = _randomise(build_model(name, SHAPE, num_classes=5, width=2.0))
    narrow = pruning.prune_model(wide, 1.0)
    reference = build_model(name, SHAPE, num_classes=5)
    assert count_trainable_params(narrow) == count_trainable_params(reference)
    assert [w.shape for w in narrow.weights] == [w.shape for w in reference.weights]
    assert [layer.name for layer in narrow.layers] == [layer.name for layer in reference.layers]


def _zero_removed_channels(wide, kept):
    """Zeros, in the wide model, every filter (and its batch-norm gamma/beta) that pruning removes."""
    layouts, _, _ = pruning.channel_layouts(wide)
    for layer in wide.layers:
        is_conv = isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D)
        if not (is_conv or isinstance(layer, keras.layers.BatchNormalization)):
            continue
        removed = np.setdiff1d(np.arange(layer.output.shape[-1]), pruning._indices(layouts[layer.name], kept))
        values = [keras.ops.convert_to_numpy(w).copy() for w in layer.weights]
        if is_conv:
            values[0][..., removed] = 0.0
            if len(values) > 1:
                values[1][removed] = 0.0
        else:  # gamma, beta
            values[0][removed] = 0.0
            values[1][removed] = 0.0
        layer.set_weights(values)


@pytest.fixture
def float64():
    """Builds models in float64 for the duration of a test (the global float type and dtype policy are restored).

    Both are set: inputs take their dtype from floatx, layers from the global dtype policy, which Keras fixes from
    floatx the first time anything asks for it (so setting floatx alone works only in a fresh process).
    """
    previous_floatx, previous_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous_policy)
        keras.config.set_floatx(previous_floatx)


@pytest.mark.parametrize("name,aux", [("fast_scnn", True), ("cn14", True), ("cn124", False)])
def test_pruned_equals_wide_with_removed_filters_zeroed(name, aux, float64):
    # In float64, because float32 rounding is not what this test is about: the wide convolutions sum zeros the narrow
    # ones do not have, so the two round differently (first at context_bottleneck1_1_expand in cn124, 8e-8 of the
    # output), and these random weights amplify that through each relu6, which clips pre-activations of up to ~1e3
    # into [0, 6] while keeping their absolute error: in float32 cn124's logits differ by 1.1e-2 (4e-4 of their largest
    # value, on 15% of the elements), with every removed channel exactly zero in every layer; in float64 the same
    # comparison differs by 5e-11 at most in any layer and not at all in the (float32) logits. A kept channel copied
    # from the wrong place moves outputs by a large fraction of their scale, far beyond the tolerance below.
    wide = _randomise(build_model(name, SHAPE, num_classes=3, aux=aux, width=1.5), seed=1)
    assert {w.dtype for w in wide.weights} == {"float64"} and wide.get_layer("input_scaling").compute_dtype == "float64"
    narrow = pruning.prune_model(wide, 1.0)
    kept = pruning.kept_channels(wide, narrow)
    _zero_removed_channels(wide, kept)
    x = np.random.default_rng(2).uniform(0, 255, (1, *SHAPE))
    a, b = wide(x, training=False), narrow(x, training=False)
    a, b = (a, b) if aux else ({"logits": a}, {"logits": b})
    for key in a:
        # The logits are cast to float32 at the end: one float32 rounding of values that agree to ~1e-12.
        expected = keras.ops.convert_to_numpy(a[key])
        np.testing.assert_allclose(keras.ops.convert_to_numpy(b[key]), expected, rtol=1e-6,
                                   atol=1e-6 * float(np.max(np.abs(expected))))


def test_pruning_to_a_wider_model_is_an_error():
    narrow = build_model("cn14-160", SHAPE, num_classes=3)
    with pytest.raises(ValueError, match="wider to a narrower"):
        pruning.prune_model(narrow, 2.0)


class ReverseChannels(keras.layers.Layer):
    """A real layer whose channel mapping pruning cannot know (it reverses the channel order)."""

    def call(self, x):
        return keras.ops.flip(x, axis=-1)


def _small_model(filters, middle=None, bn_kwargs=None):
    """image (4x4x3) -> conv (`filters`, 1x1) -> batch norm -> relu -> [middle] -> cls (2 classes, 1x1)."""
    image = keras.Input((4, 4, 3), name="image")
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name="conv")(image)
    x = keras.layers.BatchNormalization(name="conv_bn", **(bn_kwargs or {}))(x)
    x = keras.layers.Activation("relu", name="act")(x)
    if middle is not None:
        x = middle(x)
    return keras.Model(image, keras.layers.Conv2D(2, 1, name="cls")(x))


@pytest.mark.parametrize("middle,cls_name,why", [
    (lambda: ReverseChannels(name="odd"), "ReverseChannels", "it is none of the layer types pruning knows"),
    (lambda: keras.layers.Dense(8, name="odd"), "Dense", "it is none of the layer types pruning knows"),
    (lambda: keras.layers.ReLU(name="odd"), "ReLU", "it is none of the layer types pruning knows"),
    (lambda: keras.layers.DepthwiseConv2D(1, depth_multiplier=2, name="odd"), "DepthwiseConv2D",
     "depth_multiplier=2 changes the number of channels"),
    (lambda: keras.layers.Conv2D(8, 1, groups=2, name="odd"), "Conv2D", r"a grouped convolution \(groups=2\)"),
])
def test_a_layer_of_unknown_channel_behaviour_is_an_error_naming_it(middle, cls_name, why):
    source, target = _small_model(8, middle()), _small_model(4, middle())
    message = rf"layer 'odd' \({cls_name}\) maps channels: {why}"
    with pytest.raises(ValueError, match=message):
        pruning.channel_layouts(source)
    with pytest.raises(ValueError, match=message):
        pruning.transfer_pruned_weights(source, target)


def test_a_concatenate_or_batch_norm_off_the_channel_axis_is_an_error_naming_it():
    image = keras.Input((4, 4, 3), name="image")
    x = keras.layers.Conv2D(8, 1, name="conv")(image)
    spatial = keras.Model(image, keras.layers.Concatenate(axis=1, name="stack")([x, x]))
    with pytest.raises(ValueError, match=r"layer 'stack' \(Concatenate\) maps channels: axis=1 is not the channel"):
        pruning.channel_layouts(spatial)
    rows = keras.Model(image, keras.layers.BatchNormalization(axis=1, name="rows_bn")(x))
    with pytest.raises(ValueError, match=r"layer 'rows_bn' \(BatchNormalization\) maps channels: axis=1 is not"):
        pruning.channel_layouts(rows)


def _set_small_model_weights(model, gamma, variance):
    """conv filter j: every kernel value 4 - j (L1 norms 12, 9, 6, 3); the batch norm's gamma and variance as given."""
    model.get_layer("conv").set_weights([np.broadcast_to(np.array([4.0, 3.0, 2.0, 1.0]), (1, 1, 3, 4))])
    bn = model.get_layer("conv_bn")
    bn.set_weights([np.array(gamma), np.full(4, 0.3), np.full(4, -0.2), np.array(variance)])
    cls = model.get_layer("cls")
    cls.set_weights([np.arange(8.0).reshape(1, 1, 4, 2), np.zeros(2)])
    return model


def test_bn_scaled_importance_ranks_by_the_folded_filter_where_l1_does_not():
    source = _set_small_model_weights(_small_model(4), gamma=[0.1, -0.2, -1.0, 1.0], variance=[1.0, 1.0, 4.0, 0.25])
    target = _small_model(2)
    assert pruning.following_batch_norms(source) == {"conv": "conv_bn"}
    eps = source.get_layer("conv_bn").epsilon
    expected = np.array([12 * 0.1 / np.sqrt(1 + eps), 9 * 0.2 / np.sqrt(1 + eps), 6 * 1 / np.sqrt(4 + eps),
                         3 * 1 / np.sqrt(0.25 + eps)])  # 1.2, 1.8, 3.0, 6.0 (to eps)
    np.testing.assert_allclose(pruning.filter_importance(source, "conv", "bn_scaled_l1"), expected, rtol=1e-6)
    np.testing.assert_allclose(pruning.filter_importance(source, "conv", "l1"), [12, 9, 6, 3], rtol=1e-6)
    # The classifier feeds no batch norm: its importance is its plain L1 norm under either option.
    np.testing.assert_array_equal(pruning.filter_importance(source, "cls", "bn_scaled_l1"),
                                  pruning.filter_l1_norms(source, "cls"))
    l1_kept = pruning.kept_channels(source, target, "l1")["conv"]  # the conv's channel group, keyed by its name
    bn_kept = pruning.kept_channels(source, target, "bn_scaled_l1")["conv"]
    assert (l1_kept.tolist(), bn_kept.tolist()) == ([0, 1], [2, 3])
    pruned = pruning.transfer_pruned_weights(source, target, importance="bn_scaled_l1")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(pruned.get_layer("conv").kernel)[0, 0, 0], [2.0, 1.0])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(pruned.get_layer("conv_bn").gamma), [-1.0, 1.0])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(pruned.get_layer("cls").kernel)[0, 0], [[4, 5], [6, 7]])


def test_bn_scaled_importance_ranks_as_l1_when_gammas_are_one_and_variances_equal():
    source = _set_small_model_weights(_small_model(4), gamma=[1.0] * 4, variance=[0.7] * 4)
    target = _small_model(2)
    eps = source.get_layer("conv_bn").epsilon
    np.testing.assert_allclose(pruning.filter_importance(source, "conv", "bn_scaled_l1"),
                               np.array([12.0, 9.0, 6.0, 3.0]) / np.sqrt(0.7 + eps), rtol=1e-6)
    l1, scaled = pruning.kept_channels(source, target, "l1"), pruning.kept_channels(source, target, "bn_scaled_l1")
    assert l1.keys() == scaled.keys()
    for key in l1:
        np.testing.assert_array_equal(scaled[key], l1[key])
    # With random kernels too (distinct norms, no ties): the same kept filters.
    rng = np.random.default_rng(3)
    source.get_layer("conv").set_weights([rng.normal(0, 1, (1, 1, 3, 4))])
    np.testing.assert_array_equal(pruning.kept_channels(source, target, "bn_scaled_l1")["conv"],
                                  pruning.kept_channels(source, target, "l1")["conv"])


def test_bn_scaled_pruning_of_fast_scnn_keeps_the_largest_folded_filters():
    wide = _randomise(build_model("fast_scnn", SHAPE, num_classes=4, width=2.0))
    narrow = pruning.prune_model(wide, 1.0, importance="bn_scaled_l1")
    assert [w.shape for w in narrow.weights] == [w.shape for w in build_model("fast_scnn", SHAPE, 4).weights]
    bn = wide.get_layer("ltd_conv1_bn")
    score = pruning.filter_l1_norms(wide, "ltd_conv1") * np.abs(keras.ops.convert_to_numpy(bn.gamma)) / np.sqrt(
        keras.ops.convert_to_numpy(bn.moving_variance) + bn.epsilon)
    kept = np.sort(np.argsort(-score)[:32])
    l1_kept = np.sort(np.argsort(-pruning.filter_l1_norms(wide, "ltd_conv1"))[:32])
    assert set(kept) != set(l1_kept)  # these random batch norms change the choice
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(narrow.get_layer("ltd_conv1").kernel),
                                  keras.ops.convert_to_numpy(wide.get_layer("ltd_conv1").kernel)[..., kept])


def test_an_unknown_importance_is_an_error_naming_the_options():
    wide = build_model("cn14-160", SHAPE, num_classes=3, width=0.8)
    with pytest.raises(ValueError, match="filter importance must be one of l1, bn_scaled_l1, got 'l2'"):
        pruning.prune_model(wide, 0.4, importance="l2")


@pytest.mark.parametrize("name,cls_name", [("fast_scnn-ibn", "GroupNormalization"),
                                           ("fast_scnn-ibna", "PartialInstanceNormalization")])
def test_the_instance_norm_variants_are_refused_naming_their_first_instance_norm(name, cls_name):
    model = build_model(name, SHAPE, num_classes=3)
    with pytest.raises(ValueError, match=rf"layer 'ltd_conv1_in' \({cls_name}\) maps channels: it is none of"):
        pruning.channel_layouts(model)
