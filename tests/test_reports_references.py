"""The papers' reference numbers: each value appears in its paper's text, beside the table or section named."""

import os
import re

import pytest

from contextnet_tf.reports import references

PAPERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "papers")


def _paper(name):
    path = os.path.join(PAPERS, f"{name}.txt")
    if not os.path.exists(path):
        pytest.skip(f"{path} is not here (the papers' text lives in the shared folder)")
    with open(path) as f:
        return f.read()


def _numbers(text):
    return [float(v) for v in re.findall(r"\d+\.\d+", text)]


def _block(text, start, end):
    """The text from the first `start` to the next `end` after it."""
    begin = text.index(start)
    return text[begin : text.index(end, begin)]


def test_contextnet_table4_is_the_papers_table():
    text = _paper("contextnet")
    # The table's rows as extracted: mIoU, then fps, then parameters (millions), in the column order below.
    table = _block(text, "cn18 cn14 cn12 cn124 cn14-500 cn14-160", "Table 4.")
    values = _numbers(table)
    names = ["cn18", "cn14", "cn12", "cn124", "cn14-500", "cn14-160"]
    assert values[:6] == [references.CONTEXTNET_TABLE4[n]["miou"] for n in names[:4]] + [
        references.CONTEXTNET_TABLE4["cn14-500"]["miou"], references.CONTEXTNET_TABLE4["cn14-160"]["miou"]]
    assert values[6:12] == [references.CONTEXTNET_TABLE4[n]["fps"] for n in names]
    assert values[12:18] == [round(references.CONTEXTNET_TABLE4[n]["params"] / 1e6, 2) for n in names]
    assert "159,387" in text and "490,459" in text  # the exact counts of section 3.2


def test_contextnet_ensemble_pruning_and_test_numbers():
    text = _paper("contextnet")
    ensemble = references.CONTEXTNET_ENSEMBLE
    assert f"obtained {ensemble['cn14-context']}% and {ensemble['cn14-detail']}% mIoU" in text
    assert f"Ensemble of both branches obtained {ensemble['ensemble']}% mIoU" in text
    assert f"cn14 is fairly balanced at 18.3 frames per seconds (fps) and {ensemble['cn14']}% mIoU" in text
    before, after = references.CONTEXTNET_PRUNING.values()
    assert f"improve the mIoU from {before}% to {after}% on the Cityscape test set" in text
    assert "TEST" in references.CONTEXTNET_PRUNING_SOURCE
    runtime = _numbers(_block(text, "1024 × 2048 512 × 1024 256 × 512", "Table 7."))
    table7 = references.CONTEXTNET_TABLE7.values()
    assert runtime[-6:] == [r["fps"] for r in table7] + [r["kernel_fps"] for r in table7]
    table6 = _numbers(_block(text, "Class mIoU (in %) Category mIoU", "Table 6."))
    assert table6[-3:] == [66.1, 82.7, 0.85] == [references.CONTEXTNET_TABLE6["class_miou"],
                                                  references.CONTEXTNET_TABLE6["category_miou"],
                                                  references.CONTEXTNET_TABLE6["params"] / 1e6]


def test_fast_scnn_numbers():
    text = _paper("fast_scnn")
    table7 = _numbers(_block(text, "Input Size\nClass FPS", "Table 7:"))
    assert [v for v in table7 if v not in (1024.0, 2048.0)] == [
        value for row in references.FAST_SCNN_TABLE7.values() for value in (row["miou"], row["fps"])]
    assert "Cityscapes’ test set" in text and "TEST" in references.FAST_SCNN_TABLE7_SOURCE
    skip = references.FAST_SCNN_SKIP
    assert f"reduced from {skip['with skip']:.2f}% to {skip['skip zeroed']:.2f}% on the validation set" in text
    table8 = _numbers(_block(text, "Fast-SCNN\n68.62", "Table 8:"))
    assert table8 == list(references.FAST_SCNN_TABLE8.values())
    assert "we use 1.11 million parameters" in text and references.FAST_SCNN_PARAMS == 1_110_000
    assert "Fast-SCNN obtains 68.0% class level mIoU and 84.7% category level mIoU" in text
    assert references.FAST_SCNN_TABLE4["class_miou"] == 68.0 and references.FAST_SCNN_TABLE4["category_miou"] == 84.7


def test_paper_params_cover_every_published_variant():
    assert set(references.PAPER_PARAMS) == {"fast_scnn", *references.CONTEXTNET_TABLE4}


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The reference numbers (and the wrong values an earlier studies.py carried: cn18 60.2 / 22.6 fps, cn14 66.9) as
# they would be written in code.
STALE = ("60.2", "22.6", "66.9")


def _reference_numbers():
    values = [row[key] for row in references.CONTEXTNET_TABLE4.values() for key in ("miou", "fps")]
    values += [*references.CONTEXTNET_ENSEMBLE.values(), *references.CONTEXTNET_PRUNING.values()]
    values += [row[key] for row in references.CONTEXTNET_TABLE7.values() for key in ("fps", "kernel_fps")]
    values += [row[key] for row in references.FAST_SCNN_TABLE7.values() for key in ("miou", "fps")]
    values += [*references.FAST_SCNN_SKIP.values(), *references.FAST_SCNN_TABLE8.values()]
    texts = {f"{v:.2f}" for v in values} | {f"{v:.1f}" for v in values if round(v, 1) == v}  # 64.30 and 64.3
    return sorted(texts | set(STALE))


def _sources():
    """(path, text) of every Python file and every notebook cell's source (not its outputs) in the repository."""
    import json

    for folder in ("contextnet_tf", "experiments", "tests", "notebooks"):
        for root, _, files in os.walk(os.path.join(REPO, folder)):
            for name in sorted(files):
                path = os.path.join(root, name)
                if name.endswith(".py"):
                    with open(path, encoding="utf-8") as f:
                        yield path, "code", f.read()
                elif name.endswith(".ipynb"):
                    with open(path, encoding="utf-8") as f:
                        for i, cell in enumerate(json.load(f)["cells"]):
                            yield f"{path} cell {i}", cell["cell_type"], "".join(cell["source"])


def test_no_code_or_notebook_carries_its_own_copy_of_the_papers_numbers():
    numbers = re.compile(r"(?<![\d.])(" + "|".join(re.escape(v) for v in _reference_numbers()) + r")(?![\d])")
    own = {os.path.join(REPO, "contextnet_tf", "reports", "references.py"), os.path.abspath(__file__)}
    copies = [f"{path}: {match.group(0)}" for path, _, text in _sources() if path not in own
              for match in numbers.finditer(text)]
    assert copies == [], "read these from contextnet_tf.reports.references instead"


def test_the_pruning_numbers_are_never_called_val():
    """ContextNet's 64.2% -> 66.1% by pruning is Cityscapes TEST: wherever a doc or notebook text names 64.2%, it says
    test, and not val, around it."""
    before = f"{references.CONTEXTNET_PRUNING['before pruning']}%"
    texts = [(path, text) for path, kind, text in _sources() if kind == "markdown"]
    for root in (REPO, os.path.join(REPO, "docs"), os.path.join(REPO, "notebooks"), os.path.join(REPO, "pretrained")):
        for name in sorted(os.listdir(root)):
            if name.endswith(".md"):
                with open(os.path.join(root, name), encoding="utf-8") as f:
                    texts.append((os.path.join(root, name), f.read()))
    seen = 0
    for path, text in texts:
        for match in re.finditer(re.escape(before), text):
            context = text[max(0, match.start() - 100): match.end() + 100]
            assert "test" in context and not re.search(r"\bval\b", context), (path, context)
            seen += 1
    assert seen >= 2  # docs/pruning.md and WORKSPACE.md name it
