"""contextnet_tf: ContextNet and Fast-SCNN in Keras 3 / TensorFlow.

The public API (each documented where it lives):

* `build_model(name, ...)` and `load_model(path)`: the networks, as `SegmentationModel`s that carry their recipe
  (variant, classes, width, input scale, the dataset's class names and palette) in their Keras config;
* `fold_batch_norm(model)`: the inference model with batch norm merged into the convolutions;
* `Predictor(model)` and `predict_files(...)`: labels and probabilities of arrays and image files, at the model's own
  input scale;
* `evaluate(model, dataset, info)`: mIoU and per-class IoU from a confusion matrix;
* `export(model, path, fmt)`: SavedModel, TFLite or ONNX that run the model as it was measured.
"""

from contextnet_tf.deploy.export import export
from contextnet_tf.deploy.folding import fold_batch_norm
from contextnet_tf.evaluation.metrics import evaluate
from contextnet_tf.evaluation.prediction import Predictor, predict_files
from contextnet_tf.models import MODEL_NAMES, SegmentationModel, build_model, load_model

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
