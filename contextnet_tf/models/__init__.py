"""The networks: shared layers and blocks, Fast-SCNN and ContextNet as their papers' tables, and `build_model`.

The lowest layer of the package: it imports Keras (and NumPy) only.
"""

from contextnet_tf.models.segmenter import (
    ABLATION_NAMES,
    MODEL_NAMES,
    OFF_PAPER_NAMES,
    SegmentationModel,
    build_model,
    copy_weights_by_name,
    dataset_recipe,
    load_model,
    logits_only,
    recipe,
)

__all__ = [
    "ABLATION_NAMES",
    "MODEL_NAMES",
    "OFF_PAPER_NAMES",
    "SegmentationModel",
    "build_model",
    "copy_weights_by_name",
    "dataset_recipe",
    "load_model",
    "logits_only",
    "recipe",
]
