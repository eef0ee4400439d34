import pytest

from contextnet_tf.reports import references, summary


def test_parse_resolution_is_the_one_size_syntax():
    assert summary.parse_resolution("1024x2048") == (1024, 2048)
    with pytest.raises(ValueError, match="expected HxW such as 352x480, got '1024'"):
        summary.parse_resolution("1024")


def test_model_rows_and_table():
    rows = summary.model_rows(["cn14", "fast_scnn"], [(256, 512)])
    assert rows[0]["params"] == 856_851 and rows[0]["context_layers"] == 38 and rows[0]["detail_layers"] == 4
    assert rows[1]["params_ratio"] == pytest.approx(1_137_795 / 1_110_000, abs=1e-4)
    table = summary.markdown_table(rows, [(256, 512)])
    assert "| cn14 | 856,851 | 850,000 | 1.008 |" in table
    assert table.count("\n") == 3
    assert [row["paper_params"] for row in rows] == [references.CONTEXTNET_TABLE4["cn14"]["params"],
                                                      references.FAST_SCNN_PARAMS]
