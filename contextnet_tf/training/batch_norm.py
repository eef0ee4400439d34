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

`fused_training` is the training step's faster batch norm (issue 18): inside it, a batch norm called in training mode
computes with TensorFlow's fused kernel (`tf.compat.v1.nn.fused_batch_norm`: one op forward, one backward) instead of
Keras' composition of ``moments`` and ``batch_normalization`` (about twenty element-wise ops and their gradients per
layer). Same mathematics: the batch mean and the biased batch variance normalise the batch, the moving averages are
updated as Keras updates them (momentum, biased variance), and outputs, gradients and moving statistics agree with
Keras' to float32 rounding (`tests/test_training_batch_norm.py`). The layers themselves are not changed, so the
models stay `keras.layers` models (saved, folded, pruned and run under JAX as before); only the TensorFlow training
loop uses it.
"""

import contextlib

import keras
import numpy as np
import tensorflow as tf

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


def fusable(layer, inputs):
    """Whether `fused_training` computes `layer` on `inputs` with the fused kernel: a 4-D channels-last input, no
    renormalisation, no cross-replica synchronisation. Other batch norms keep Keras' own computation."""
    return (len(inputs.shape) == 4 and layer.axis in (-1, 3) and not layer.renorm and not layer.synchronized)


def _fused_call(layer):
    def call(inputs, training=None, mask=None):
        if not (training and layer.trainable) or mask is not None or not fusable(layer, inputs):
            return type(layer).call(layer, inputs, training=training, mask=mask)
        x = tf.cast(inputs, tf.float32)
        channels = tf.shape(layer.moving_mean)
        scale = tf.cast(layer.gamma, tf.float32) if layer.scale else tf.ones(channels, tf.float32)
        offset = tf.cast(layer.beta, tf.float32) if layer.center else tf.zeros(channels, tf.float32)
        outputs, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
            x, scale, offset, epsilon=layer.epsilon, data_format="NHWC", is_training=True)
        # The kernel normalises with the biased variance and returns the unbiased one (n / (n - 1) times larger);
        # Keras averages the biased one into its moving variance.
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float32)
        variance = unbiased_variance * tf.maximum(count - 1.0, 1.0) / count
        momentum = layer.momentum
        layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
        layer.moving_variance.assign(layer.moving_variance * momentum + variance * (1.0 - momentum))
        return tf.cast(outputs, layer.compute_dtype)

    return call


@contextlib.contextmanager
def fused_training(model):
    """While active, `model`'s batch norms (nested models included) compute training-mode calls with the fused
    kernel (see the module docstring); inference-mode calls and the layers `fusable` rejects are unchanged. Meant
    around the forward pass of a traced training step: the `tf.function` keeps what it traced."""
    layers = batch_norm_layers(model)
    for layer in layers:
        object.__setattr__(layer, "call", _fused_call(layer))
    try:
        yield layers
    finally:
        for layer in layers:
            if "call" in layer.__dict__:
                object.__delattr__(layer, "call")


def recalibrate(model, images, num_batches):
    """Replaces the moving statistics of every batch norm in `model` by their average over `num_batches` batches.

    Give it batches of the size the network trained with: each batch's variance is taken around that batch's own
    mean, so the average leaves out how far the batches' means lie apart. With one image per batch it leaves out the
    spread between images altogether, and the network is evaluated with variances that are far too small (docs/data.md,
    "Thirteenth session": a CamVid check that lost most of its mIoU with batches of one and a few points with batches
    of eight).

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
