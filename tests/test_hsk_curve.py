"""The HSK marginal-utility curve (tinynewsrec.hsk_curve): the share kept per axis against a
hand count, which axis each row is a point of, and the outputs written from a hand-made table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinynewsrec.distill.hsk import HSKSetting
from tinynewsrec.hsk_curve import curve_points, kept_shares, markdown, write


def test_the_share_kept_is_counted_per_axis():
    lengths = np.array([3, 5, 10])  # 18 real tokens
    full = kept_shares(HSKSetting(), 2, lengths, 384)
    assert full == {"depth": 1.0, "length": 1.0, "width": 1.0, "total": 1.0}
    # 1 of 3 states; min(4, n) = 3 + 4 + 4 = 11 of 18 tokens; round(0.1 * 384) = 38 of 384 dims
    s = kept_shares(HSKSetting(keep_layers=1, keep_tokens=4, keep_hidden=0.1), 2, lengths, 384)
    assert s["depth"] == pytest.approx(1 / 3) and s["length"] == pytest.approx(11 / 18)
    assert s["width"] == pytest.approx(38 / 384) and s["total"] == pytest.approx(1 / 3 * 11 / 18 * 38 / 384)
    # without [SEP]: min(4, n - 1) = 2 + 4 + 4; uniform_mask keeps int(H p); the dynamic scheme p itself
    s = kept_shares(HSKSetting(keep_tokens=4, token_scheme="attention_no_sep", keep_hidden=0.1,
                               hidden_scheme="uniform_mask"), 2, lengths, 384)
    assert s["length"] == pytest.approx(10 / 18) and s["width"] == pytest.approx(38 / 384)
    s = kept_shares(HSKSetting(keep_hidden=0.1, hidden_scheme="importance_mask_dynamic"), 2, lengths, 384)
    assert s["width"] == pytest.approx(0.1)


def row(label, method, auc, diff=None, **sections):
    params = {"student": {"method": method, "layers": 2}, **sections}
    out = {"label": label, "kind": "student", "row": "student", "auc": auc, "params": params,
           "auc_diff_lo": None if diff is None else diff - 0.01, "auc_diff_hi": None if diff is None else diff + 0.01}
    return out


def table():
    teacher = {"label": "teacher_3 (DP)", "kind": "teacher", "row": "teacher_3", "auc": 0.66, "params": {},
               "auc_diff_lo": None, "auc_diff_hi": None}
    return {"reference": {"auc": 0.66}, "rows": [
        teacher,
        row("Tiny-NewsRec-2", "tinynewsrec", 0.67, 0.01),
        row("ROSITA-2", "rosita", 0.64, -0.02),
        row("Standard KD-2 [no_hsk]", "standard_kd", 0.62, -0.04, standard_kd={"alpha": 1.0}),
        row("Standard KD-2", "standard_kd", 0.61, -0.05, standard_kd={"alpha": 0.5}),
        row("HSK-2 [full]", "hsk", 0.65, -0.01, hsk={}),
        row("HSK-2 [1l]", "hsk", 0.64, -0.02, hsk={"keep_layers": 1}),
        row("HSK-2 [4t]", "hsk", 0.63, -0.03, hsk={"keep_tokens": 4}),
        row("HSK-2 [3d]", "hsk", 0.635, None, hsk={"config": "1l_4t_0.1h"}),
        row("HSK-2 [fp32]", "hsk", 0.651, -0.009, hsk={"store_dtype": "float32"}),
    ]}


def test_each_hsk_row_is_a_point_of_its_axis_and_the_others_are_references():
    curve = curve_points(table(), np.array([3, 5, 10]), 384)
    axes = {p["label"]: (p["axis"], round(p["kept"], 6)) for p in curve["points"]}
    assert axes == {"Standard KD-2 [no_hsk]": ("none", 0.0), "HSK-2 [full]": ("full", 1.0),
                    "HSK-2 [1l]": ("depth", round(1 / 3, 6)), "HSK-2 [4t]": ("length", round(11 / 18, 6)),
                    "HSK-2 [3d]": ("3-D", round(1 / 3 * 11 / 18 * 38 / 384, 6)),
                    "HSK-2 [fp32]": ("full (float32 store)", 1.0)}
    assert curve["references"] == {"best teacher (teacher_3)": 66.0, "Tiny-NewsRec-2": 67.0, "ROSITA-2": 64.0,
                                   "no HSK (soft CE only)": 62.0}
    by = {p["label"]: p for p in curve["points"]}
    assert by["HSK-2 [1l]"]["interval"] == pytest.approx([63.0, 65.0]) and by["HSK-2 [3d]"]["interval"] is None


def test_the_curve_is_written_as_json_table_csv_and_png(tmp_path):
    curve = curve_points(table(), np.array([3, 5, 10]), 384)
    write(curve, tmp_path / "hsk_curve")
    assert json.loads((tmp_path / "hsk_curve.json").read_text())["points"][0]["label"] == "Standard KD-2 [no_hsk]"
    csv = (tmp_path / "hsk_curve.csv").read_text().splitlines()
    assert csv[0] == "axis,kept,auc" and "depth,0.333333,64.0000" in csv
    assert (tmp_path / "hsk_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = markdown(curve)
    assert "| HSK-2 [1l] | depth | 0.333 | 1.000 | 1.000 | 0.3333 | 64.00 | [63.00, 65.00] |" in md


def test_the_legend_names_points_by_their_experiment():
    from tinynewsrec.hsk_curve import figure

    fig = figure(curve_points(table(), np.array([3, 5, 10]), 384))
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "3-D (3d)" in labels and "all HSK (full)" in labels  # the float32-store point is only in the table
    assert "best teacher (teacher_3): 66.00" in labels
