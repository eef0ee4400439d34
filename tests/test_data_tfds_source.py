"""tensorflow-datasets' Cityscapes builder on small official-layout zips gives the same tensors as the file reader."""

import os
import zipfile

import cv2
import numpy as np
import pytest

from contextnet_tf import data
from contextnet_tf.data import tfds_source

pytest.importorskip("importlib_resources", reason="tensorflow-datasets needs it to prepare (tensorflow/datasets#11212)")

# The builder's features are fixed to full Cityscapes size.
FULL = (1024, 2048)
SPLITS = {"train": ("aachen", "bochum"), "val": ("lindau",), "test": ("berlin",), "train_extra": ("erlangen",)}


def _scene(index):
    """A synthetic street scene drawn at 128x256 and blown up 8x: full size, yet quick to encode and small."""
    image, ids = data.draw_scene(np.random.default_rng([9, index]), (128, 256))
    return (cv2.resize(image, FULL[::-1], interpolation=cv2.INTER_NEAREST),
            cv2.resize(ids, FULL[::-1], interpolation=cv2.INTER_NEAREST))


def _png(array):
    return cv2.imencode(".png", array[..., ::-1] if array.ndim == 3 else array)[1].tobytes()


def _write_official_zips(manual_dir, files_dir, coarse=False):
    """Writes the official zips into manual_dir and the same files, unzipped, under files_dir."""
    zips = {"leftImg8bit_trainvaltest.zip": [], "gtFine_trainvaltest.zip": []}
    if coarse:
        zips.update({"leftImg8bit_trainextra.zip": [], "gtCoarse.zip": []})
    index = 0
    for split, cities in SPLITS.items():
        if split == "train_extra" and not coarse:
            continue
        for city in cities:
            image, ids = _scene(index)
            index += 1
            if split == "test":
                ids = np.zeros_like(ids)  # official test labels hold no classes
            stem = f"{city}_000000_000019"
            image_zip = "leftImg8bit_trainextra.zip" if split == "train_extra" else "leftImg8bit_trainvaltest.zip"
            zips[image_zip].append((f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png", _png(image)))
            if split != "train_extra":
                zips["gtFine_trainvaltest.zip"].append((f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png",
                                                        _png(ids)))
            if coarse and split != "test":
                zips["gtCoarse.zip"].append((f"gtCoarse/{split}/{city}/{stem}_gtCoarse_labelIds.png", _png(ids)))
    os.makedirs(manual_dir, exist_ok=True)
    for name, members in zips.items():
        with zipfile.ZipFile(os.path.join(manual_dir, name), "w") as archive:
            for path, content in members:
                archive.writestr(path, content)
                target = os.path.join(files_dir, path)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as f:
                    f.write(content)


def _by_content(ds):
    """Evaluation batches of one image each, keyed by the image bytes (tfds orders examples by a hash)."""
    return {images[0].tobytes(): (images[0], labels[0]) for images, labels in ds.as_numpy_iterator()}


def _assert_same(tfds_ds, files_ds, expected_count):
    from_tfds, from_files = _by_content(tfds_ds), _by_content(files_ds)
    assert len(from_files) == expected_count and from_tfds.keys() == from_files.keys()
    for key, (image, label) in from_files.items():
        np.testing.assert_array_equal(from_tfds[key][0], image)
        np.testing.assert_array_equal(from_tfds[key][1], label)
    return from_files


def test_tfds_gives_the_same_tensors_as_the_files(tmp_path):
    manual, files_dir = tmp_path / "zips", tmp_path / "cityscapes"
    _write_official_zips(manual, files_dir)
    assert sorted(os.listdir(manual)) == ["gtFine_trainvaltest.zip", "leftImg8bit_trainvaltest.zip"]
    for split, count in (("train", 2), ("val", 1), ("test", 1)):
        kwargs = dict(training=False, batch_size=1)
        examples = _assert_same(
            data.make_dataset("cityscapes", manual, split, source="tfds", tfds_data_dir=tmp_path / "tfds", **kwargs),
            data.make_dataset("cityscapes", files_dir, split, **kwargs),
            count,
        )
        labels = np.stack([label for _, label in examples.values()])
        assert labels.shape == (count, *FULL)
        if split == "test":
            assert (labels == 255).all()
        else:
            assert len(set(np.unique(labels)) - {255}) >= 12
    # Training from tfds: augmented crops with the same shapes and label set.
    ds = data.make_dataset("cityscapes", manual, "train", source="tfds", tfds_data_dir=tmp_path / "tfds",
                           training=True, batch_size=2, crop_size=(256, 512), seed=0)
    images, labels = next(iter(ds))
    assert images.shape == (2, 256, 512, 3) and set(np.unique(labels.numpy())) <= set(range(19)) | {255}


@pytest.mark.slow
def test_tfds_coarse_config_and_train_extra(tmp_path):
    manual, files_dir = tmp_path / "zips", tmp_path / "cityscapes"
    _write_official_zips(manual, files_dir, coarse=True)
    builder = tfds_source.prepare(manual, tmp_path / "tfds", label_source="coarse")
    assert builder.info.full_name.startswith("cityscapes/semantic_segmentation_extra")
    assert {s: builder.info.splits[s].num_examples for s in builder.info.splits} == {
        "train": 2, "validation": 1, "train_extra": 1}
    kwargs = dict(training=False, batch_size=1, label_source="coarse")
    _assert_same(
        data.make_dataset("cityscapes", manual, "train+train_extra", source="tfds", tfds_data_dir=tmp_path / "tfds",
                          **kwargs),
        data.make_dataset("cityscapes", files_dir, "train+train_extra", **kwargs),
        3,
    )
    with pytest.raises(ValueError, match="split 'test' is not in tfds cityscapes/semantic_segmentation_extra"):
        data.make_dataset("cityscapes", manual, "test", source="tfds", tfds_data_dir=tmp_path / "tfds", **kwargs)


def test_missing_zips_are_reported(tmp_path):
    expected = f"zips leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip in '{tmp_path}'"
    with pytest.raises(data.DataError, match=expected):
        tfds_source.prepare(tmp_path, tmp_path / "tfds")
    with pytest.raises(data.DataError, match="leftImg8bit_trainextra.zip, gtCoarse.zip"):
        data.make_dataset("cityscapes", tmp_path, "train", training=False, batch_size=1, source="tfds",
                          label_source="coarse")
