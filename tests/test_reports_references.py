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
