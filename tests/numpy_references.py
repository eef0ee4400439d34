"""NumPy references shared by test modules (not a test module itself): the computations the layers must match,
written independently of Keras."""

import numpy as np


def images_in_different_light(rng, shape):
    """float32 batch `shape` (B, H, W, C) whose images and channels differ widely in contrast (x0.1-10) and offset."""
    batch, channels = shape[0], shape[-1]
    x = (rng.normal(0.0, 1.0, shape) * rng.uniform(0.1, 10.0, (batch, 1, 1, channels))
         + rng.normal(0.0, 5.0, (batch, 1, 1, channels)))
    return x.astype(np.float32)


def instance_norm(x, gamma, beta, epsilon):
    """Each image and channel normalised over its own pixels (biased variance), then scaled and offset."""
    mean, var = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * gamma + beta
