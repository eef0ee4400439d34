"""Re-estimating batch-norm statistics: the moving means and variances recomputed from training batches.

Why: a network's batch norms normalise with batch statistics while it trains and with their moving averages when it
is evaluated. The averages follow the weights with momentum 0.99 (`models.blocks.BN_MOMENTUM`), so after ``n``
steps ``0.99 ** n`` of them still comes from before: 37% after 100 steps. When the weights jump (a pruned network's
layers lose input channels, `contextnet_tf.pruning`; weights averaged over a run), the old statistics no longer
describe the features, and a short run after the jump is evaluated with statistics that are partly wrong.

`recalibrate` recomputes them for the current weights: each batch norm's moving mean and variance become the plain
average, over ``num_batches`` training batches, of the batch means and variances that the layer sees in a
training-mode forward pass (SWA's "bn_update", Izmailov et al. 2018). Nothing else changes: no gradient, no weight
update, only the two statistics of every `keras.layers.BatchNormalization` layer.
"""

import keras
import numpy as np

from contextnet_tf import data


def batch_norm_layers(model):
    """Every `keras.layers.BatchNormalization` layer of `model`, nested models included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(batch_norm_layers(layer))
    return found


def recalibrate(model, images, num_batches):
    """Replaces the moving statistics of every batch norm in `model` by their average over `num_batches` batches.

    Args:
        model: a Keras model (a training model with auxiliary heads or an inference model).
        images: an iterable of image batches ``[B, H, W, 3]`` at `model`'s input size, or of ``(images, labels)``
            pairs (a training pipeline); the first `num_batches` are used.
        num_batches: how many (at least 1).

    Returns:
        The number of batch-norm layers recalibrated.

    Raises:
        ValueError: `model` has no batch norm, or `images` ran out before `num_batches`.
    """
    if num_batches < 1:
        raise ValueError(f"num_batches must be at least 1, got {num_batches}")
    layers = batch_norm_layers(model)
    if not layers:
        raise ValueError(f"model {model.name} has no batch-norm layer to recalibrate")
    saved = [layer.momentum for layer in layers]
    used = 0
    try:
        for batch in images:
            if used == num_batches:
                break
            batch = batch[0] if isinstance(batch, (tuple, list)) else batch
            used += 1
            # moving = momentum * moving + (1 - momentum) * batch statistic, with momentum 1 - 1/k at the k-th
            # batch: the running average of the k batch statistics (the first batch replaces the old ones).
            for layer in layers:
                layer.momentum = 1.0 - 1.0 / used
            model(batch, training=True)
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum
    if used < num_batches:
        raise ValueError(f"recalibrate: the batches ran out after {used} of {num_batches}")
    return len(layers)


def recalibrate_on_training_data(model, config, num_batches):
    """`recalibrate` on batches of `config`'s training pipeline (its split, crop, scales and augmentation, seed
    `config.seed`), built at the crop size: `model` must accept ``config.crop`` inputs."""
    from contextnet_tf.training.inputs import augment_config

    batches = data.make_dataset(config.dataset, config.data_dir, config.train_split, training=True,
                                batch_size=config.batch_size, crop_size=tuple(config.crop), seed=config.seed,
                                scale_range=tuple(config.scale_range), augment_config=augment_config(config),
                                label_source=config.label_source)
    return recalibrate(model, batches, num_batches)


def statistics(model):
    """{layer name: (moving_mean, moving_variance)} as NumPy arrays, for comparisons."""
    return {layer.name: (np.asarray(layer.moving_mean), np.asarray(layer.moving_variance))
            for layer in batch_norm_layers(model)}
