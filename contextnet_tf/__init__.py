"""contextnet_tf: ContextNet and Fast-SCNN in Keras 3 / TensorFlow."""

from contextnet_tf.deploy.folding import fold_batch_norm
from contextnet_tf.models import MODEL_NAMES, build_model

__version__ = "0.1.0"
__all__ = ["MODEL_NAMES", "build_model", "fold_batch_norm"]
