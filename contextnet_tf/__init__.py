"""contextnet_tf: ContextNet and Fast-SCNN in Keras 3 / TensorFlow.

The public API (each documented where it lives):

* `build_model(name, ...)` and `load_model(path)`: the networks, as `SegmentationModel`s that carry their recipe
  (variant, classes, width, input scale, the dataset's class names and palette) in their Keras config;
* `fold_batch_norm(model)`: the inference model with batch norm merged into the convolutions;
* `Predictor(model)` and `predict_files(...)`: labels and probabilities of arrays and image files, at the model's own
  input scale;
* `evaluate(model, dataset, info)`: mIoU and per-class IoU from a confusion matrix;
* `export(model, path, fmt)`: SavedModel, TFLite or ONNX that run the model as it was measured.

Importing the package before TensorFlow turns on TensorFlow's oneDNN CPU kernels (``TF_ENABLE_ONEDNN_OPTS=1``)
unless the variable is already set: TensorFlow enables them by default only on some CPUs, and on this project's
2-core AMD EPYC they make a training step 1.3-1.6x faster (docs/training.md, "Training speed"). The variable is read
when TensorFlow is imported, so a program that imports TensorFlow first keeps TensorFlow's default;
`contextnet_tf.environment.onednn_enabled()` tells which one a process got, and every benchmark records it. Set
``TF_ENABLE_ONEDNN_OPTS=0`` to keep TensorFlow's own kernels.

Where oneDNN is on, the package also turns off Grappler's "remapping" (the graph pass that fuses a convolution with
its bias and activation): oneDNN's fused convolution with ReLU6 made the folded cn14 2.2x slower at 1024x2048 than
TensorFlow's own kernels on this CPU, and without the pass both networks run faster than with either (docs/benchmarks.md,
"oneDNN"). `environment()` records the pass's state (``tf_remapping``).
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # before anything imports TensorFlow; see the docstring

from contextnet_tf.deploy.export import export  # noqa: E402
from contextnet_tf.deploy.folding import fold_batch_norm  # noqa: E402
from contextnet_tf.evaluation.metrics import evaluate  # noqa: E402
from contextnet_tf.evaluation.prediction import Predictor, predict_files  # noqa: E402
from contextnet_tf.models import MODEL_NAMES, SegmentationModel, build_model, load_model  # noqa: E402



def _tune_tensorflow():
    """Grappler's remapping off where TensorFlow runs oneDNN's kernels (see the module docstring)."""
    from contextnet_tf.environment import onednn_enabled

    if onednn_enabled():
        import tensorflow as tf

        tf.config.optimizer.set_experimental_options({"remapping": False})


_tune_tensorflow()

__version__ = "0.1.0"
__all__ = [
    "MODEL_NAMES",
    "Predictor",
    "SegmentationModel",
    "build_model",
    "evaluate",
    "export",
    "fold_batch_norm",
    "load_model",
    "predict_files",
]
