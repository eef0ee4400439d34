"""File listing and the checks before training: layouts, pairing, PNG headers, sizes, decodability, label values."""

import os
import shutil

import cv2
import numpy as np
import pytest

from contextnet_tf import data
from contextnet_tf.data import files

SIZE = (32, 64)
CAMVID_DIR = os.environ.get("CONTEXTNET_CAMVID_DIR")


def _write(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return str(path)


def _cityscapes(root, split="train", gt="gtFine", cities=("aachen", "bonn"), per_city=2, size=SIZE):
    pairs = []
    rng = np.random.default_rng(0)
    for city in cities:
        for i in range(per_city):
            stem = f"{city}_{i:06d}_000019"
            image = _write(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                           rng.integers(0, 256, (*size, 3), dtype=np.uint8))
            label = _write(root / gt / split / city / f"{stem}_{gt}_labelIds.png",
                           rng.integers(0, 34, size, dtype=np.uint8))
            pairs.append((image, label))
    return sorted(pairs)


def _camvid(root, split="train", names=("0001TP_006690", "Seq05VD_f00000"), size=(36, 48)):
    pairs = []
    for name in names:
        image = _write(root / split / f"{name}.png", np.full((*size, 3), 90, np.uint8))
        label = _write(root / f"{split}annot" / f"{name}.png", np.full(size, 11, np.uint8))
        pairs.append((image, label))
    return pairs


def test_cityscapes_layout_pairs_in_sorted_order(tmp_path):
    pairs = _cityscapes(tmp_path)
    assert data.list_examples("synthetic", tmp_path, "train") == pairs
    assert os.path.basename(pairs[0][1]) == "aachen_000000_000019_gtFine_labelIds.png"


def test_coarse_labels_train_extra_and_joined_splits(tmp_path):
    fine = _cityscapes(tmp_path, "train")
    coarse = _cityscapes(tmp_path, "train", gt="gtCoarse")
    extra = _cityscapes(tmp_path, "train_extra", gt="gtCoarse", cities=("erlangen",))
    assert data.list_examples("synthetic", tmp_path, "train", label_source="coarse") == coarse
    # train_extra only has coarse labels, whatever label_source says.
    assert data.list_examples("synthetic", tmp_path, "train_extra") == extra
    assert data.list_examples("synthetic", tmp_path, "train+train_extra") == fine + extra
    with pytest.raises(ValueError, match="test split has no coarse labels"):
        data.list_examples("synthetic", tmp_path, "test", label_source="coarse")


def test_test_split_without_labels_loads_with_none(tmp_path):
    pairs = _cityscapes(tmp_path, "test")
    shutil.rmtree(tmp_path / "gtFine")
    assert data.list_examples("synthetic", tmp_path, "test") == [(image, None) for image, _ in pairs]
    # Only the test split may come without labels.
    _cityscapes(tmp_path, "val")
    shutil.rmtree(tmp_path / "gtFine")
    with pytest.raises(data.DataError, match="synthetic data not found: expected .*gtFine_labelIds.png"):
        data.list_examples("synthetic", tmp_path, "val")


def test_camvid_layout(tmp_path):
    pairs = _camvid(tmp_path, "val")
    assert data.list_examples("camvid", tmp_path, "val", validate=False) == sorted(pairs)


def test_missing_and_empty_dirs_say_what_was_expected_and_where(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(data.DataError) as error:
        data.list_examples("cityscapes", missing, "train")
    message = str(error.value)
    assert str(missing) in message and "leftImg8bit/train/{city}/{city}_*_leftImg8bit.png" in message
    assert "gtFine/train/{city}/{city}_*_gtFine_labelIds.png" in message and "cityscapes-dataset.com" in message
    with pytest.raises(data.DataError, match=r"camvid data not found: expected val/\*.png with valannot"):
        data.list_examples("camvid", missing, "val")
    os.makedirs(tmp_path / "leftImg8bit" / "val")
    with pytest.raises(data.DataError, match="holds no images"):
        data.list_examples("synthetic", tmp_path, "val")
    with pytest.raises(ValueError, match="unknown camvid split 'train_extra'"):
        data.list_examples("camvid", tmp_path, "train_extra")


def test_unpaired_files_are_named(tmp_path):
    pairs = _cityscapes(tmp_path)
    os.remove(pairs[0][1])
    os.remove(pairs[3][0])
    with pytest.raises(data.DataError) as error:
        data.list_examples("synthetic", tmp_path, "train")
    message = str(error.value)
    assert message.startswith("2 unpaired files")
    assert f"image {pairs[0][0]} has no label (expected {pairs[0][1]})" in message
    assert f"label {pairs[3][1]} has no image (expected {pairs[3][0]})" in message


def test_camvid_unpaired(tmp_path):
    pairs = _camvid(tmp_path)
    os.remove(pairs[1][1])
    with pytest.raises(data.DataError, match=f"image {pairs[1][0]} has no label"):
        data.list_examples("camvid", tmp_path, "train")


def test_truncated_and_non_png_files_are_named(tmp_path):
    pairs = _cityscapes(tmp_path)
    with open(pairs[1][0], "rb") as f:
        content = f.read()
    with open(pairs[1][0], "wb") as f:
        f.write(content[: len(content) // 2])
    with open(pairs[2][1], "wb") as f:
        f.write(b"GIF89a not a png at all")
    with pytest.raises(data.DataError) as error:
        data.list_examples("synthetic", tmp_path, "train")
    message = str(error.value)
    assert f"{pairs[1][0]} is truncated or corrupt" in message
    assert f"{pairs[2][1]} is not a PNG file" in message


def test_wrong_sizes_and_channels_are_named(tmp_path):
    pairs = _cityscapes(tmp_path)
    _write(pairs[0][1], np.zeros((SIZE[0], SIZE[1] + 2), np.uint8))  # label size differs from its image
    _write(pairs[1][0], np.zeros((*SIZE, 4), np.uint8))  # RGBA image
    _write(pairs[2][1], np.zeros((*SIZE, 3), np.uint8))  # RGB label
    with pytest.raises(data.DataError) as error:
        data.list_examples("synthetic", tmp_path, "train")
    message = str(error.value)
    assert f"label {pairs[0][1]} is 66x32 (WxH) but its image {pairs[0][0]} is 64x32" in message
    assert f"image {pairs[1][0]} is 8-bit RGBA; expected 8-bit RGB" in message
    assert f"label {pairs[2][1]} is 8-bit RGB; expected 8-bit grey" in message


def test_images_of_a_split_share_one_size_and_real_datasets_their_native_size(tmp_path):
    pairs = _cityscapes(tmp_path)
    _write(pairs[3][0], np.zeros((16, 32, 3), np.uint8))
    _write(pairs[3][1], np.zeros((16, 32), np.uint8))
    with pytest.raises(data.DataError, match="must share one size; found 64x32 .*, 32x16"):
        data.list_examples("synthetic", tmp_path, "train")
    _cityscapes(tmp_path / "real", "val", cities=("lindau",), per_city=1)
    with pytest.raises(data.DataError, match="lindau_000000_000019_leftImg8bit.png is 64x32 .*expected 2048x1024"):
        data.list_examples("cityscapes", tmp_path / "real", "val")


def test_verify_decodes_everything_and_checks_label_values(tmp_path):
    pairs = _cityscapes(tmp_path)
    data.verify_examples("synthetic", pairs)  # all values 0..33: fine
    _write(pairs[0][1], np.full(SIZE, 34, np.uint8))
    _write(pairs[1][1], np.array([[7, 200], [255, 8]], np.uint8).repeat(16, 0).repeat(32, 1))
    with open(pairs[2][0], "r+b") as f:  # corrupt the compressed data but keep the IEND chunk
        f.seek(60)
        f.write(b"\xff" * 40)
    with pytest.raises(data.DataError) as error:
        data.verify_examples("synthetic", pairs, num_threads=2)
    message = str(error.value)
    assert f"label {pairs[0][1]} has values [34] that are not in the synthetic label table" in message
    assert f"label {pairs[1][1]} has values [200, 255]" in message
    assert f"image {pairs[2][0]} is corrupt: its PNG data cannot be decoded" in message
    assert message.startswith("3 bad files")


def test_verify_cache_skips_files_checked_before_and_rechecks_changed_ones(tmp_path):
    pairs = _cityscapes(tmp_path / "data")
    cache = str(tmp_path / "cache" / "verified.json")
    assert data.verify_examples("synthetic", pairs, cache=cache) == {"files": 8, "decoded": 8, "cached": 0}
    assert data.verify_examples("synthetic", pairs, cache=cache) == {"files": 8, "decoded": 0, "cached": 8}
    # Labels are checked against a dataset's table: the same files for another dataset are checked again.
    # (CamVid's table has 12 values, so the Cityscapes ids 0..33 fail there.)
    with pytest.raises(data.DataError, match="not in the camvid label table"):
        data.verify_examples("camvid", pairs, cache=cache)
    # A file rewritten (new size and time) is decoded again, and bad bytes in its middle are found.
    raw = bytearray(open(pairs[0][0], "rb").read())
    raw[len(raw) // 2: len(raw) // 2 + 8] = b"\x00" * 8
    with open(pairs[0][0], "wb") as f:
        f.write(raw)
    os.utime(pairs[0][0], ns=(1, 1))
    with pytest.raises(data.DataError, match=f"1 bad files:\n  image {pairs[0][0]} is corrupt"):
        data.verify_examples("synthetic", pairs, cache=cache)
    # The bad file was not cached: it fails again, and only it is decoded once it is fixed.
    with pytest.raises(data.DataError):
        data.verify_examples("synthetic", pairs, cache=cache)
    _write(pairs[0][0], np.zeros((*SIZE, 3), np.uint8))
    assert data.verify_examples("synthetic", pairs, cache=cache, progress=True) == {
        "files": 8, "decoded": 1, "cached": 7}


def test_camvid_label_value_12_is_rejected(tmp_path):
    pairs = _camvid(tmp_path)
    _write(pairs[0][1], np.full((36, 48), 12, np.uint8))
    with pytest.raises(data.DataError, match="has values \\[12\\] that are not in the camvid label table"):
        data.verify_examples("camvid", pairs)


def test_read_train_ids_maps_values_and_names_bad_files(tmp_path):
    pairs = _camvid(tmp_path)
    values = np.array([[0, 3], [11, 10]], np.uint8).repeat(18, 0).repeat(24, 1)
    _write(pairs[0][1], values)
    train_ids = data.read_train_ids("camvid", pairs[0][1])
    assert train_ids.dtype == np.int32 and train_ids.shape == (36, 48)
    np.testing.assert_array_equal(train_ids[::18, ::24], [[0, 3], [255, 10]])  # 11 (void) -> ignore
    _write(pairs[1][1], np.full((36, 48), 12, np.uint8))
    with pytest.raises(data.DataError, match=f"label {pairs[1][1]} has values \\[12\\] that are not in the camvid"):
        data.read_train_ids("camvid", pairs[1][1])
    with open(pairs[1][1], "wb") as f:
        f.write(b"not a png")
    with pytest.raises(data.DataError, match="cannot be decoded"):
        data.read_train_ids("camvid", pairs[1][1])


def test_read_png_header(tmp_path):
    path = _write(tmp_path / "a.png", np.zeros((5, 7, 3), np.uint8))
    assert data.read_png_header(path) == dict(height=5, width=7, bit_depth=8, channels=3, color_type="RGB")
    path = _write(tmp_path / "b.png", np.zeros((5, 7), np.uint16))
    assert data.read_png_header(path)["bit_depth"] == 16


@pytest.mark.skipif(not CAMVID_DIR, reason="CONTEXTNET_CAMVID_DIR is not set")
def test_real_camvid_lists_and_passes_header_checks():
    train = data.list_examples("camvid", CAMVID_DIR, "train")
    val = data.list_examples("camvid", CAMVID_DIR, "val")
    assert (len(train), len(val)) == (367, 101)
    assert all(os.path.basename(i) == os.path.basename(l) for i, l in train + val)
    assert files.image_size(val) == (360, 480)
    data.verify_examples("camvid", val[:10])
