"""Two small custom layers the networks need, written with `keras.ops` only.

* `Resize`: bilinear (or nearest) resize to the spatial size of a *reference* tensor (``Resize()([x, reference])``),
  or by a *divisor* (``Resize(divisor=4)(x)`` gives ceil(H/4) x ceil(W/4)). Sizes come from the tensors at run time,
  so a model built with ``(None, None, 3)`` inputs runs at any size, including sizes that are not multiples of 32
  (a 1/32 map of 1000 rows has 32 rows, and 4 x 32 != 125).
* `AdaptiveAveragePooling2D`: PSPNet-style adaptive average pooling to `bins x bins` for any input size. Bin ``i``
  of ``n`` over a length ``L`` averages rows ``floor(i*L/n)`` to ``ceil((i+1)*L/n)`` (the PyTorch
  `AdaptiveAvgPool2d` convention), so a 32x64 map pooled to 6x6 is exact, with overlapping windows where needed.
  It is computed as two small matrix products (rows, then columns), which every backend and every export path
  (SavedModel, TFLite, ONNX) supports, unlike `tf.image.resize`-with-area tricks or dynamic slicing.

Static and run-time sizes. When a tensor's size is known while the graph is traced (always under JAX, and under
TensorFlow whenever the caller's input has a static shape: training steps, `model.predict`, TFLite export), the
layers use plain Python integers: the pooling matrices are NumPy constants and the resize is the same op a
fixed-size model would run, so the speed of a static-size model is kept. Only a graph traced with unknown sizes
(the SavedModel's any-size signatures) computes them at run time: the pooling matrices from `keras.ops` index
arithmetic, and the resize through `tf.image.resize`, because `keras.ops.image.resize` checks its size argument in
Python (``size[0] <= 0``), which a run-time size cannot answer. That one call is the only place model code names a
backend; it runs under the TensorFlow backend only, where both are the same half-pixel bilinear kernel.

Neither layer has weights, so a model runs at any size with the same weights.
"""

import keras
import numpy as np
from keras import ops


def adaptive_pool_matrix(length, bins):
    """Returns the (bins, length) float32 matrix whose row i averages bin i of an adaptive average pooling."""
    if length < 1 or bins < 1:
        raise ValueError(f"adaptive pooling needs length >= 1 and bins >= 1, got length={length}, bins={bins}")
    matrix = np.zeros((bins, length), np.float32)
    for i in range(bins):
        start = (i * length) // bins
        end = -((-(i + 1) * length) // bins)  # ceil((i + 1) * length / bins)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def _runtime_pool_matrix(length, bins, dtype):
    """`adaptive_pool_matrix` for a length known only at run time (a scalar tensor), from `keras.ops`."""
    index = ops.expand_dims(ops.arange(bins, dtype="int32"), 1)  # (bins, 1)
    position = ops.expand_dims(ops.arange(length, dtype="int32"), 0)  # (1, length)
    start = (index * length) // bins
    end = -((-(index + 1) * length) // bins)
    inside = ops.logical_and(position >= start, position < end)
    return ops.cast(inside, dtype) / ops.cast(end - start, dtype)


def _is_static(*dims):
    return all(isinstance(d, int) for d in dims)


def spatial_size(x):
    """(height, width) of an NHWC tensor: Python ints where known when traced, scalar tensors otherwise."""
    shape = ops.shape(x)
    return shape[1], shape[2]


def resize_images(x, height, width, interpolation="bilinear"):
    """Resizes NHWC `x` to (height, width) (ints or run-time scalars) with half-pixel centres, no antialiasing."""
    if _is_static(height, width):
        return ops.image.resize(x, (int(height), int(width)), interpolation=interpolation, antialias=False)
    import tensorflow as tf  # Only reached under the TensorFlow backend: see the module docstring.

    return tf.image.resize(x, tf.stack([height, width]), method=interpolation, antialias=False)


@keras.saving.register_keras_serializable(package="contextnet_tf")
class Resize(keras.layers.Layer):
    """Resizes an NHWC tensor to a reference tensor's spatial size, or by an integer divisor.

    Call it on ``[x, reference]`` (output: x's channels at reference's height and width), or, with ``divisor=f``,
    on ``x`` alone (output: ceil(H/f) x ceil(W/f)). Half-pixel centres (`keras.ops.image.resize`).
    """

    def __init__(self, divisor=None, interpolation="bilinear", **kwargs):
        super().__init__(**kwargs)
        self.divisor = None if divisor is None else int(divisor)
        self.interpolation = interpolation

    def _target(self, inputs):
        if self.divisor is None:
            if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
                raise ValueError(f"{self.name}: call Resize on [x, reference] or give it a divisor")
            return inputs[0], spatial_size(inputs[1])
        height, width = spatial_size(inputs)
        return inputs, (-(-height // self.divisor), -(-width // self.divisor))

    def call(self, inputs):
        x, (height, width) = self._target(inputs)
        x_height, x_width = spatial_size(x)
        if _is_static(height, width, x_height, x_width) and (x_height, x_width) == (height, width):
            return ops.cast(x, self.compute_dtype)
        return ops.cast(resize_images(x, height, width, self.interpolation), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        if self.divisor is None:
            x_shape, ref_shape = input_shape
            return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])
        sizes = [None if d is None else -(-d // self.divisor) for d in input_shape[1:3]]
        return (input_shape[0], *sizes, input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(divisor=self.divisor, interpolation=self.interpolation)
        return config


@keras.saving.register_keras_serializable(package="contextnet_tf")
class AdaptiveAveragePooling2D(keras.layers.Layer):
    """Adaptive average pooling of an NHWC tensor to (bins, bins), for any spatial size."""

    def __init__(self, bins, **kwargs):
        super().__init__(**kwargs)
        self.bins = int(bins)

    def call(self, inputs):
        if self.bins == 1:
            return ops.mean(inputs, axis=(1, 2), keepdims=True)
        height, width = spatial_size(inputs)
        if _is_static(height, width):
            rows = ops.convert_to_tensor(adaptive_pool_matrix(height, self.bins), dtype=inputs.dtype)
            cols = ops.convert_to_tensor(adaptive_pool_matrix(width, self.bins), dtype=inputs.dtype)
        else:
            rows = _runtime_pool_matrix(height, self.bins, inputs.dtype)
            cols = _runtime_pool_matrix(width, self.bins, inputs.dtype)
        pooled = ops.einsum("ph,bhwc->bpwc", rows, inputs)
        return ops.einsum("qw,bpwc->bpqc", cols, pooled)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.bins, self.bins, input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(bins=self.bins)
        return config


@keras.saving.register_keras_serializable(package="contextnet_tf")
class PartialInstanceNormalization(keras.layers.Layer):
    """Instance normalisation of the first ``round(fraction * channels)`` channels; the others pass unchanged.

    The normalised channels go through Keras' `GroupNormalization(groups=-1)` (per image and channel over H x W, then
    a learned scale and offset): IBN-Net's IBN-a split (Pan et al., ECCV 2018), where half of the channels keep the
    statistics that instance normalisation removes. Not in either paper (the off-paper ``fast_scnn-ibna`` variant).
    """

    def __init__(self, fraction=0.5, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        if not 0 < float(fraction) < 1:
            raise ValueError(f"PartialInstanceNormalization fraction must be in (0, 1), got {fraction!r}")
        self.fraction = float(fraction)
        self.epsilon = float(epsilon)
        self.norm = keras.layers.GroupNormalization(groups=-1, epsilon=self.epsilon, name="instance_norm")

    def normalised_channels(self, channels):
        return max(1, min(channels - 1, int(round(self.fraction * channels))))

    def build(self, input_shape):
        k = self.normalised_channels(input_shape[-1])
        self.norm.build((*input_shape[:-1], k))

    def call(self, inputs):
        k = self.normalised_channels(inputs.shape[-1])
        return ops.concatenate([self.norm(inputs[..., :k]), inputs[..., k:]], axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(fraction=self.fraction, epsilon=self.epsilon)
        return config
