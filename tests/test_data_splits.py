"""CamVid splits by video sequence: they partition train+val exactly, count frames per sequence, keep `test` as it
was, and say what went wrong (unknown sequence, nothing left to train on, malformed names)."""

import os

import cv2
import numpy as np
import pytest

from contextnet_tf import data
from contextnet_tf.data import splits

CAMVID_DIR = os.environ.get("CONTEXTNET_CAMVID_DIR")

# A tiny CamVid-layout folder with made-up sequences: folder -> {sequence: frames}.
FAKE = {
    "train": {"AAA1": 3, "BB22": 2, "C333": 4},
    "val": {"C333": 2},
    "test": {"Seq9": 2, "AAA1": 1},
}


def _fake_camvid(root, layout=FAKE, size=(360, 480)):  # CamVid's native size, which the header check asks for
    for folder, sequences in layout.items():
        for sequence, count in sequences.items():
            for frame in range(count):
                name = f"{sequence}_{frame * 30:05d}.png"
                for sub, array in ((folder, np.full((*size, 3), 90, np.uint8)),
                                   (f"{folder}annot", np.full(size, frame % 12, np.uint8))):
                    os.makedirs(root / sub, exist_ok=True)
                    assert cv2.imwrite(str(root / sub / name), array)
    return root


def _names(examples):
    return [os.path.basename(image) for image, _ in examples]


def test_holdout_splits_partition_train_and_val(tmp_path):
    root = _fake_camvid(tmp_path)
    everything = data.list_examples("camvid", root, "train+val")
    assert data.list_examples("camvid", root, "trainval") == everything
    for sequence in ("AAA1", "BB22", "C333"):
        train_split, val_split = splits.holdout_splits(sequence)
        assert (train_split, val_split) == (f"trainval-{sequence}", f"sequence:{sequence}")
        train = data.list_examples("camvid", root, train_split)
        held_out = data.list_examples("camvid", root, val_split)
        assert not set(train) & set(held_out)
        assert sorted(train + held_out) == sorted(everything)
        assert set(splits.sequence_counts(held_out)) == {sequence}
        assert sequence not in splits.sequence_counts(train)
    # The held-out sequence C333 has frames in both folders; all of them are held out.
    assert splits.sequence_counts(data.list_examples("camvid", root, "sequence:C333")) == {"C333": 6}


def test_counts_per_sequence_and_split(tmp_path):
    root = _fake_camvid(tmp_path)
    for folder, sequences in FAKE.items():
        assert splits.sequence_counts(data.list_examples("camvid", root, folder)) == sequences
    assert splits.sequence_counts(data.list_examples("camvid", root, "trainval-AAA1-BB22")) == {"C333": 6}
    assert splits.sequence_counts(data.list_examples("camvid", root, "train-C333")) == {"AAA1": 3, "BB22": 2}
    assert splits.sequence_counts(data.list_examples("camvid", root, "sequence:AAA1,BB22")) == {"AAA1": 3, "BB22": 2}


def test_test_split_is_the_test_folder_and_sequence_splits_never_read_it(tmp_path):
    root = _fake_camvid(tmp_path)
    test = data.list_examples("camvid", root, "test")
    assert _names(test) == ["AAA1_00000.png", "Seq9_00000.png", "Seq9_00030.png"]
    assert all(os.sep + "test" + os.sep in image for image, _ in test)
    # AAA1 also has a test frame: sequence:AAA1 takes train+val's three only.
    held_out = data.list_examples("camvid", root, "sequence:AAA1")
    assert len(held_out) == 3 and not set(held_out) & set(test)
    with pytest.raises(ValueError, match=r"no sequence Seq9 in train\+val under .*AAA1 \(3 frames\), BB22 \(2 "
                                         r"frames\), C333 \(6 frames\)"):
        data.list_examples("camvid", root, "sequence:Seq9")


def test_every_nth_frame_of_each_sequence(tmp_path):
    """/N keeps frames 0, N, 2N, ... of each sequence in file-name (time) order, across the train and val folders,
    and composes with the other forms and with +."""
    layout = {"train": {"AAA1": 5, "C333": 4}, "val": {"C333": 0}}
    root = _fake_camvid(tmp_path, layout)
    # C333's later frames live in val, as 0016E5's val frames do: names 00120 and 00150 continue train's 00000-00090.
    for frame in (4, 5):
        name = f"C333_{frame * 30:05d}.png"
        for sub, array in (("val", np.full((360, 480, 3), 90, np.uint8)), ("valannot", np.zeros((360, 480), np.uint8))):
            os.makedirs(root / sub, exist_ok=True)
            assert cv2.imwrite(str(root / sub / name), array)
    assert _names(data.list_examples("camvid", root, "sequence:C333/2")) == ["C333_00000.png", "C333_00060.png",
                                                                            "C333_00120.png"]
    assert _names(data.list_examples("camvid", root, "sequence:C333/4")) == ["C333_00000.png", "C333_00120.png"]
    assert _names(data.list_examples("camvid", root, "trainval-C333/3")) == ["AAA1_00000.png", "AAA1_00090.png"]
    assert _names(data.list_examples("camvid", root, "train/2")) == ["AAA1_00000.png", "AAA1_00060.png",
                                                                     "AAA1_00120.png", "C333_00000.png",
                                                                     "C333_00060.png"]
    assert data.list_examples("camvid", root, "trainval/1") == data.list_examples("camvid", root, "trainval")
    assert _names(data.list_examples("camvid", root, "sequence:AAA1/9+sequence:C333/5")) == ["AAA1_00000.png",
                                                                                           "C333_00000.png",
                                                                                           "C333_00150.png"]
    assert splits.parse("sequence:C333/2") == splits.SequenceSplit("sequence:C333/2", ("train", "val"),
                                                                   keep=("C333",), every=2)


@pytest.mark.parametrize("split, match", [
    ("sequence:XYZ", r"camvid split 'sequence:XYZ': no sequence XYZ in train\+val .* the sequences there are AAA1"),
    ("trainval-AAA1-Nope", r"no sequence Nope in train\+val"),
    ("val-AAA1", r"no sequence AAA1 in val under .*C333 \(2 frames\)"),
    ("trainval-AAA1-BB22-C333", r"'trainval-AAA1-BB22-C333' leaves no frames: it holds out every sequence"),
    ("val-C333", "leaves no frames"),
    ("trainval-", "sequence names are letters and digits"),
    ("sequence:", "sequence names are letters and digits"),
    ("sequence:AAA1,AAA1", "each named once"),
    ("trainval-0006R0_x", "sequence names are letters and digits"),
    ("train_extra", r"unknown camvid split 'train_extra'; choose from train, val, test, trainval, FOLDER-SEQ"),
    ("holdout", "unknown camvid split 'holdout'"),
    ("sequence:AAA1/0", "every N-th frame of each sequence, N a whole number of at least 1; got '0'"),
    ("train/x", "got 'x'"),
    ("train/", "got ''"),
    ("trainval-AAA1/2/2", "got '2/2'"),
])
def test_bad_split_names_are_explained(tmp_path, split, match):
    root = _fake_camvid(tmp_path)
    with pytest.raises(ValueError, match=match):
        data.list_examples("camvid", root, split)


def test_file_names_without_a_sequence_are_named(tmp_path):
    root = _fake_camvid(tmp_path, {"train": {"AAA1": 1}, "val": {"C333": 1}})
    for sub in ("train", "trainannot"):
        cv2.imwrite(str(root / sub / "frame7.png"), cv2.imread(str(root / sub / "AAA1_00000.png"),
                                                              cv2.IMREAD_UNCHANGED))
    assert len(data.list_examples("camvid", root, "train")) == 2  # the folder itself does not need sequences
    with pytest.raises(ValueError, match=r"cannot tell the video sequence of .*frame7.png"):
        data.list_examples("camvid", root, "trainval-AAA1")


def test_other_datasets_have_no_sequence_splits(tmp_path):
    with pytest.raises(ValueError, match="unknown cityscapes split 'trainval-0006R0'"):
        data.list_examples("cityscapes", tmp_path, "trainval-0006R0")


@pytest.mark.skipif(not CAMVID_DIR, reason="CONTEXTNET_CAMVID_DIR is not set")
def test_real_camvid_sequences():
    """The frame counts docs/data.md gives, and the recommended hold-out's partition of the 468 frames."""
    counts = {folder: splits.sequence_counts(data.list_examples("camvid", CAMVID_DIR, folder, validate=False))
              for folder in ("train", "val")}
    assert counts == {"train": {"0001TP": 62, "0006R0": 101, "0016E5": 204}, "val": {"0016E5": 101}}
    everything = data.list_examples("camvid", CAMVID_DIR, "trainval", validate=False)
    assert len(everything) == 468
    train_split, val_split = splits.holdout_splits(splits.RECOMMENDED_HOLDOUT)
    train = data.list_examples("camvid", CAMVID_DIR, train_split)
    held_out = data.list_examples("camvid", CAMVID_DIR, val_split)
    assert (len(train), len(held_out)) == (367, 101)
    assert not set(train) & set(held_out) and sorted(train + held_out) == sorted(everything)
    assert splits.sequence_counts(train) == {"0001TP": 62, "0016E5": 305}
    # The ninth session's data-scaling runs (docs/data.md): one drive, and every second frame of it.
    one_drive = data.list_examples("camvid", CAMVID_DIR, "sequence:0016E5", validate=False)
    thinned = data.list_examples("camvid", CAMVID_DIR, "sequence:0016E5/2", validate=False)
    assert (len(one_drive), len(thinned)) == (305, 153)
    assert sorted(_names(thinned)) == sorted(_names(one_drive))[::2] and set(thinned) < set(one_drive)
    with pytest.raises(ValueError, match=r"the sequences there are 0001TP \(62 frames\), 0006R0 \(101 frames\), "
                                         r"0016E5 \(305 frames\)"):
        data.list_examples("camvid", CAMVID_DIR, "sequence:Seq05VD", validate=False)
