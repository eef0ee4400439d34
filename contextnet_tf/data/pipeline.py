"""`make_dataset`: the tf.data input pipeline of every dataset, for training and for evaluation.

Order of operations (training): file list -> shard per input pipeline -> [decode -> cache] -> shuffle -> repeat ->
number the examples -> one parallel map that reads, decodes and augments with a stateless seed derived from
(seed, input pipeline, example number) -> batch -> prefetch. Because the per-example seed depends on the example's
number and not on which thread ran it, a seeded pipeline gives the same examples however many threads it uses; with
``deterministic=True`` it also gives them in the same order.

Images leave the pipeline as float32 RGB in [0, 255]: the models normalise inside (one place for normalisation).
Labels are int32 train ids with 255 as ignore.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from contextnet_tf.data import augment as augment_lib
from contextnet_tf.data import decode, files, labels, tfds_source

SOURCES = ("files", "tfds")
# Shuffle buffer for tfds examples, which are encoded images (about 2 MB each) rather than file names.
TFDS_SHUFFLE_BUFFER = 128
# Folded into (pipeline seed, batch index) for the boxes of `augment.cutmix`.
CUTMIX_SEED = 3
# Folded in the same way for the classes of `augment.classmix`.
CLASSMIX_SEED = 4


def make_dataset(
    name,
    data_dir,
    split,
    *,
    training,
    batch_size,
    crop_size=None,
    seed=None,
    deterministic=False,
    cache=False,
    shuffle=None,
    repeat=None,
    input_context=None,
    scale_range=augment_lib.PAPER_SCALE_RANGE,
    label_source="fine",
    source="files",
    augment_config=None,
    tfds_data_dir=None,
):
    """Builds the input pipeline of one split.

    Args:
        name: ``cityscapes``, ``camvid`` or ``synthetic`` (the synthetic city is read like Cityscapes).
        data_dir: dataset root (for ``source="tfds"``: the folder holding the official Cityscapes zips).
        split: split name, or several joined by ``+`` (see `files.list_examples`).
        training: True for random scale, crop, flip and colour jitter (see `augment.AugmentConfig`), shuffling and
            repeating; False for full images without augmentation in a fixed order.
        batch_size: global batch size; divided by the number of replicas when ``input_context`` is given.
        crop_size: (height, width) or an int for square crops; training only (evaluation uses full images). None
            crops to the dataset's image size.
        seed: int for reproducible shuffling and augmentation; None draws one at random.
        deterministic: keep the element order fixed (slower); evaluation is always deterministic.
        cache: cache decoded examples in memory (True) or in files with this path prefix (a str). A decoded
            Cityscapes example takes 8 MB.
        shuffle: shuffle examples (default: ``training``).
        repeat: repeat forever (default: ``training``).
        input_context: `tf.distribute.InputContext`: read only this input pipeline's shard of the files and batch per
            replica, for `tf.distribute.Strategy.distribute_datasets_from_function`.
        scale_range: (min, max) of the random scale.
        label_source: ``fine`` or ``coarse`` (Cityscapes layout; ``train_extra`` is always coarse).
        source: ``files`` (the official folder layout) or ``tfds`` (the tensorflow-datasets Cityscapes builder on
            the official zips in ``data_dir``; Cityscapes layout only).
        augment_config: `augment.AugmentConfig` for the other augmentation ranges (its scale range is replaced by
            ``scale_range``).
        tfds_data_dir: where tfds prepares its copy (default ``{data_dir}/tfds``).

    Returns:
        `tf.data.Dataset` of (images float32 [B, H, W, 3] in [0, 255], labels int32 [B, H, W]).

    Raises:
        files.DataError: missing, unpaired or malformed files (named in the message), before any training.
    """
    info = labels.get_info(name)
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    shuffle = training if shuffle is None else shuffle
    repeat = training if repeat is None else repeat
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    config = dataclasses.replace(augment_config or augment_lib.AugmentConfig(), scale_range=tuple(scale_range))

    if source == "files":
        ds, num_examples, image_size, load = _file_source(name, data_dir, split, label_source)
    else:
        if name == "camvid":
            raise ValueError("source='tfds' reads the Cityscapes zips; CamVid has only the files source")
        builder = tfds_source.prepare(data_dir, tfds_data_dir, label_source)
        ds, num_examples = tfds_source.encoded_examples(builder, split)
        image_size, load = tfds_source.IMAGE_SIZE, lambda image, label, key: (image, label, key, key)

    crop_size = _crop_size(crop_size if training else None, image_size)
    pipelines, pipeline_id, batch = 1, 0, batch_size
    if input_context is not None:
        pipelines, pipeline_id = input_context.num_input_pipelines, input_context.input_pipeline_id
        batch = input_context.get_per_replica_batch_size(batch_size)
        if pipelines > 1:  # File names (or, for tfds, encoded records), before anything is decoded.
            ds = ds.shard(pipelines, pipeline_id)
            num_examples = len(range(pipeline_id, num_examples, pipelines))

    to_train_ids = decode.train_id_mapper(name)

    def decoded(*element):
        image_png, label_png, image_key, label_key = load(*element)
        image, values = decode.decode_example(image_png, label_png, image_key, label_key)
        return image, values, label_key

    def already_decoded(image, values, key):
        return image, values, key

    read = decoded
    if cache:
        ds = ds.map(decoded, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.cache(cache if isinstance(cache, str) else "")
        read = already_decoded
    if shuffle:
        buffer = TFDS_SHUFFLE_BUFFER if source == "tfds" and not cache else num_examples
        ds = ds.shuffle(max(1, min(buffer, num_examples)), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.enumerate()
    base_seed = tf.constant(seed * 65536 + pipeline_id, tf.int64)

    def example(index, element):
        image, values, key = read(*element)
        if training:
            return augment_lib.augment(
                image,
                values,
                lambda v: to_train_ids(v, key),
                tf.stack([base_seed, index]),
                crop_size,
                config,
                info.mean_rgb,
            )
        image = tf.ensure_shape(tf.cast(image, tf.float32), [*image_size, 3])
        return image, tf.ensure_shape(to_train_ids(values, key), image_size)

    ds = ds.map(example, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch, drop_remainder=training)

    def batch_level(ds, fold, mix):  # seeded from (pipeline seed, batch number): the examples' draws do not change
        def apply(index, batch_element):
            return mix(*batch_element, tf.random.experimental.stateless_fold_in(tf.stack([base_seed, index]), fold))

        return ds.enumerate().map(apply, num_parallel_calls=tf.data.AUTOTUNE)

    if training and config.cutmix > 0:
        ds = batch_level(ds, CUTMIX_SEED, lambda x, y, s: augment_lib.cutmix(x, y, s, config.cutmix))
    if training and config.classmix > 0:  # after CutMix when both are on
        ds = batch_level(ds, CLASSMIX_SEED,
                         lambda x, y, s: augment_lib.classmix(x, y, s, config.classmix, info.num_classes))
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = bool(deterministic or not training)
    return ds.with_options(options)


def _file_source(name, data_dir, split, label_source):
    examples = files.list_examples(name, data_dir, split, label_source=label_source)
    unlabelled = [image for image, label in examples if label is None]
    if unlabelled and len(unlabelled) != len(examples):
        raise files.DataError(f"split {split!r} mixes labelled and unlabelled images (e.g. {unlabelled[0]})")
    images = tf.constant([image for image, _ in examples])
    if unlabelled:
        ds = tf.data.Dataset.from_tensor_slices((images,))

        def load(image_path):
            return tf.io.read_file(image_path), None, image_path, image_path

    else:
        ds = tf.data.Dataset.from_tensor_slices((images, tf.constant([label for _, label in examples])))

        def load(image_path, label_path):
            return tf.io.read_file(image_path), tf.io.read_file(label_path), image_path, label_path

    return ds, len(examples), files.image_size(examples), load


def _crop_size(crop_size, image_size):
    if crop_size is None:
        return tuple(image_size)
    if isinstance(crop_size, int):
        crop_size = (crop_size, crop_size)
    crop_size = tuple(int(c) for c in crop_size)
    if len(crop_size) != 2 or min(crop_size) < 1:
        raise ValueError(f"crop_size must be a positive int or (height, width), got {crop_size}")
    return crop_size
