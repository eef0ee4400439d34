"""Input pipelines: Cityscapes (files or tensorflow-datasets), CamVid and a built-in synthetic city.

    from contextnet_tf import data
    info = data.get_info("cityscapes")
    ds = data.make_dataset("cityscapes", "/data/cityscapes", "train", training=True, batch_size=12,
                           crop_size=(1024, 1024))

See docs/data.md for layouts, augmentation and the input benchmark.
"""

from contextnet_tf.data.augment import AugmentConfig
from contextnet_tf.data.files import DataError, list_examples, read_png_header, read_train_ids, verify_examples
from contextnet_tf.data.labels import (
    CAMVID_CLASSES,
    CITYSCAPES_LABELS,
    DATASET_NAMES,
    IGNORE_LABEL,
    PAPERS_DATASET,
    DatasetInfo,
    colorize,
    get_info,
    id_to_train_id,
)
from contextnet_tf.data.pipeline import make_dataset
from contextnet_tf.data.synthetic import DEFAULT_IMAGE_SIZE, draw_scene, generate_synthetic_city

__all__ = [
    "AugmentConfig",
    "CAMVID_CLASSES",
    "CITYSCAPES_LABELS",
    "DATASET_NAMES",
    "PAPERS_DATASET",
    "DEFAULT_IMAGE_SIZE",
    "DataError",
    "DatasetInfo",
    "IGNORE_LABEL",
    "colorize",
    "draw_scene",
    "generate_synthetic_city",
    "get_info",
    "id_to_train_id",
    "list_examples",
    "make_dataset",
    "read_png_header",
    "read_train_ids",
    "verify_examples",
]
