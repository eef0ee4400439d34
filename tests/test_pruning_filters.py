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
    """Builds models in float64 for the duration of a test (the global float type is restored after it)."""
    previous = keras.config.floatx()
    keras.config.set_floatx("float64")
    try:
        yield
    finally:
        keras.config.set_floatx(previous)


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
    assert wide.get_layer("input_scaling").compute_dtype == "float64"
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
