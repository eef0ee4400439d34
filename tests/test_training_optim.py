"""Tests of contextnet_tf.training.optim: the poly schedule and the papers' optimiser settings."""

import keras
import numpy as np
import pytest

from contextnet_tf.training import optim


@pytest.mark.parametrize("power", [0.98, 0.9])
def test_poly_schedule(power):
    schedule = optim.poly_schedule(0.045, 1000, power)
    for step in (0, 1, 250, 500, 999, 1000, 1200):
        expected = 0.045 * (1 - min(step, 1000) / 1000) ** power
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-4, abs=1e-9)  # float32
    assert float(schedule(0)) == pytest.approx(0.045)
    assert float(schedule(1000)) == 0.0
    # The two papers' powers differ visibly half way: 0.045 * 0.5 ** 0.98 vs 0.045 * 0.5 ** 0.9.
    assert float(schedule(500)) == pytest.approx({0.98: 0.022814, 0.9: 0.024115}[power], rel=1e-4)


def test_rmsprop_is_the_contextnet_recipe_step_by_hand():
    optimizer = optim.make_optimizer("rmsprop", 0.045)
    config = optimizer.get_config()
    assert (config["rho"], config["momentum"], config["epsilon"]) == (0.9, 0.9, 1.0)
    weight = keras.Variable(np.array([1.0, -2.0], np.float32))
    grads = [np.array([0.5, -3.0], np.float32), np.array([1.0, 2.0], np.float32)]
    velocity, momentum, expected = np.zeros(2), np.zeros(2), np.array([1.0, -2.0])
    for grad in grads:
        optimizer.apply_gradients([(grad, weight)])
        velocity = 0.9 * velocity + 0.1 * grad**2
        momentum = 0.9 * momentum + 0.045 * grad / np.sqrt(velocity + 1.0)
        expected = expected - momentum
    np.testing.assert_allclose(weight.numpy(), expected, rtol=1e-6)


def test_sgd_is_the_fast_scnn_recipe_and_loss_scaling_wraps():
    optimizer = optim.make_optimizer("sgd", optim.poly_schedule(0.045, 10, 0.9))
    assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.get_config()["momentum"] == 0.9
    assert optim.current_learning_rate(optimizer) == pytest.approx(0.045)
    scaled = optim.make_optimizer("sgd", 0.1, loss_scale=True)
    assert isinstance(scaled, keras.optimizers.LossScaleOptimizer)
    assert optim.current_learning_rate(scaled) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="rmsprop or sgd"):
        optim.make_optimizer("adam", 0.1)


def test_ema_by_hand_and_averaged_weights_swaps_it_in_and_back():
    """Keras's use_ema, as `make_optimizer(ema_momentum=...)` sets it: the average starts as the weights after step
    1, then average = m * average + (1 - m) * weights; `averaged_weights` shows it only inside its block."""
    optimizer = optim.make_optimizer("sgd", 0.1, momentum=0.0, ema_momentum=0.75)
    weight = keras.Variable(np.array([1.0, -2.0], np.float32))
    optimizer.build([weight])
    expected, average = np.array([1.0, -2.0]), None
    for grad in (np.array([0.5, -3.0]), np.array([1.0, 2.0]), np.array([-4.0, 0.25])):
        optimizer.apply_gradients([(grad.astype(np.float32), weight)])
        expected = expected - 0.1 * grad
        average = expected.copy() if average is None else 0.75 * average + 0.25 * expected
    with optim.averaged_weights(optimizer, [weight]):
        np.testing.assert_allclose(weight.numpy(), average, rtol=1e-6)
    np.testing.assert_allclose(weight.numpy(), expected, rtol=1e-6)  # the training values are back
    assert not np.allclose(average, expected)
    plain = optim.make_optimizer("sgd", 0.1)
    plain.build([weight])
    with optim.averaged_weights(plain, [weight]):  # no average: nothing changes
        np.testing.assert_allclose(weight.numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="ema_momentum must be in"):
        optim.make_optimizer("sgd", 0.1, ema_momentum=1.0)
