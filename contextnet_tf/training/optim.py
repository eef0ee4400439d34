"""The papers' optimisers and their poly learning-rate schedule, from Keras built-ins."""

import contextlib

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


def make_optimizer(name, learning_rate, momentum=0.9, loss_scale=False, ema_momentum=None):
    """RMSprop (ContextNet) or SGD with momentum (Fast-SCNN).

    Args:
        name: ``rmsprop`` or ``sgd``.
        learning_rate: a float or a schedule (`poly_schedule`).
        momentum: momentum of either optimiser (0.9 in both papers).
        loss_scale: wrap in `keras.optimizers.LossScaleOptimizer` (float16 mixed precision).
        ema_momentum: None (the papers), or keep an exponential moving average of the trainable weights with this
            momentum (Keras's ``use_ema``: the average starts as the weights after step 1, then ``average = m *
            average + (1 - m) * weights`` after every step). The optimiser's variables hold it, so checkpoints
            carry it; `averaged_weights` swaps it in. Not in either paper (issue 16's weight-averaging lever).
    """
    if ema_momentum is not None and not 0 < ema_momentum < 1:
        raise ValueError(f"ema_momentum must be in (0, 1), got {ema_momentum!r}")
    ema = {} if ema_momentum is None else dict(use_ema=True, ema_momentum=ema_momentum)
    if name == "rmsprop":
        optimizer = keras.optimizers.RMSprop(
            learning_rate=learning_rate, rho=RMSPROP_RHO, momentum=momentum, epsilon=RMSPROP_EPSILON, **ema
        )
    elif name == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum, **ema)
    else:
        raise ValueError(f"unknown optimizer {name!r}; choose rmsprop or sgd")
    if loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def current_learning_rate(optimizer):
    """The learning rate the next step will use, as a Python float."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return float(keras.ops.convert_to_numpy(inner.learning_rate))


@contextlib.contextmanager
def averaged_weights(optimizer, variables):
    """Within the block, `variables` (the trainable variables the optimiser was built on) hold the optimiser's moving
    average (`make_optimizer`'s ``ema_momentum``); afterwards their training values again. Without an average, does
    nothing."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    if not inner.use_ema:
        yield
        return
    saved = [keras.ops.convert_to_numpy(v) for v in variables]
    inner.finalize_variable_values(variables)
    try:
        yield
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)
