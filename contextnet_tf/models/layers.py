"""Two small custom layers the networks need, written with `keras.ops` only.

* `Resize`: bilinear (or nearest) resize to a fixed, static output size. The networks resize feature maps to the
  static size of another feature map (fusion units) or of the input (logits), which makes every input size work,
  including sizes that are not multiples of 32 (a 1/32 map of 1000 rows has 32 rows, and 4 x 32 != 125).
* `AdaptiveAveragePooling2D`: PSPNet-style adaptive average pooling to `bins x bins` for any static input size. Bin
  ``i`` of ``n`` over a length ``L`` averages rows ``floor(i*L/n)`` to ``ceil((i+1)*L/n)`` (the PyTorch
  `AdaptiveAvgPool2d` convention), so a 32x64 map pooled to 6x6 is exact, with overlapping windows where needed.
  It is computed as two small constant matrix products (rows, then columns), which every backend and every export
  path (SavedModel, TFLite, ONNX) supports, unlike `tf.image.resize`-with-area tricks or dynamic slicing.

Neither layer has weights, so a model built at one input size loads the weights of the same model built at another.
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


@keras.saving.register_keras_serializable(package="contextnet_tf")
class Resize(keras.layers.Layer):
    """Resizes an NHWC tensor to a static (height, width) with `keras.ops.image.resize` (half-pixel centres)."""

    def __init__(self, height, width, interpolation="bilinear", **kwargs):
        super().__init__(**kwargs)
        self.height = int(height)
        self.width = int(width)
        self.interpolation = interpolation

    def call(self, inputs):
        if inputs.shape[1] == self.height and inputs.shape[2] == self.width:
            return ops.cast(inputs, self.compute_dtype)
        resized = ops.image.resize(
            inputs, (self.height, self.width), interpolation=self.interpolation, antialias=False
        )
        return ops.cast(resized, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(height=self.height, width=self.width, interpolation=self.interpolation)
        return config


@keras.saving.register_keras_serializable(package="contextnet_tf")
class AdaptiveAveragePooling2D(keras.layers.Layer):
    """Adaptive average pooling of an NHWC tensor to (bins, bins), for any static spatial size."""

    def __init__(self, bins, **kwargs):
        super().__init__(**kwargs)
        self.bins = int(bins)

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        if height is None or width is None:
            raise ValueError(
                f"{self.name}: adaptive pooling needs a static spatial size, got shape {inputs.shape}; "
                "build the model with a fixed input_shape (resize images to it, as the exported signatures do)"
            )
        if self.bins == 1:
            return ops.mean(inputs, axis=(1, 2), keepdims=True)
        rows = ops.convert_to_tensor(adaptive_pool_matrix(height, self.bins), dtype=inputs.dtype)
        cols = ops.convert_to_tensor(adaptive_pool_matrix(width, self.bins), dtype=inputs.dtype)
        pooled = ops.einsum("ph,bhwc->bpwc", rows, inputs)
        return ops.einsum("qw,bpwc->bpqc", cols, pooled)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.bins, self.bins, input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(bins=self.bins)
        return config
