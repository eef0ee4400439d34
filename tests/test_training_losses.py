"""Tests of contextnet_tf.training.losses: ignored pixels, auxiliary-loss wiring, the L2 exclusions."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from contextnet_tf import build_model
from contextnet_tf.training import losses


def _numpy_ce(labels, logits, ignore=255):
    valid = labels != ignore
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, np.where(valid, labels, 0)[..., None], -1)[..., 0]
    return -(picked * valid).sum(), valid.sum()


def test_masked_cross_entropy_skips_the_ignore_label():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    labels = rng.integers(0, 5, (2, 3, 4)).astype(np.int32)
    labels[0, 0] = 255
    labels[1, :, 1] = 255
    total, count = losses.masked_cross_entropy(labels, logits)
    expected_total, expected_count = _numpy_ce(labels, logits)
    assert float(count) == expected_count == 24 - 4 - 3
    assert float(total) == pytest.approx(expected_total, rel=1e-5)
    # Another dataset's ignore value is honoured the same way (CamVid void maps to 255, but the value is a parameter).
    _, count_11 = losses.masked_cross_entropy(np.full((1, 2, 2), 11), logits[:1, :2, :2], ignore_label=11)
    assert float(count_11) == 0


def test_segmentation_losses_weight_auxiliary_heads_and_add_l2():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, (2, 8, 8)).astype(np.int32)
    labels[:, :2] = 255
    outputs = {name: rng.normal(size=(2, 8, 8, 4)).astype(np.float32) for name in ("logits", "aux_a", "aux_b")}
    kernel = tf.Variable(rng.normal(size=(3, 3, 2, 2)).astype(np.float32))
    parts = losses.segmentation_losses(outputs, labels, aux_weight=0.4, l2_variables=[kernel], weight_decay=4e-5)
    mean = {name: _numpy_ce(labels, value)[0] / _numpy_ce(labels, value)[1] for name, value in outputs.items()}
    l2 = 4e-5 * np.sum(kernel.numpy() ** 2) / 2  # TF-slim l2_regularizer
    assert float(parts["ce"]) == pytest.approx(mean["logits"], rel=1e-5)
    assert float(parts["aux_a"]) == pytest.approx(mean["aux_a"], rel=1e-5)  # reported unweighted
    assert float(parts["l2"]) == pytest.approx(l2, rel=1e-5)
    total = mean["logits"] + 0.4 * (mean["aux_a"] + mean["aux_b"]) + l2
    assert float(parts["loss"]) == pytest.approx(total, rel=1e-5)
    # A batch with no labelled pixel gives zero cross-entropy, not NaN.
    empty = losses.segmentation_losses(outputs["logits"], np.full((2, 8, 8), 255))
    assert float(empty["loss"]) == 0.0


@pytest.mark.parametrize("aux_weight", [0.4, 0.0])
def test_auxiliary_heads_get_gradients_only_through_their_weight(aux_weight):
    model = build_model("fast_scnn", (64, 64, 3), num_classes=5, aux=True)
    images = tf.random.uniform((2, 64, 64, 3), maxval=255.0, seed=1)
    labels = tf.random.uniform((2, 64, 64), maxval=5, dtype=tf.int32, seed=2)
    with tf.GradientTape() as tape:
        parts = losses.segmentation_losses(model(images, training=True), labels, aux_weight=aux_weight)
    variables = {v.path: v for v in model.trainable_variables}
    grads = dict(zip(variables, tape.gradient(parts["loss"], list(variables.values()))))
    aux_heads = [p for p in grads if p.startswith(("aux_ltd_", "aux_gfe_"))]
    assert len(aux_heads) == 2 * 5  # conv kernel, bn gamma and beta, classifier kernel and bias per head
    for path in aux_heads:
        norm = 0.0 if grads[path] is None else float(tf.norm(grads[path]))
        assert (norm > 0) == (aux_weight > 0), path
    assert float(tf.norm(grads["cls_conv/kernel"])) > 0  # the main head always learns
    assert set(parts) == {"loss", "ce", "l2", "aux_ltd", "aux_gfe"}


def _layers_of(model, cls):
    return [layer for layer in model.layers if isinstance(layer, cls)]


@pytest.mark.parametrize("name", ["fast_scnn", "cn14", "cn124"])
def test_l2_applies_to_conv_kernels_only(name):
    model = build_model(name, (64, 64, 3), num_classes=19, aux=True)
    selected = losses.l2_regularized_variables(model)
    depthwise = _layers_of(model, keras.layers.DepthwiseConv2D)
    convs = [layer for layer in _layers_of(model, keras.layers.Conv2D) if layer not in depthwise]
    assert depthwise and convs
    assert {id(v) for v in selected} == {id(layer.kernel) for layer in convs}
    excluded = [layer.kernel for layer in depthwise] + [
        v for layer in model.layers for v in layer.weights if not v.path.endswith("/kernel")
    ]
    assert not {id(v) for v in excluded} & {id(v) for v in selected}
    paths = [v.path for v in selected]
    assert "cls_conv/kernel" in paths and "cls_conv/bias" not in paths
    assert not any(p.endswith(("gamma", "beta", "moving_mean", "depthwise_kernel")) for p in paths)
    expected = 4e-5 * sum(np.sum(np.square(v.numpy())) for v in selected) / 2
    assert float(losses.l2_loss(selected, 4e-5)) == pytest.approx(expected, rel=1e-5)
    # The depthwise kernels get no gradient from the L2 term.
    with tf.GradientTape() as tape:
        value = losses.l2_loss(losses.l2_regularized_variables(model), 4e-5)
    assert all(g is None for g in tape.gradient(value, [layer.kernel for layer in depthwise]))


def test_class_weighted_cross_entropy_matches_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 4, 3)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 3, 4)).astype(np.int32)
    labels[0, 0] = 255
    weights = np.array([0.5, 2.0, 4.0], np.float32)
    total, count = losses.masked_cross_entropy(labels, logits, class_weights=weights)
    valid = labels != 255
    pixel_weight = np.where(valid, weights[np.where(valid, labels, 0)], 0.0)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, np.where(valid, labels, 0)[..., None], -1)[..., 0]
    assert float(count) == pytest.approx(pixel_weight.sum(), rel=1e-6)
    assert float(total) == pytest.approx(-(picked * pixel_weight).sum(), rel=1e-5)
    # Uniform weights give back the unweighted mean.
    t1, c1 = losses.masked_cross_entropy(labels, logits, class_weights=np.full(3, 3.0, np.float32))
    t0, c0 = losses.masked_cross_entropy(labels, logits)
    assert float(t1 / c1) == pytest.approx(float(t0 / c0), rel=1e-6)


def test_class_frequencies_and_weights_by_hand():
    # Image 1: 6 labelled pixels (class 0 x4, class 1 x2) and 2 ignored; image 2: 4 pixels of class 0; class 2 absent.
    a = np.array([[0, 0, 0, 0], [1, 1, 255, 255]])
    b = np.zeros((2, 2), np.int64)
    pixels, image_pixels = losses.class_frequencies([a, b], 3)
    assert pixels.tolist() == [8, 2, 0] and image_pixels.tolist() == [10, 6, 0]
    # Median frequency: f = [8/10, 2/6]; median 0.5667; weights median / f; the absent class gets 0.
    weights = losses.class_weights(pixels, image_pixels, "median_frequency")
    f = np.array([0.8, 2 / 6])
    np.testing.assert_allclose(weights, [np.median(f) / 0.8, np.median(f) / (2 / 6), 0.0], rtol=1e-6)
    # ENet: 1 / ln(1.02 + p) with p the share of all labelled pixels (8/10, 2/10).
    np.testing.assert_allclose(losses.class_weights(pixels, image_pixels, "enet"),
                               [1 / np.log(1.02 + 0.8), 1 / np.log(1.02 + 0.2), 0.0], rtol=1e-6)
    np.testing.assert_array_equal(losses.class_weights(pixels, image_pixels, "none"), [1, 1, 1])
    with pytest.raises(ValueError, match="class weighting"):
        losses.class_weights(pixels, image_pixels, "inverse")
    with pytest.raises(ValueError, match="not a class"):
        losses.class_frequencies([np.array([[3]])], 3)


def _random_case(seed, shape=(2, 16, 24), num_classes=5, scale=3.0):
    rng = np.random.default_rng(seed)
    logits = (scale * rng.normal(size=(*shape, num_classes))).astype(np.float32)
    labels = rng.integers(0, num_classes, shape).astype(np.int32)
    labels[0, :3] = 255
    labels[1, :, :5] = 255
    weights = rng.uniform(0.2, 5.0, num_classes).astype(np.float32)
    return logits, labels, weights


@pytest.mark.parametrize("class_weighting", [False, True])
def test_fast_cross_entropy_equals_the_reference_in_value_and_gradient(class_weighting):
    logits, labels, weights = _random_case(3)
    weights = weights if class_weighting else None
    variable = tf.Variable(logits)
    results = {}
    for implementation in ("reference", "fast"):
        with tf.GradientTape() as tape:
            parts = losses.segmentation_losses({"logits": variable, "aux_a": 2.0 * variable}, labels,
                                               class_weights=weights, implementation=implementation)
        results[implementation] = (parts, tape.gradient(parts["loss"], variable).numpy())
    (reference, reference_grad), (fast, fast_grad) = results["reference"], results["fast"]
    for name in ("ce", "aux_a", "loss"):
        assert float(fast[name]) == pytest.approx(float(reference[name]), rel=1e-6), name
    assert np.abs(reference_grad).max() > 1e-3
    np.testing.assert_allclose(fast_grad, reference_grad, rtol=0, atol=1e-6 * np.abs(reference_grad).max())
    # Ignored pixels get no gradient.
    assert not fast_grad[labels == 255].any()


def test_fast_cross_entropy_saturates_only_the_value_of_hopeless_pixels():
    logits = np.zeros((1, 1, 2, 3), np.float32)
    logits[0, 0, 0] = [200.0, 0.0, 0.0]  # true class 1: the reference loss is 200, the fast one saturates at 87.3
    labels = np.array([[[1, 0]]], np.int32)
    safe, weights = losses.label_terms(labels)
    variable = tf.Variable(logits)
    with tf.GradientTape() as tape:
        total = losses.softmax_cross_entropy_sum(variable, safe, weights)
    reference, _ = losses.masked_cross_entropy(labels, logits)
    # The second pixel (all logits 0, label 0) costs log 3 in both.
    assert float(reference) == pytest.approx(200.0 + np.log(3.0), rel=1e-6)
    assert float(total) == pytest.approx(-np.log(np.finfo(np.float32).tiny) + np.log(3.0), rel=1e-6)
    grad = tape.gradient(total, variable).numpy()
    np.testing.assert_allclose(grad[0, 0], [[1.0, -1.0, 0.0], [-2 / 3, 1 / 3, 1 / 3]], atol=1e-6)  # softmax - one_hot


def test_aux_losses_at_an_eighth_use_the_block_centres_of_the_labels():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, (2, 32, 48)).astype(np.int32)
    labels[0, :8] = 255
    main = rng.normal(size=(2, 32, 48, 4)).astype(np.float32)
    aux = rng.normal(size=(2, 4, 6, 4)).astype(np.float32)  # already at 1/8: resizing leaves it unchanged
    parts = losses.segmentation_losses({"logits": main, "aux_a": aux}, labels, aux_resolution="eighth")
    small = labels[:, 4::8, 4::8]  # the centre pixel (8i + 4) of every 8x8 block
    expected_aux = _numpy_ce(small, aux)[0] / _numpy_ce(small, aux)[1]
    expected_main = _numpy_ce(labels, main)[0] / _numpy_ce(labels, main)[1]
    assert float(parts["aux_a"]) == pytest.approx(expected_aux, rel=1e-5)
    assert float(parts["ce"]) == pytest.approx(expected_main, rel=1e-5)
    np.testing.assert_array_equal(losses.downsample_labels(tf.constant(labels), 4, 6).numpy(), small)
    with pytest.raises(ValueError, match="aux_resolution"):
        losses.segmentation_losses(main, labels, aux_resolution="quarter")


@pytest.mark.parametrize("name,sizes", [("fast_scnn", {"aux_ltd": 8, "aux_gfe": 32}), ("cn14", {"aux_context": 32})])
def test_aux_logits_view_shares_the_variables_and_stops_before_upsampling(name, sizes):
    model = build_model(name, (64, 128, 3), num_classes=5, aux=True)
    view = losses.aux_logits_view(model)
    assert {v.path for v in view.trainable_variables} == {v.path for v in model.trainable_variables}
    images = tf.random.uniform((1, 64, 128, 3), maxval=255.0, seed=1)
    full, small = model(images, training=False), view(images, training=False)
    np.testing.assert_array_equal(small["logits"].numpy(), full["logits"].numpy())
    for head, divisor in sizes.items():
        assert tuple(small[head].shape) == (1, 64 // divisor, 128 // divisor, 5), head
        assert tuple(full[head].shape) == (1, 64, 128, 5)


def test_a_train_step_with_aux_losses_at_an_eighth_trains_every_head():
    from contextnet_tf.training import make_train_step, optim

    model = build_model("fast_scnn", (64, 96, 3), num_classes=5, aux=True)
    optimizer = optim.make_optimizer("sgd", 0.01, 0.9)
    optimizer.build(model.trainable_variables)
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    step = make_train_step(tf.distribute.get_strategy(), model, optimizer, ignore_label=255, aux_weight=0.4,
                           weight_decay=4e-5, aux_resolution="eighth")
    images = tf.random.uniform((2, 64, 96, 3), maxval=255.0, seed=3)
    labels = tf.random.uniform((2, 64, 96), maxval=5, dtype=tf.int32, seed=4)
    parts = step((images, labels))
    assert set(parts) == {"loss", "ce", "l2", "aux_ltd", "aux_gfe"}
    assert all(np.isfinite(float(v)) for v in parts.values())
    changed = {v.path for v in model.trainable_variables if not np.array_equal(v.numpy(), before[v.path])}
    for head in ("aux_ltd_conv", "aux_gfe_conv", "cls_conv", "ltd_conv"):
        assert any(path.startswith(head) for path in changed), head


@pytest.mark.parametrize("implementation", ["fast", "reference"])
@pytest.mark.parametrize("threshold, min_kept", [(0.3, 0), (0.01, 200), (0.05, 1000)])
def test_ohem_trains_the_main_head_on_the_hard_pixels_by_hand(implementation, threshold, min_kept):
    """The main loss is the class-weighted mean over the labelled pixels whose true-class probability is below the
    threshold or among the min_kept * batch lowest (every labelled pixel when there are fewer); easy pixels get no
    gradient; the auxiliary head's loss is the plain one."""
    logits, labels, weights = _random_case(5)
    valid = labels != 255
    safe = np.where(valid, labels, 0)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, safe[..., None], -1)[..., 0]
    probability = np.exp(picked)
    kept = valid & (probability < threshold)
    forced = min(min_kept * labels.shape[0], int(valid.sum()))
    if forced:
        kept |= valid & (probability <= np.sort(probability[valid])[forced - 1])
    assert 0 < kept.sum() < valid.sum() or forced == valid.sum()
    if min_kept == 200:  # the threshold alone keeps fewer: the 400 hardest are kept
        assert (valid & (probability < threshold)).sum() < forced == kept.sum()
    pixel_weight = np.where(kept, weights[safe], 0.0)
    expected = -(picked * pixel_weight).sum() / pixel_weight.sum()
    variable = tf.Variable(logits)
    with tf.GradientTape() as tape:
        parts = losses.segmentation_losses({"logits": variable, "aux_a": 2.0 * variable}, labels, class_weights=weights,
                                           implementation=implementation, ohem_threshold=threshold,
                                           ohem_min_kept=min_kept)
    assert float(parts["ce"]) == pytest.approx(expected, rel=1e-5)
    plain = losses.segmentation_losses({"logits": variable, "aux_a": 2.0 * variable}, labels, class_weights=weights,
                                       implementation=implementation)
    assert float(parts["aux_a"]) == pytest.approx(float(plain["aux_a"]), rel=1e-6)

    @tf.function  # as in a train step: a graph, the number of forced pixels a tensor
    def main_only_gradient():
        with tf.GradientTape() as tape:
            main_only = losses.segmentation_losses(variable, labels, class_weights=weights,
                                                   implementation=implementation, ohem_threshold=threshold,
                                                   ohem_min_kept=min_kept)
        return main_only["ce"], tape.gradient(main_only["loss"], variable)

    ce, gradient = main_only_gradient()
    assert float(ce) == pytest.approx(expected, rel=1e-5)
    gradient = gradient.numpy()
    assert not gradient[~kept].any() and np.abs(gradient[kept]).sum(-1).min() > 0
