"""The papers' optimisers and their poly learning-rate schedule, from Keras built-ins."""

import keras

# ContextNet 3.1: RMSprop "with a discounting factor of 0.9, momentum of 0.9 and epsilon parameter equal to 1".
RMSPROP_RHO = 0.9
RMSPROP_EPSILON = 1.0


def poly_schedule(base_lr, total_steps, power, end_lr=0.0):
    """The 'poly' schedule (DeepLab): ``(base_lr - end_lr) * (1 - step / total_steps) ** power + end_lr``.

    ContextNet uses base 0.045 and power 0.98, Fast-SCNN base 0.045 and power 0.9, both over the whole run.
    """
    return keras.optimizers.schedules.PolynomialDecay(
        initial_learning_rate=base_lr,
        decay_steps=int(total_steps),
        end_learning_rate=end_lr,
        power=power,
    )


def make_optimizer(name, learning_rate, momentum=0.9, loss_scale=False):
    """RMSprop (ContextNet) or SGD with momentum (Fast-SCNN).

    Args:
        name: ``rmsprop`` or ``sgd``.
        learning_rate: a float or a schedule (`poly_schedule`).
        momentum: momentum of either optimiser (0.9 in both papers).
        loss_scale: wrap in `keras.optimizers.LossScaleOptimizer` (float16 mixed precision).
    """
    if name == "rmsprop":
        optimizer = keras.optimizers.RMSprop(
            learning_rate=learning_rate, rho=RMSPROP_RHO, momentum=momentum, epsilon=RMSPROP_EPSILON
        )
    elif name == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)
    else:
        raise ValueError(f"unknown optimizer {name!r}; choose rmsprop or sgd")
    if loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def current_learning_rate(optimizer):
    """The learning rate the next step will use, as a Python float."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return float(keras.ops.convert_to_numpy(inner.learning_rate))
