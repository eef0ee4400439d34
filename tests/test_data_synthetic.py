"""The synthetic city: Cityscapes layout, determinism, every class present, small objects, colour overlap."""

import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from contextnet_tf import data

# tensorflow-datasets' Cityscapes builder parses image ids with this pattern.
TFDS_IMAGE_RE = re.compile(r"([a-z\-]+)_(\d+)_(\d+)_leftImg8bit\.png")


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, names in os.walk(root) for f in names)


def test_writes_the_cityscapes_layout(tmp_path):
    written = data.generate_synthetic_city(tmp_path, num_train=3, num_val=2, num_test=1, image_size=(32, 64))
    assert _files(tmp_path) == [
        "gtFine/train/polygontown/polygontown_000000_000019_gtFine_labelIds.png",
        "gtFine/train/synthville/synthville_000000_000019_gtFine_labelIds.png",
        "gtFine/train/synthville/synthville_000001_000019_gtFine_labelIds.png",
        "gtFine/val/rendercity/rendercity_000000_000029_gtFine_labelIds.png",
        "gtFine/val/rendercity/rendercity_000001_000029_gtFine_labelIds.png",
        "leftImg8bit/test/pixelburg/pixelburg_000000_000039_leftImg8bit.png",
        "leftImg8bit/train/polygontown/polygontown_000000_000019_leftImg8bit.png",
        "leftImg8bit/train/synthville/synthville_000000_000019_leftImg8bit.png",
        "leftImg8bit/train/synthville/synthville_000001_000019_leftImg8bit.png",
        "leftImg8bit/val/rendercity/rendercity_000000_000029_leftImg8bit.png",
        "leftImg8bit/val/rendercity/rendercity_000001_000029_leftImg8bit.png",
    ]
    for split in ("train", "val"):
        pairs = data.list_examples("synthetic", tmp_path, split)  # header checks pass
        assert sorted(pairs) == sorted(written[split])
        data.verify_examples("synthetic", pairs)  # decodable, every label id in the Cityscapes table
        assert all(TFDS_IMAGE_RE.fullmatch(os.path.basename(image)) for image, _ in pairs)
    assert data.read_png_header(written["train"][0][0])["height"] == 32


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        data.generate_synthetic_city(tmp_path / name, num_train=2, num_val=1, image_size=(48, 96), seed=seed)

    def contents(name):
        return [open(os.path.join(tmp_path, name, f), "rb").read() for f in _files(tmp_path / name)]

    assert contents("a") == contents("b")
    assert all(x != y for x, y in zip(contents("a"), contents("c")))


@pytest.fixture(scope="module")
def scenes():
    table = data.id_to_train_id("synthetic")
    drawn = [data.draw_scene(np.random.default_rng([0, 0, i]), (128, 256)) for i in range(12)]
    return np.stack([image for image, _ in drawn]), table[np.stack([ids for _, ids in drawn])], drawn


def test_every_class_and_some_void(scenes):
    images, labels, _ = scenes
    assert images.dtype == np.uint8 and images.shape == (12, 128, 256, 3)
    assert set(np.unique(labels)) == set(range(19)) | {255}
    assert 0.005 < (labels == 255).mean() < 0.1  # ego-vehicle hood and `static` furniture are void


def test_small_objects_exist(scenes):
    _, _, drawn = scenes
    small = 0
    for _, ids in drawn:
        for name in ("pole", "traffic light", "traffic sign", "person"):
            mask = (ids == data.CITYSCAPES_LABELS[[l.name for l in data.CITYSCAPES_LABELS].index(name)].id)
            _, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
            small += int((stats[1:, cv2.CC_STAT_AREA] < 0.001 * ids.size).sum())  # under 33 of 32768 pixels
    assert small >= 20


def test_colour_alone_does_not_separate_the_classes(scenes):
    """A nearest-mean-colour classifier, fitted on the very pixels it is scored on, stays far from a good mIoU."""
    images, labels, _ = scenes
    valid = labels != 255
    pixels, truth = images[valid].astype(np.float32), labels[valid]
    means = np.stack([pixels[truth == c].mean(0) for c in range(19)])
    predicted = np.concatenate([((chunk[:, None] - means[None]) ** 2).sum(-1).argmin(1)
                                for chunk in np.array_split(pixels, 8)])
    ious = [((predicted == c) & (truth == c)).sum() / ((predicted == c) | (truth == c)).sum() for c in range(19)]
    assert np.mean(ious) < 0.2
    # Yet colour carries some signal: sky is the easiest class.
    assert np.argmax(ious) == 10 and ious[10] > 0.4


@pytest.mark.slow
def test_make_synthetic_city_program(tmp_path):
    program = os.path.join(os.path.dirname(__file__), "..", "experiments", "make_synthetic_city.py")
    result = subprocess.run([sys.executable, program, f"--out_dir={tmp_path}", "--num_train=2", "--num_val=1",
                             "--image_size=32x64", "--seed=5"], capture_output=True, text=True, check=True)
    assert "2 train, 1 val, 0 test images under" in result.stdout
    assert len(data.list_examples("synthetic", tmp_path, "train")) == 2
    reference = data.draw_scene(np.random.default_rng([5, 0, 0]), (32, 64))[1]
    # Image 0 of the train split goes to the first city; the program passes --seed through.
    first_label = tmp_path / "gtFine/train/synthville/synthville_000000_000019_gtFine_labelIds.png"
    np.testing.assert_array_equal(cv2.imread(str(first_label), cv2.IMREAD_UNCHANGED), reference)
