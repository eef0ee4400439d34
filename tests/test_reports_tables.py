"""The one per-class IoU table writer (quick start, model cards, studies)."""

import pytest

from contextnet_tf.reports.tables import iou_table


def test_one_column_with_categories():
    metrics = {"class_iou": {"road": 0.91234, "sky": None}, "miou": 0.91234,
               "category_iou": {"flat": 0.5}, "category_miou": 0.5}
    assert iou_table(metrics) == (
        "| class | IoU (%) |\n|---|---:|\n| road | 91.23 |\n| sky | n/a |\n| **mIoU** | **91.23** |\n\n"
        "| category | IoU (%) |\n|---|---:|\n| flat | 50.00 |\n| **category mIoU** | **50.00** |\n")


def test_several_columns_and_their_classes_must_agree():
    plain = {"class_iou": {"road": 0.5, "sky": 0.25}, "miou": 0.375}
    tta = {"class_iou": {"road": 0.6, "sky": 0.3}, "miou": 0.45}
    lines = iou_table({"": plain, "flip": tta}, digits=1).splitlines()
    assert lines[0] == "| class | IoU (%) | flip IoU (%) |" and lines[3] == "| sky | 25.0 | 30.0 |"
    assert lines[-1] == "| **mIoU** | **37.5** | **45.0** |"
    with pytest.raises(ValueError, match="other classes"):
        iou_table({"a": plain, "b": {"class_iou": {"road": 0.5}, "miou": 0.5}})
