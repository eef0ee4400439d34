"""Label tables: every id against the official Cityscapes table, CamVid's void, and `DatasetInfo`."""

import dataclasses

import numpy as np
import pytest

from contextnet_tf import data
from contextnet_tf.data import labels

# The rows of cityscapesscripts/helpers/labels.py (mcordts/cityscapesScripts), copied as published:
# name | id | trainId | category | catId | hasInstances | ignoreInEval | color
OFFICIAL_TABLE = """
unlabeled            |  0 | 255 | void         | 0 | False | True  | 0 0 0
ego vehicle          |  1 | 255 | void         | 0 | False | True  | 0 0 0
rectification border |  2 | 255 | void         | 0 | False | True  | 0 0 0
out of roi           |  3 | 255 | void         | 0 | False | True  | 0 0 0
static               |  4 | 255 | void         | 0 | False | True  | 0 0 0
dynamic              |  5 | 255 | void         | 0 | False | True  | 111 74 0
ground               |  6 | 255 | void         | 0 | False | True  | 81 0 81
road                 |  7 |   0 | flat         | 1 | False | False | 128 64 128
sidewalk             |  8 |   1 | flat         | 1 | False | False | 244 35 232
parking              |  9 | 255 | flat         | 1 | False | True  | 250 170 160
rail track           | 10 | 255 | flat         | 1 | False | True  | 230 150 140
building             | 11 |   2 | construction | 2 | False | False | 70 70 70
wall                 | 12 |   3 | construction | 2 | False | False | 102 102 156
fence                | 13 |   4 | construction | 2 | False | False | 190 153 153
guard rail           | 14 | 255 | construction | 2 | False | True  | 180 165 180
bridge               | 15 | 255 | construction | 2 | False | True  | 150 100 100
tunnel               | 16 | 255 | construction | 2 | False | True  | 150 120 90
pole                 | 17 |   5 | object       | 3 | False | False | 153 153 153
polegroup            | 18 | 255 | object       | 3 | False | True  | 153 153 153
traffic light        | 19 |   6 | object       | 3 | False | False | 250 170 30
traffic sign         | 20 |   7 | object       | 3 | False | False | 220 220 0
vegetation           | 21 |   8 | nature       | 4 | False | False | 107 142 35
terrain              | 22 |   9 | nature       | 4 | False | False | 152 251 152
sky                  | 23 |  10 | sky          | 5 | False | False | 70 130 180
person               | 24 |  11 | human        | 6 | True  | False | 220 20 60
rider                | 25 |  12 | human        | 6 | True  | False | 255 0 0
car                  | 26 |  13 | vehicle      | 7 | True  | False | 0 0 142
truck                | 27 |  14 | vehicle      | 7 | True  | False | 0 0 70
bus                  | 28 |  15 | vehicle      | 7 | True  | False | 0 60 100
caravan              | 29 | 255 | vehicle      | 7 | True  | True  | 0 0 90
trailer              | 30 | 255 | vehicle      | 7 | True  | True  | 0 0 110
train                | 31 |  16 | vehicle      | 7 | True  | False | 0 80 100
motorcycle           | 32 |  17 | vehicle      | 7 | True  | False | 0 0 230
bicycle              | 33 |  18 | vehicle      | 7 | True  | False | 119 11 32
"""


def _official_rows():
    rows = []
    for line in OFFICIAL_TABLE.strip().splitlines():
        name, label_id, train_id, category, category_id, instances, ignore, color = (f.strip() for f in line.split("|"))
        rows.append(labels.CityscapesLabel(name, int(label_id), int(train_id), category, int(category_id),
                                           instances == "True", ignore == "True", tuple(map(int, color.split()))))
    return rows


def test_cityscapes_table_is_the_official_one():
    assert list(labels.CITYSCAPES_LABELS) == _official_rows()


@pytest.mark.parametrize("name", ["cityscapes", "synthetic"])
def test_every_cityscapes_id_maps_to_its_official_train_id(name):
    table = data.id_to_train_id(name)
    official = {row.id: row.train_id for row in _official_rows()}
    for value in range(256):
        assert table[value] == official.get(value, labels.UNKNOWN_ID), value
    # The train ids used in evaluation are exactly 0..18, and ignoreInEval is exactly the ids that map to 255.
    assert sorted(set(table[table >= 0]) - {255}) == list(range(19))
    assert {r.id for r in _official_rows() if r.ignore_in_eval} == {v for v in range(34) if table[v] == 255}


def test_camvid_table_ignores_void_and_rejects_the_rest():
    table = data.id_to_train_id("camvid")
    assert table[:11].tolist() == list(range(11))
    assert table[11] == 255
    assert (table[12:] == labels.UNKNOWN_ID).all()


def test_cityscapes_info():
    info = data.get_info("cityscapes")
    assert info.num_classes == 19 and info.ignore_label == 255
    assert info.class_names[:3] == ("road", "sidewalk", "building")
    assert info.class_names[-1] == "bicycle" and len(info.class_names) == 19
    assert info.palette.dtype == np.uint8 and info.palette.shape == (19, 3)
    assert info.palette[13].tolist() == [0, 0, 142]  # car
    assert info.category_names == ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
    # road, sidewalk: flat; building, wall, fence: construction; pole, light, sign: object; ...
    assert info.class_to_category.tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 5, 6, 6, 6, 6, 6, 6]
    assert len(info.mean_rgb) == 3 and all(isinstance(v, float) and 0 < v < 255 for v in info.mean_rgb)


def test_synthetic_info_matches_cityscapes_and_camvid_has_no_categories():
    city, synthetic, camvid = (data.get_info(n) for n in ("cityscapes", "synthetic", "camvid"))
    assert synthetic.name == "synthetic" and synthetic.class_names == city.class_names
    assert np.array_equal(synthetic.class_to_category, city.class_to_category)
    assert camvid.num_classes == 11 and camvid.ignore_label == 255
    assert camvid.class_names[0] == "sky" and camvid.class_names[10] == "bicyclist"
    assert camvid.category_names is None and camvid.class_to_category is None
    assert camvid.palette.shape == (11, 3) and camvid.palette[3].tolist() == [128, 64, 128]


def test_info_is_frozen_and_unknown_names_fail():
    info = data.get_info("camvid")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.num_classes = 3
    with pytest.raises(ValueError):
        info.palette[0, 0] = 1
    with pytest.raises(ValueError, match="unknown dataset 'kitti'"):
        data.get_info("kitti")


def test_colorize_uses_the_palette_and_blackens_ignore():
    info = data.get_info("cityscapes")
    rgb = data.colorize(np.array([[0, 13], [255, 18]]), info)
    assert rgb.tolist() == [[[128, 64, 128], [0, 0, 142]], [[0, 0, 0], [119, 11, 32]]]
