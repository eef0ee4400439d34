"""Evaluation (confusion-matrix metrics) and prediction (any size, test-time augmentation, PNG outputs).

Imports `contextnet_tf.models` and `contextnet_tf.data` only.
"""
