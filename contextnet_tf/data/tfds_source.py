"""Cityscapes through tensorflow-datasets: the `cityscapes/semantic_segmentation` builder on the official zip files.

The builder never downloads Cityscapes (it needs a login); it reads the zips from a manual directory:
``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip`` (``label_source="fine"``), or for the coarse
config ``semantic_segmentation_extra`` also ``leftImg8bit_trainextra.zip`` and ``gtCoarse.zip``. It prepares
TFRecords once under ``tfds_data_dir`` and re-encodes every image and label as PNG. We read the PNG bytes without
letting tfds decode them (`tfds.decode.SkipDecoding`), so decoding and augmentation run in the same parallel map as
for the file reader and both sources give identical tensors.

The builder's features are fixed to 2048x1024 images, so the zips must hold full-size Cityscapes images.
"""

import importlib.util
import os

import tensorflow_datasets as tfds

from contextnet_tf.data.files import DataError

TFDS_NAMES = {"fine": "cityscapes/semantic_segmentation", "coarse": "cityscapes/semantic_segmentation_extra"}
TFDS_SPLITS = {"train": "train", "val": "validation", "test": "test", "train_extra": "train_extra"}
REQUIRED_ZIPS = {
    "fine": ("leftImg8bit_trainvaltest.zip", "gtFine_trainvaltest.zip"),
    "coarse": ("leftImg8bit_trainvaltest.zip", "leftImg8bit_trainextra.zip", "gtCoarse.zip"),
}
IMAGE_SIZE = (1024, 2048)


def prepare(manual_dir, tfds_data_dir=None, label_source="fine"):
    """Builds (once) the tfds Cityscapes dataset from the official zips and returns its builder.

    Args:
        manual_dir: folder holding the official zip files.
        tfds_data_dir: where tfds writes the prepared dataset (default ``{manual_dir}/tfds``).
        label_source: ``fine`` (config semantic_segmentation) or ``coarse`` (semantic_segmentation_extra: gtCoarse
            labels and the train_extra split).

    Returns:
        The prepared `tfds.core.DatasetBuilder`.

    Raises:
        files.DataError: a zip is missing (named, with the folder).
    """
    if label_source not in TFDS_NAMES:
        raise ValueError(f"label_source must be one of {tuple(TFDS_NAMES)}, got {label_source!r}")
    manual_dir = os.fspath(manual_dir)
    tfds_data_dir = os.fspath(tfds_data_dir or os.path.join(manual_dir, "tfds"))
    if importlib.util.find_spec("importlib_resources") is None:
        raise ModuleNotFoundError(
            "tensorflow-datasets imports `importlib_resources` when it prepares a dataset but does not declare it on "
            "Python >= 3.9 (tensorflow/datasets#11212); install it with `pip install importlib_resources`"
        )
    missing = [z for z in REQUIRED_ZIPS[label_source] if not os.path.isfile(os.path.join(manual_dir, z))]
    if missing:
        raise DataError(f"tfds {TFDS_NAMES[label_source]} needs the official Cityscapes zips {', '.join(missing)} "
                        f"in {manual_dir!r} (download them from https://www.cityscapes-dataset.com)")
    builder = tfds.builder(TFDS_NAMES[label_source], data_dir=tfds_data_dir)
    # try_download_gcs=False: never look for a prepared copy on Google Cloud Storage (this must work offline).
    config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
    builder.download_and_prepare(download_config=config)
    return builder


def encoded_examples(builder, split):
    """The examples of ``split`` as a dataset of (image PNG bytes, label PNG bytes, image id), in tfds order.

    Args:
        builder: from `prepare`.
        split: ``train``, ``val``, ``test`` or ``train_extra`` (coarse config only); several joined by ``+``.

    Returns:
        (`tf.data.Dataset`, number of examples).
    """
    parts = split.split("+")
    for part in parts:
        if part not in TFDS_SPLITS or TFDS_SPLITS[part] not in builder.info.splits:
            raise ValueError(f"split {part!r} is not in tfds {builder.info.full_name} "
                             f"(has {', '.join(builder.info.splits)})")
    tfds_split = "+".join(TFDS_SPLITS[part] for part in parts)
    skip = tfds.decode.SkipDecoding()
    ds = builder.as_dataset(
        split=tfds_split,
        shuffle_files=False,
        decoders={"image_left": skip, "segmentation_label": skip},
        read_config=tfds.ReadConfig(add_tfds_id=False),
    )
    num_examples = sum(builder.info.splits[TFDS_SPLITS[part]].num_examples for part in parts)

    def fields(example):
        return example["image_left"], example["segmentation_label"], example["image_id"]

    return ds.map(fields), num_examples
