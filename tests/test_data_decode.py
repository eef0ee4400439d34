"""In-graph decoding checks: label values outside the table, truncated PNGs and size mismatches name the file."""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from contextnet_tf import data
from contextnet_tf.data import decode


def _png(array):
    return tf.constant(cv2.imencode(".png", array)[1].tobytes())


def test_maps_every_cityscapes_id_and_keeps_pixels_in_place():
    values = np.arange(34, dtype=np.uint8).reshape(2, 17)
    train_ids = decode.train_id_mapper("cityscapes")(tf.constant(values), "x.png").numpy()
    assert train_ids.dtype == np.int32
    assert np.array_equal(train_ids, data.id_to_train_id("cityscapes")[values])
    assert train_ids[0, 7] == 0 and train_ids[1, 9] == 13 and train_ids[0, 0] == 255  # road, car (26), unlabeled


def test_camvid_void_becomes_ignore():
    train_ids = decode.train_id_mapper("camvid")(tf.constant([[0, 10, 11]], tf.uint8), "x.png").numpy()
    assert train_ids.tolist() == [[0, 10, 255]]


@pytest.mark.parametrize("name,bad", [("cityscapes", 34), ("cityscapes", 255), ("camvid", 12)])
def test_values_outside_the_table_raise_with_the_file_name(name, bad):
    values = tf.constant([[7, bad], [bad, 1]], tf.uint8)
    mapper = tf.function(decode.train_id_mapper(name))
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        mapper(values, tf.constant("gtFine/val/x/bad_gtFine_labelIds.png"))
    message = str(error.value)
    assert f"label values outside the {name} label table" in message
    assert "gtFine/val/x/bad_gtFine_labelIds.png" in message and f"[{bad}]" in message


def test_decode_example_shapes_and_unlabelled_examples():
    image = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    label = np.full((6, 9), 26, np.uint8)
    decoded_image, values = decode.decode_example(_png(image), _png(label), "a.png", "b.png")
    assert np.array_equal(decoded_image.numpy(), image[..., ::-1])  # cv2 wrote BGR; PNG holds RGB
    assert values.dtype == tf.uint8 and np.array_equal(values.numpy(), label)
    _, values = decode.decode_example(_png(image), None, "a.png", "a.png")
    assert values.shape == (6, 9) and not values.numpy().any()  # id 0 = unlabeled -> ignore


def test_truncated_png_raises_with_the_file_name():
    data_bytes = cv2.imencode(".png", np.zeros((20, 20, 3), np.uint8))[1].tobytes()
    decode_fn = tf.function(decode.decode_example)
    label = _png(np.zeros((20, 20), np.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="no IEND chunk at the end.*leftImg8bit/x_leftImg8bit"):
        decode_fn(tf.constant(data_bytes[:-20]), label, "leftImg8bit/x_leftImg8bit.png", "gt.png")
    with pytest.raises(tf.errors.InvalidArgumentError, match="no IEND chunk at the end.*tiny_label"):
        decode_fn(tf.constant(data_bytes), tf.constant(b"\x89P"), "img.png", "tiny_label.png")


def test_size_mismatch_raises_with_both_names():
    decode_fn = tf.function(decode.decode_example)
    with pytest.raises(tf.errors.InvalidArgumentError, match="sizes differ.*lbl.png.*img.png"):
        decode_fn(_png(np.zeros((4, 5, 3), np.uint8)), _png(np.zeros((4, 6), np.uint8)), "img.png", "lbl.png")
