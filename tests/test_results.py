"""The results table: rows from the workspace and DVC experiments (dvc exp show --json)."""

from __future__ import annotations

import json

import pytest
import yaml

from tinynewsrec import results
from tinynewsrec.errors import DataError
from conftest import ROOT


def metrics(auc):
    return {"auc": auc, "mrr": auc / 2, "ndcg5": auc / 2, "ndcg10": auc / 2 + 0.1}


def cost(speed, params=22_000_000, layers=6):
    return {"params": params, "news_per_s": speed, "layers": layers, "size_mb": 1.0, "user_latency_ms": 0.1}


BASE_PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def record(name, method, layers, auc, speed, teacher_speed=500.0, created=None, **changes):
    params = json.loads(json.dumps(BASE_PARAMS))
    params["student"].update(method=method, layers=layers)
    for key, value in changes.items():
        section, field = key.split("__")
        params[section][field] = value
    return {
        "name": name,
        "params": params,
        "eval": {"teacher_0": metrics(0.66), "teacher_1": metrics(0.65), "popularity": metrics(0.55),
                 "student": metrics(auc)},
        "efficiency": {"teacher_0": cost(teacher_speed), "teacher_1": cost(teacher_speed),
                       "student": cost(speed, params=4_000_000, layers=layers)},
        "created": created,
    }


def test_rows_have_teachers_popularity_and_one_row_per_student_method_and_size():
    workspace = record("workspace", "tinynewsrec", 2, 0.67, 1400.0)
    exps = [
        record("ft2", "finetune", 2, 0.64, 1450.0, teacher_speed=400.0, created="2026-11-23T10:00:00"),
        record("tnr1", "tinynewsrec", 1, 0.65, 2600.0, created="2026-11-23T10:05:00"),
        record("tnr2-old", "tinynewsrec", 2, 0.60, 1400.0, created="2026-11-23T09:00:00"),  # the workspace wins
    ]
    rows = results.build_rows(workspace, exps)
    assert [r["model"] for r in rows] == ["teacher_0", "teacher_1", "popularity", "Tiny-NewsRec-2", "Tiny-NewsRec-1",
                                          "PLM-NR (fine-tuned)-2"]
    assert all(set(results.COLUMNS) <= set(r) for r in rows)
    by_model = {r["model"]: r for r in rows}
    assert by_model["Tiny-NewsRec-2"]["auc"] == 0.67 and by_model["Tiny-NewsRec-2"]["source"] == "workspace"
    # speed-up against the teachers measured in the SAME evaluate run (400 news/s in ft2's)
    assert by_model["PLM-NR (fine-tuned)-2"]["speedup"] == pytest.approx(1450 / 400, abs=0.01)
    assert by_model["Tiny-NewsRec-1"]["speedup"] == pytest.approx(2600 / 500, abs=0.01)
    assert by_model["teacher_0"]["speedup"] == 1.0 and by_model["teacher_0"]["layers"] == 6
    assert by_model["popularity"]["params"] is None and by_model["popularity"]["speedup"] is None


def test_the_newest_run_of_a_student_wins_and_other_teachers_are_left_out():
    workspace = record("workspace", "tinynewsrec", 2, 0.67, 1400.0)
    exps = [
        record("tb-new", "tinybert", 2, 0.63, 1400.0, created="2026-11-23T12:00:00"),
        record("tb-old", "tinybert", 2, 0.61, 1400.0, created="2026-11-23T11:00:00"),
        record("other-teachers", "newsbert", 2, 0.70, 1400.0, teacher__epochs=9),
        record("other-eval", "newsbert", 4, 0.62, 900.0, eval__bench_batch=8),  # eval params may differ
    ]
    rows = {r["model"]: r for r in results.build_rows(workspace, exps)}
    assert rows["TinyBERT-2"]["source"] == "tb-new" and rows["TinyBERT-2"]["auc"] == 0.63
    assert "NewsBERT-2" not in rows  # its teachers were trained differently: not comparable
    assert rows["NewsBERT-4"]["source"] == "other-eval"


def test_records_from_dvc_exp_show_json():
    exp = record("x", "tinybert", 2, 0.63, 1400.0)
    show = [
        {"rev": "workspace", "name": None, "data": {"rev": "workspace", "params": {}}, "experiments": None},
        {"rev": "abc1234", "name": "main", "data": {"rev": "abc1234", "timestamp": "2026-11-23T09:00:00"},
         "experiments": [{"revs": [{"rev": "def5678", "name": "tinybert-2", "data": {
             "rev": "def5678", "timestamp": "2026-11-23T10:00:00",
             "params": {"params.yaml": {"data": exp["params"]}},
             "metrics": {"metrics/eval.json": {"data": exp["eval"]},
                         "metrics/efficiency.json": {"data": exp["efficiency"]}}}}]},
                         {"revs": [{"rev": "bad", "name": "broken", "data": {
                             "params": {"params.yaml": {"error": {"msg": "no file"}}}}}]},
                         # a running experiment shows its baseline's metrics: left out
                         {"executor": {"state": "running", "name": "tempdir", "local": None}, "name": "running",
                          "revs": [{"rev": "abc1234", "name": "running", "data": {
                              "params": {"params.yaml": {"data": exp["params"]}},
                              "metrics": {"metrics/eval.json": {"data": exp["eval"]}}}}]}]},
    ]
    records = results.records_from_exp_show(show)
    assert len(records) == 1
    assert records[0]["name"] == "tinybert-2" and records[0]["created"] == "2026-11-23T10:00:00"
    assert records[0]["params"]["student"]["method"] == "tinybert"
    assert records[0]["eval"]["student"]["auc"] == 0.63


def test_markdown_table_has_a_line_per_row():
    rows = results.build_rows(record("workspace", "tinynewsrec", 2, 0.67123, 1400.0), [])
    text = results.to_markdown(rows)
    lines = text.strip().splitlines()
    assert len(lines) == 2 + len(rows)
    assert "| Tiny-NewsRec-2 | 2 | 67.12 |" in text and "2.80x" in text


def test_main_writes_both_files(workdir, monkeypatch):
    ws = record("workspace", "tinynewsrec", 2, 0.67, 1400.0)
    (workdir / "params.yaml").write_text(yaml.safe_dump(ws["params"]))
    (workdir / "metrics").mkdir()
    (workdir / "metrics/eval.json").write_text(json.dumps(ws["eval"]))
    (workdir / "metrics/efficiency.json").write_text(json.dumps(ws["efficiency"]))
    seen = []
    monkeypatch.setattr(results, "exp_show", lambda root=None, all_commits=False: seen.append(all_commits) or [])
    results.main([])
    results.main(["--all-commits"])
    assert seen == [False, True]
    rows = json.loads((workdir / "metrics/results.json").read_text())
    assert [r["model"] for r in rows][-1] == "Tiny-NewsRec-2"
    assert (workdir / "metrics/results.md").read_text() == results.to_markdown(rows)


def test_main_without_metrics_names_the_pipeline(workdir):
    (workdir / "params.yaml").write_text(yaml.safe_dump(BASE_PARAMS))
    with pytest.raises(DataError, match=r"metrics/eval.json is missing.*dvc repro"):
        results.main([])
