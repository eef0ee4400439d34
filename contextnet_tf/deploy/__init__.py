"""Deployment: batch-norm folding, SavedModel / TFLite / ONNX export and their fresh-process checks, and timing.

Imports `contextnet_tf.models`, `contextnet_tf.data` and `contextnet_tf.evaluation`.
"""
