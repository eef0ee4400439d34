"""The networks: shared layers and blocks, Fast-SCNN and ContextNet as their papers' tables, and `build_model`.

The lowest layer of the package: it imports Keras only.
"""

from contextnet_tf.models.segmenter import ABLATION_NAMES, MODEL_NAMES, build_model

__all__ = ["ABLATION_NAMES", "MODEL_NAMES", "build_model"]
