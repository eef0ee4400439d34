"""Graph-side decoding: PNG bytes to tensors, stored label values to train ids, with errors that name the file.

The file checks of `files.list_examples` run before training; these in-graph checks are the second line for what a
header cannot show (label values) and for data that changed or came from tensorflow-datasets. A failed check raises
`tf.errors.InvalidArgumentError` whose message holds the file (or tfds image id) and the offending values.
"""

import numpy as np
import tensorflow as tf

from contextnet_tf.data import labels as labels_lib
from contextnet_tf.data.files import PNG_IEND


def _check_png(data, source):
    """Asserts that encoded PNG ``data`` ends with the IEND chunk (a cheap test for truncation)."""
    size = tf.strings.length(data)
    tail = tf.cond(
        size >= len(PNG_IEND),
        lambda: tf.strings.substr(data, size - len(PNG_IEND), len(PNG_IEND)),
        lambda: tf.constant(b""),
    )
    message = "truncated or corrupt PNG (no IEND chunk at the end):"
    return tf.debugging.Assert(tf.equal(tail, PNG_IEND), [message, source])


def decode_example(image_png, label_png, image_source, label_source):
    """Decodes one example.

    Args:
        image_png: string scalar, an encoded 8-bit RGB PNG.
        label_png: string scalar, an encoded 8-bit grey PNG of stored label values, or None for an unlabelled
            example (its label becomes all zeros, the Cityscapes id of `unlabeled`, which maps to ignore).
        image_source, label_source: string scalars naming the files in error messages (paths or tfds image id).

    Returns:
        (image uint8 [H, W, 3], label values uint8 [H, W]).
    """
    checks = [_check_png(image_png, image_source)]
    if label_png is not None:
        checks.append(_check_png(label_png, label_source))
    with tf.control_dependencies(checks):
        image = tf.io.decode_png(image_png, channels=3)
        if label_png is None:
            return image, tf.zeros(tf.shape(image)[:2], tf.uint8)
        label = tf.io.decode_png(label_png, channels=1)[..., 0]
    same = tf.debugging.Assert(
        tf.reduce_all(tf.equal(tf.shape(label), tf.shape(image)[:2])),
        ["label and image sizes differ:", label_source, tf.shape(label), image_source, tf.shape(image)],
    )
    with tf.control_dependencies([same]):
        return tf.identity(image), tf.identity(label)


def train_id_mapper(name):
    """Returns ``f(label_values, source) -> train ids``: int32, 255 as ignore, failing on values not in the table.

    The check is one `reduce_max`: every table here knows exactly the values 0..K-1 (Cityscapes 0-33, CamVid 0-11),
    so a value is in the table iff it is below K. The failure message names ``source`` and the unknown values.

    Args:
        name: dataset name; selects the table of `labels.id_to_train_id`.
    """
    table = labels_lib.id_to_train_id(name)
    known = int(np.argmax(table == labels_lib.UNKNOWN_ID))
    if known == 0 or np.any(table[known:] != labels_lib.UNKNOWN_ID):
        raise ValueError(f"the {name} label table must know exactly the values 0..K-1")
    table = tf.constant(table)

    def to_train_ids(values, source):
        ok = tf.reduce_max(values) < known

        def fail():
            bad = tf.unique(tf.boolean_mask(tf.reshape(values, [-1]), tf.reshape(values, [-1]) >= known)).y
            message = f"label values outside the {name} label table (0-{known - 1}) in"
            with tf.control_dependencies([tf.debugging.Assert(False, [message, source, "values:", bad])]):
                return tf.identity(ok)

        checked = tf.cond(ok, lambda: ok, fail)
        with tf.control_dependencies([checked]):
            return tf.gather(table, tf.cast(values, tf.int32))

    return to_train_ids
