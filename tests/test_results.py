"""The results table: the plan, the run command, row identity, the paired bootstrap, and build's
md/json/png on fake experiments (plus one real `dvc exp run` on a one-stage repository)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from matplotlib.text import Text

from tinynewsrec import results
from tinynewsrec.errors import DataError
from conftest import ROOT

BASE_PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
N_IMPRESSIONS = 60


# --- the plan and the run command ---------------------------------------------------------------


def test_committed_plan_parses_and_lists_the_issue_rows():
    plan, reference = results.read_plan(ROOT / "results.yaml")
    names = {p.name for p in plan}
    assert reference == "workspace"
    assert {"workspace", "teachers-ft", "teachers-fp", "tinynewsrec-1", "tinynewsrec-4", "no_kd-1", "no_kd-2",
            "no_kd-4", "last_layers_kd-2", "newsbert-2"} <= names
    assert {"tinynewsrec-2-seed43", "tinynewsrec-2-seed44", "no_kd-2-seed43", "teachers-dp-seed44"} <= names
    for p in plan:  # every override is a key of params.yaml
        results.apply_overrides(BASE_PARAMS, {k: v for k, v in p.overrides.items() if k != "student.method"})


def test_the_kd_plan_parses_and_writes_its_own_table():
    from pathlib import Path

    from tinynewsrec.distill.methods import method_names

    plan, reference = results.read_plan(ROOT / "results-kd.yaml")
    names = {p.name for p in plan}
    assert reference == "workspace"
    layers = {f"{m}-{n}" for m in ("standard_kd", "simplified_tinybert", "no_kd", "tinynewsrec") for n in (1, 2, 4)}
    assert (layers - {"tinynewsrec-2"}) | {"tinybert-2", "workspace"} <= names
    main_plan = {p.name: p.overrides for p in results.read_plan(ROOT / "results.yaml")[0]}
    for p in plan:
        assert p.overrides.get("student.method", "tinynewsrec") in method_names()
        if not p.is_workspace:  # the same experiment in the main plan, so one commit can have both tables
            assert (results.apply_overrides(BASE_PARAMS, main_plan[p.name])
                    == results.apply_overrides(BASE_PARAMS, p.overrides))
    assert results.outputs(Path("metrics/results_kd")) == (
        Path("metrics/results_kd.md"), Path("metrics/results_kd.json"), Path("metrics/results_kd.png"))
    assert results.outputs() == (results.OUT_MD, results.OUT_JSON, results.OUT_PNG)


def test_seed_copies_set_the_seeds_of_their_rows():
    plan, _ = results.parse_plan({"experiments": [
        {"name": "workspace", "rows": ["teachers", "student"]},
        {"name": "s2", "set": {"student.layers": 2}, "rows": ["student"], "seeds": [43]},
        {"name": "t", "set": {"student.method": "no_kd"}, "rows": [], "seeds": [7], "seed_rows": ["teachers"]},
    ]})
    by_name = {p.name: p for p in plan}
    assert by_name["s2-seed43"].overrides == {"student.layers": 2, "stage1.seed": 43, "stage2.seed": 43}
    assert by_name["s2-seed43"].rows == ["student"]
    assert by_name["t-seed7"].overrides == {"student.method": "no_kd", "teacher.seed": 7}
    assert by_name["t"].rows == [] and by_name["t-seed7"].rows == ["teachers"]


def test_plan_errors_are_one_line(tmp_path):
    with pytest.raises(DataError, match="results.yaml is missing"):
        results.read_plan(tmp_path / "results.yaml")
    with pytest.raises(DataError, match="not a key of params.yaml"):
        results.apply_overrides(BASE_PARAMS, {"student.layerz": 2})
    with pytest.raises(DataError, match="unique"):
        results.parse_plan({"experiments": [{"name": "a"}, {"name": "a"}]})


def test_experiments_run_up_to_a_stage_of_the_pipeline_that_writes_the_rows():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert "metrics/eval.json" in str(stages[results.TARGET]["metrics"])


def test_exp_run_command_is_an_argument_list():
    cmd = results.exp_run_command("ft", {"post_train.method": "none", "student.layers": 2, "student.teacher": None,
                                         "plm.name": "42"})
    assert cmd[1:] == ["-m", "dvc", "exp", "run", "--temp", "-n", "ft", "-S", "post_train.method=none",
                       "-S", "student.layers=2", "-S", "student.teacher=null", "-S", 'plm.name="42"',
                       "evaluate"]


def show_json(baseline_params, exps):
    """A `dvc exp show --json` of HEAD with experiments ``[(name, params, eval)]``."""
    def data(rev, params, ev, ts):
        return {"rev": rev, "timestamp": ts, "params": {"params.yaml": {"data": params}},
                "metrics": {"metrics/eval.json": {"data": ev}}}

    return [
        {"rev": "workspace", "name": None, "data": data("workspace", baseline_params, {}, None), "experiments": None},
        {"rev": "c" * 40, "name": "main", "data": data("c" * 40, baseline_params, {}, "2026-11-23T09:00:00"),
         "experiments": [{"revs": [{"rev": f"{k:040d}", "name": name, "data": data(f"{k:040d}", params, ev,
                                                                                 f"2026-11-23T10:0{k}:00")}],
                          "executor": None, "name": name} for k, (name, params, ev) in enumerate(exps)]},
    ]


def test_run_skips_present_experiments_and_runs_the_rest(workdir):
    (workdir / "params.yaml").write_text(yaml.safe_dump(BASE_PARAMS))
    plan, _ = results.parse_plan({"experiments": [
        {"name": "workspace", "rows": ["teachers"]},
        {"name": "same", "set": {}, "rows": ["student"]},                      # = the workspace
        {"name": "done", "set": {"student.layers": 1}, "rows": ["student"]},
        {"name": "todo", "set": {"student.layers": 4}, "rows": ["student"]},
        {"name": "norows", "set": {"student.layers": 3}, "rows": []},
        {"name": "stale", "set": {"student.layers": 6}, "rows": ["student"]},
    ]})
    done = results.apply_overrides(BASE_PARAMS, {"student.layers": 1})
    stale = results.apply_overrides(BASE_PARAMS, {"student.layers": 5})  # an older run of the name
    show = show_json(BASE_PARAMS, [("done", done, {"student": {}}), ("stale", stale, {"student": {}})])
    calls = []
    failed = results.run_plan(workdir, plan, runner=lambda cmd, cwd: calls.append(cmd) or 0, show=lambda root: show)
    assert failed == []
    assert calls[0][1:] == ["-m", "dvc", "repro"]
    assert [c[c.index("-n") + 1] for c in calls[1:]] == ["todo", "stale-2"]  # never replaces an experiment
    assert calls[1][-3:] == ["-S", "student.layers=4", "evaluate"]


def test_a_failed_experiment_is_reported_and_the_rest_still_run(workdir, caplog):
    (workdir / "params.yaml").write_text(yaml.safe_dump(BASE_PARAMS))
    plan, _ = results.parse_plan({"experiments": [
        {"name": "workspace", "rows": ["student"]},
        {"name": "a", "set": {"student.layers": 1}, "rows": ["student"]},
        {"name": "b", "set": {"student.layers": 4}, "rows": ["student"]}]})
    calls = []

    def runner(cmd, cwd):
        calls.append(cmd)
        return 1 if "a" in cmd else 0

    with caplog.at_level("INFO", logger="tinynewsrec"):
        failed = results.run_plan(workdir, plan, runner=runner, show=lambda root: show_json(BASE_PARAMS, []),
                                  repro=False)
    assert failed == ["a"] and len(calls) == 2
    assert "a FAILED (exit 1)" in caplog.text and "b done in" in caplog.text


# --- row identity ---------------------------------------------------------------------------------


def record(name, params, ev, rev=None):
    return {"name": name, "rev": rev, "commit": "c" * 40, "params": params, "created": None,
            "metrics": {"metrics/eval.json": ev}}


def test_rows_that_differ_in_one_param_are_two_rows_identical_params_one_row():
    ws = record("workspace", BASE_PARAMS, {"teacher_0": {"auc": 0.6}, "student": {"auc": 0.7}})
    lr = results.apply_overrides(BASE_PARAMS, {"stage2.lr": 0.001})
    exps = [record("lr", lr, {"teacher_0": {"auc": 0.6}, "student": {"auc": 0.71}}, rev="1" * 40)]
    plan, _ = results.parse_plan({"experiments": [
        {"name": "workspace", "rows": ["teachers", "student"]},
        {"name": "tnr-2", "set": {}, "rows": ["student"]},
        {"name": "lr", "set": {"stage2.lr": 0.001}, "rows": ["teachers", "student"]}]})
    found, missing = results.match_plan(plan, ws, exps)
    assert missing == [] and found["tnr-2"] is ws
    rows = results.collect_rows(plan, found)
    assert [(r["id"], r["runs"]) for r in rows] == [
        ("workspace/teacher_0", ["workspace", "lr"]),  # the teachers do not read stage2: the same row
        ("workspace/student", ["workspace", "tnr-2"]),  # identical params: one row
        ("lr/student", ["lr"]),                          # one param differs: another row
    ]


def test_seed_copies_form_a_group_but_stay_rows():
    s43 = results.apply_overrides(BASE_PARAMS, {"stage1.seed": 43, "stage2.seed": 43})
    ws = record("workspace", BASE_PARAMS, {"student": {"auc": 0.7}})
    exp = record("s43", s43, {"student": {"auc": 0.72}}, rev="1" * 40)
    plan, _ = results.parse_plan({"experiments": [{"name": "workspace", "rows": ["student"]},
                                                  {"name": "s", "set": {}, "rows": ["student"], "seeds": [43]}]})
    found, _ = results.match_plan(plan, ws, [exp])
    rows = results.collect_rows(plan, found)
    assert len(rows) == 2 and rows[0]["seed_key"] == rows[1]["seed_key"]


# --- the paired bootstrap -----------------------------------------------------------------------


def test_bootstrap_of_identical_rows_is_zero():
    rng = np.random.default_rng(1)
    ref = rng.uniform(0.3, 0.9, 500)
    out = results.paired_bootstrap({"same": ref.copy()}, ref, resamples=200)
    assert out["same"] == {"diff": 0.0, "lo": 0.0, "hi": 0.0}


def test_bootstrap_of_a_constant_shift_is_that_shift_and_skips_nan_pairs():
    rng = np.random.default_rng(2)
    ref = rng.uniform(0.3, 0.9, 500)
    ref[::7] = np.nan  # impressions without a click or a non-click
    shifted = ref + 0.03
    shifted[3] = np.nan
    out = results.paired_bootstrap({"up": shifted}, ref, resamples=200)["up"]
    assert out["diff"] == pytest.approx(0.03) and out["lo"] == pytest.approx(0.03) and out["hi"] == pytest.approx(0.03)


def test_bootstrap_interval_is_the_same_resamples_for_every_row():
    rng = np.random.default_rng(3)
    ref = rng.uniform(0.3, 0.9, 400)
    noisy = ref + rng.normal(0.01, 0.05, 400)
    a = results.paired_bootstrap({"x": noisy, "y": noisy.copy()}, ref, resamples=300)
    b = results.paired_bootstrap({"x": noisy}, ref, resamples=300)
    assert a["x"] == a["y"] == b["x"]
    assert a["x"]["lo"] < a["x"]["diff"] < a["x"]["hi"]
    assert a["x"]["hi"] - a["x"]["lo"] == pytest.approx(2 * 1.96 * 0.05 / np.sqrt(400), rel=0.25)


# --- build on fake experiments ------------------------------------------------------------------


class FolderFetcher(results.Fetcher):
    """Each record's files under ``base/<record name>/`` instead of DVC's cache."""

    def get(self, record, path):
        local = self.root / record["name"] / path
        return local if local.exists() else None


def write_experiment(base: Path, name: str, ev: dict, teachers: int, students: dict[str, dict], seed=0):
    """metrics, impressions.parquet and model config.json files of one fake experiment."""
    folder = base / name
    rng = np.random.default_rng(seed)
    columns = {"impression_id": pa.array(np.arange(N_IMPRESSIONS), pa.int64())}
    for row, metrics in ev.items():
        for k in results.METRICS:
            values = rng.normal(0, 0.05, N_IMPRESSIONS)
            values[:3] = np.nan
            values += metrics[k] - np.nanmean(values)  # eval.json's metric is the mean over impressions
            columns[f"{row}/{k}"] = pa.array(values, pa.float64())
    (folder / "data/eval").mkdir(parents=True)
    pq.write_table(pa.table(columns), folder / results.IMPRESSIONS)
    for i in range(teachers):
        (folder / f"models/teacher_{i}").mkdir(parents=True)
        (folder / f"models/teacher_{i}/config.json").write_text(json.dumps({"model": "plmnr", "steps": 80}))
    for row, config in students.items():
        (folder / f"models/{row}").mkdir(parents=True)
        (folder / f"models/{row}/config.json").write_text(json.dumps({"model": "plmnr", **config}))
    stage1 = 149 if students.get("student", {}).get("method") == "tinynewsrec" else 0
    (folder / "models/student_stage1").mkdir(parents=True)
    (folder / "models/student_stage1/config.json").write_text(
        json.dumps({"model": "plmnr", "steps": stage1} if stage1 else {"model": "unused", "steps": 0}))


def fake_world(base: Path):
    ev = {"teacher_0": {"auc": 0.65, "mrr": 0.33, "ndcg5": 0.38, "ndcg10": 0.46},
          "teacher_1": {"auc": 0.66, "mrr": 0.34, "ndcg5": 0.39, "ndcg10": 0.47},
          "popularity": {"auc": 0.55, "mrr": 0.27, "ndcg5": 0.30, "ndcg10": 0.39},
          "student": {"auc": 0.67, "mrr": 0.35, "ndcg5": 0.40, "ndcg10": 0.49}}
    post = {"checkpoint_steps": [129, 149], "steps": 149}
    params = json.loads(json.dumps(BASE_PARAMS))
    params["teacher"]["ids"] = [0, 1]
    ws = {"name": "workspace", "rev": None, "commit": "a" * 40, "dirty": False, "params": params, "created": None,
          "metrics": {"metrics/eval.json": ev, "metrics/post_train.json": post}}
    write_experiment(base, "workspace", ev, 2, {"student": {"method": "tinynewsrec", "steps": 80}})
    exps = []
    specs = [("no_kd-2", {"student.method": "no_kd"}, 0.655, {}),
             ("tnr-2-seed43", {"stage1.seed": 43, "stage2.seed": 43}, 0.665, {}),
             ("teachers-ft", {"post_train.method": "none", "student.method": "no_kd"}, 0.64, {"teachers": True}),
             ("adhoc", {"student.layers": 3}, 0.5, {})]
    for k, (name, overrides, auc, opts) in enumerate(specs, 1):
        e = json.loads(json.dumps(ev))
        e["student"]["auc"] = auc
        if opts.get("teachers"):
            e["teacher_0"]["auc"], e["teacher_1"]["auc"] = 0.64, 0.645
        method = overrides.get("student.method", "tinynewsrec")
        write_experiment(base, name, e, 2, {"student": {"method": method, "steps": 80}}, seed=k)
        exps.append({"name": name, "rev": f"{k}" * 40, "commit": "a" * 40, "params": results.apply_overrides(
            params, overrides), "created": f"2026-11-23T10:0{k}:00",
            "metrics": {"metrics/eval.json": e, "metrics/post_train.json": post}})
    plan, reference = results.parse_plan({"experiments": [
        {"name": "workspace", "rows": ["teachers", "popularity", "student"]},
        {"name": "teachers-ft", "set": {"post_train.method": "none", "student.method": "no_kd"}, "rows": ["teachers"]},
        {"name": "tnr-2", "set": {}, "rows": ["student"], "seeds": [43, 44]},
        {"name": "no_kd-2", "set": {"student.method": "no_kd"}, "rows": ["student"]}]})
    return plan, reference, ws, exps


def fake_measure(folders):
    speed = {"teacher": 500.0}
    return {name: {"params": 22_800_000 if "teacher" in name else 15_700_000, "news_encoder_params": 1, "size_mb": 1,
                   "news_per_s": speed.get("teacher") if "teacher" in name else 1450.0, "user_latency_ms": 0.1,
                   "layers": 6 if "teacher" in name else 2} for name in folders}


@pytest.fixture
def built(tmp_path):
    plan, reference, ws, exps = fake_world(tmp_path)
    measured = []
    table = results.build_table(plan, reference, ws, exps, FolderFetcher(tmp_path, tmp_path / "scratch"),
                                lambda folders: measured.append(sorted(folders)) or fake_measure(folders),
                                display=lambda m: {"tinynewsrec": "Tiny-NewsRec", "no_kd": "no KD"}[m], resamples=200)
    return table, measured, tmp_path


def test_build_has_every_planned_row_with_params_budget_and_interval(built):
    table, measured, _ = built
    by_label = {r["label"]: r for r in table["rows"]}
    assert list(by_label) == ["teacher_0 (DP)", "teacher_1 (DP)", "popularity", "Tiny-NewsRec-2 seed 42",
                              "teacher_0 (FT)", "teacher_1 (FT)", "Tiny-NewsRec-2 seed 43", "no KD-2"]
    assert table["reference"]["row"] == "teacher_1" and table["missing"] == ["tnr-2-seed44"]
    assert table["left_out"] == ["adhoc"]
    # one timing run for every model row, side by side
    assert len(measured) == 1 and len(measured[0]) == 7
    tnr = by_label["Tiny-NewsRec-2 seed 42"]
    assert tnr["runs"] == ["workspace", "tnr-2"] and tnr["params"]["student"]["method"] == "tinynewsrec"
    assert (tnr["stage1_steps"], tnr["click_steps"]) == (149, 80)
    assert by_label["no KD-2"]["stage1_steps"] == 0
    assert by_label["teacher_1 (DP)"]["post_train_steps"] == 149 and by_label["teacher_0 (FT)"]["post_train_steps"] == 0
    assert tnr["speedup"] == pytest.approx(2.9) and by_label["teacher_1 (DP)"]["speedup"] == 1.0
    best = by_label["teacher_1 (DP)"]
    assert (best["auc_diff"], best["auc_diff_lo"], best["auc_diff_hi"]) == (0.0, 0.0, 0.0)
    assert tnr["auc_diff_lo"] < tnr["auc_diff"] < tnr["auc_diff_hi"]
    assert tnr["commit"] == "a" * 40 and by_label["no KD-2"]["experiment_rev"] == "1" * 40
    assert table["notes"] == []  # per-impression AUC agrees with eval.json
    [group] = table["seed_groups"]
    assert group["label"] == "Tiny-NewsRec-2" and group["seeds"] == ["42", "43"] and not group["headline"]
    assert group["auc_mean"] == pytest.approx(0.6675) and group["auc_std"] == pytest.approx(np.std([0.67, 0.665], ddof=1))


def test_build_writes_markdown_json_and_a_picture(built):
    table, _, root = built
    results.write_outputs(table, root)
    md = (root / results.OUT_MD).read_text()
    header = md.splitlines()[2]
    for column in ("post-train steps", "stage-1 steps", "click steps", "ΔAUC vs best teacher [95% CI]", "speed-up",
                   "commit", "seed"):
        assert column in header
    assert "| Tiny-NewsRec-2 seed 42 | 2 | 42 |  | 149 | 80 | 67.00 |" in md
    assert "one row for workspace, tnr-2 (identical params)" in md and "not run yet: tnr-2-seed44" in md
    assert "Over seeds" in md and "left out: adhoc" in md
    saved = json.loads((root / results.OUT_JSON).read_text())
    assert len(saved["rows"]) == len(table["rows"]) and saved["rows"][0]["params"]["teacher"]["ids"] == [0, 1]
    png = (root / results.OUT_PNG).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1200, 720)


# --- the picture --------------------------------------------------------------------------------

REF_AUC = 0.66


def picture_row(run: str, row: str, label: str, kind: str, method: str, auc: float, speedup: float | None,
                layers: int | None = None, half_width: float = 0.01) -> dict:
    diff = auc - REF_AUC
    return {"id": f"{run}/{row}", "label": label, "row": row, "kind": kind, "method": method, "layers": layers,
            "auc": auc, "auc_diff": diff, "auc_diff_lo": diff - half_width, "auc_diff_hi": diff + half_width,
            "speedup": speedup, "runs": [run]}


def picture_table(popularity: float = 0.543, students: list[dict] | None = None) -> dict:
    """Four DP and four FT teachers (teacher_2 of the workspace is the best), popularity, the oracle, a
    Tiny-NewsRec-2 seed group of three rows, no KD-1 and a student without a speed-up."""
    rows = [picture_row(run, f"teacher_{i}", f"teacher_{i} ({name})", "teacher", method, auc, speed, 6)
            for run, name, method, aucs in (("workspace", "DP", "dp", (0.652, 0.651, REF_AUC, 0.657)),
                                             ("teachers-ft", "FT", "none", (0.664, 0.668, 0.655, 0.662)))
            for i, (auc, speed) in enumerate(zip(aucs, (0.84, 1.03, 1.0, 1.06)))]
    rows[2]["auc_diff"] = rows[2]["auc_diff_lo"] = rows[2]["auc_diff_hi"] = 0.0
    rows += [picture_row("workspace", "popularity", "popularity", "reference", "popularity", popularity, None),
             picture_row("workspace", "oracle", "oracle", "reference", "oracle", 0.789, None)]
    seeds = [picture_row(run, "student", f"Tiny-NewsRec-2 seed {seed}", "student", "tinynewsrec", auc, speed, 2)
             for run, seed, auc, speed in (("workspace", 42, 0.671, 3.24), ("tnr-2-seed43", 43, 0.670, 3.08),
                                           ("tnr-2-seed44", 44, 0.669, 2.88))]
    rows += seeds + (students if students is not None else [
        picture_row("no_kd-1", "student", "no KD-1", "student", "no_kd", 0.641, 5.8, 1),
        picture_row("no_kd-3", "student", "no KD-3", "student", "no_kd", 0.65, None, 3)])
    groups = [{"label": "Tiny-NewsRec-2", "rows": [r["id"] for r in seeds], "seeds": ["42", "43", "44"],
               "auc_mean": 0.670}]
    return {"reference": {"experiment": "workspace", "row": "teacher_2", "auc": REF_AUC, "id": "workspace/teacher_2"},
            "bootstrap": {"resamples": 1000, "seed": 0, "level": 0.95}, "rows": rows, "seed_groups": groups}


def drawn_text(fig) -> tuple[list[str], list[str], str]:
    """The labels on the axes, the legend's entries and the figure's caption."""
    ax = fig.axes[0]
    return ([t.get_text() for t in ax.texts], [t.get_text() for t in ax.get_legend().get_texts()],
            " ".join(t.get_text() for t in fig.texts))


def test_picture_labels_each_seed_group_once_and_each_teacher_group_once():
    fig = results.figure(picture_table())
    labels, legend, caption = drawn_text(fig)
    students = [t for t in labels if "axis" not in t]
    assert sorted(students) == ["Tiny-NewsRec-2 (3 seeds)", "no KD-1"]  # no per-seed, per-teacher labels
    assert [e for e in legend if e.startswith("teachers")] == ["teachers, DP post-training (4)",
                                                              "teachers, FT, no post-training (4)"]
    assert "best teacher: teacher_2 (DP), 66.0" in legend
    [group] = [a for a in fig.axes[0].texts if a.get_text() == "Tiny-NewsRec-2 (3 seeds)"]
    assert group.xy == pytest.approx(((3.24 + 3.08 + 2.88) / 3, 67.0))  # the seeds' mean
    # each seed is drawn (small) at its own point
    points = {(round(float(line.get_xdata()[0]), 3), round(float(line.get_ydata()[0]), 3))
              for line in fig.axes[0].lines if len(line.get_xdata()) == 1}
    assert {(3.24, 67.1), (3.08, 67.0), (2.88, 66.9)} <= points
    assert "mean of the seeds' intervals" in caption and "Not drawn (no speed-up measured): no KD-3." in caption


def test_picture_y_axis_fits_the_models_and_names_a_far_popularity_at_the_edge():
    fig = results.figure(picture_table(popularity=0.543))
    lo, hi = fig.axes[0].get_ylim()
    assert 62.0 < lo < 63.1 and 68.0 < hi < 69.0  # the models' intervals (63.1 .. 68.0) and a margin
    labels, legend, _ = drawn_text(fig)
    assert "↓ popularity 54.3, below the axis" in labels and "↑ oracle 78.9, above the axis" in labels
    assert not any(e.startswith("popularity") for e in legend)


def test_picture_draws_a_near_popularity_as_a_line():
    fig = results.figure(picture_table(popularity=0.625))
    lo, _ = fig.axes[0].get_ylim()
    labels, legend, _ = drawn_text(fig)
    assert lo < 62.5 and "popularity, 62.5" in legend and not any("popularity" in t for t in labels)
    assert any(list(line.get_ydata()) == [62.5, 62.5] for line in fig.axes[0].lines)


def test_picture_labels_of_crowded_points_do_not_overlap():
    crowd = [picture_row(f"s{k}", "student", f"student number {k}", "student", f"m{k % 3}", 0.665 + 0.0003 * k,
                         3.0 + 0.01 * k, 2) for k in range(8)]
    fig = results.figure(picture_table(students=crowd))
    fig.canvas.draw()  # an annotation's text is positioned when drawn
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    boxes = [Text.get_window_extent(t, renderer) for t in ax.texts  # the text, not its leader line
             if t.get_text().startswith("student number")]
    assert len(boxes) == 8
    for i, a in enumerate(boxes):
        assert ax.get_window_extent(renderer).contains(a.x0, a.y0)
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)


def test_place_labels_moves_a_label_to_the_nearest_free_height():
    # two 10-pixel labels at the same anchor, a marker right above it: the first stays, the second goes below
    placed = results.place_labels([(0, 50), (0, 50)], [(40, 10), (40, 10)], [(0, 56, 10, 70)], 0, 100, gap=2)
    assert placed == [50, 50 - 5 - 2 - 5]
    # a label that would leave the axes stays inside
    assert results.place_labels([(0, 98)], [(40, 10)], [], 0, 100) == [95]
    assert results.place_labels([(0, 98)], [(40, 10)], [(0, 90, 40, 100)], 0, 100, gap=2) == [90 - 2 - 5]


def test_picture_is_the_same_bytes_every_time(tmp_path):
    table = picture_table()
    results.plot(table, tmp_path / "a.png")
    results.plot(table, tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_build_without_the_reference_names_it(tmp_path):
    plan, reference, ws, exps = fake_world(tmp_path)
    with pytest.raises(DataError, match="reference experiment nope has not been run"):
        results.build_table(plan, "nope", ws, exps, FolderFetcher(tmp_path, tmp_path), fake_measure)


def test_build_without_metrics_names_the_pipeline(workdir):
    (workdir / "params.yaml").write_text(yaml.safe_dump(BASE_PARAMS))
    with pytest.raises(DataError, match=r"metrics/eval.json is missing.*dvc repro"):
        results.read_workspace(workdir)


# --- real DVC: dvc exp run --temp, exp show, DVCFileSystem ----------------------------------------

STAGE = """\
import json, os, yaml
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
p = yaml.safe_load(open("params.yaml"))
auc = {"teacher_0": 0.6, "student": p["stage2"]["steps"] / 100}
for folder, steps in (("models/student", p["stage2"]["steps"]), ("models/teacher_0", 80)):
    os.makedirs(folder, exist_ok=True)
    json.dump({"model": "plmnr", "steps": steps}, open(folder + "/config.json", "w"))
os.makedirs("metrics", exist_ok=True)
json.dump({k: {"auc": v, "mrr": v, "ndcg5": v, "ndcg10": v} for k, v in auc.items()}, open("metrics/eval.json", "w"))
os.makedirs("data/eval", exist_ok=True)
columns = {"impression_id": pa.array(np.arange(20), pa.int64())}
columns.update({f"{k}/{m}": pa.array(np.full(20, v)) for k, v in auc.items() for m in ("auc", "mrr", "ndcg5", "ndcg10")})
pq.write_table(pa.table(columns), "data/eval/impressions.parquet")
"""
DVC_YAML = """\
stages:
  evaluate:  # the stage experiments run up to (results.TARGET)
    cmd: python train.py
    deps: [train.py]
    params: [stage2]
    outs: [models, data/eval]
    metrics:
      - metrics/eval.json:
          cache: false
"""


def test_run_fetch_and_build_on_a_real_one_stage_dvc_repository(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    def sh(*cmd):
        subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)

    sh("git", "init", "-q")
    sh(sys.executable, "-m", "dvc", "init", "-q")
    (repo / "params.yaml").write_text(yaml.safe_dump({"stage2": {"steps": 40, "seed": 42}}))
    (repo / "train.py").write_text(STAGE)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / ".gitignore").write_text("/models\n/data\n")
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "init")
    plan = {"reference": "workspace", "experiments": [
        {"name": "workspace", "rows": ["teachers", "student"]},
        {"name": "long", "set": {"stage2.steps": 80}, "rows": ["student"]}]}
    (repo / "results.yaml").write_text(yaml.safe_dump(plan))
    plan, _ = results.parse_plan(plan)
    calls = []

    def runner(cmd, cwd):
        calls.append(cmd)
        return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True).returncode

    assert results.run_plan(repo, plan, runner=runner) == []
    assert results.run_plan(repo, plan, runner=runner, repro=False) == []  # nothing left to run
    assert len(calls) == 2  # dvc repro, one dvc exp run
    workspace = results.read_workspace(repo)
    _, exps = results.records_from_exp_show(results.exp_show(repo))
    found, missing = results.match_plan(plan, workspace, exps)
    assert missing == [] and found["long"]["name"] == "long"
    fetcher = results.Fetcher(repo, tmp_path / "scratch")
    folder = fetcher.get(found["long"], "models/student")
    assert json.loads((folder / "config.json").read_text())["steps"] == 80  # from the DVC cache, at its rev
    assert fetcher.get(found["long"], "models/nothing") is None
    assert json.loads((fetcher.get(workspace, "models/student") / "config.json").read_text())["steps"] == 40

    # build, end to end (the timing faked: there are no real models here)
    monkeypatch.setattr(results, "measure_efficiency", lambda folders, *a, **k: fake_measure(folders))
    table = results.build(repo, resamples=50)
    assert [(r["id"], r["click_steps"], r["auc_diff"]) for r in table["rows"]] == [
        ("workspace/teacher_0", 80, 0.0), ("workspace/student", 40, pytest.approx(-0.2)),
        ("long/student", 80, pytest.approx(0.2))]
    assert table["rows"][2]["experiment_rev"] == found["long"]["rev"] and (repo / results.OUT_PNG).exists()


# --- timing real (tiny) models side by side ------------------------------------------------------


def test_build_times_every_model_row_in_one_process(tmp_path):
    from test_evaluate import make_world

    world = make_world(tmp_path, teachers=2)
    params = yaml.safe_load((world / "params.yaml").read_text())
    ev = {"teacher_0": {"auc": 0.6, "mrr": 0.3, "ndcg5": 0.3, "ndcg10": 0.4},
          "teacher_1": {"auc": 0.62, "mrr": 0.3, "ndcg5": 0.3, "ndcg10": 0.4},
          "popularity": {"auc": 0.55, "mrr": 0.3, "ndcg5": 0.3, "ndcg10": 0.4}}
    columns = {"impression_id": pa.array(np.arange(10), pa.int64())}
    for row, m in ev.items():
        columns.update({f"{row}/{k}": pa.array(np.full(10, v), pa.float64()) for k, v in m.items()})
    (world / "data/eval").mkdir(parents=True)
    pq.write_table(pa.table(columns), world / results.IMPRESSIONS)
    ws = {"name": "workspace", "rev": None, "commit": None, "params": params, "created": None,
          "metrics": {"metrics/eval.json": ev}}
    plan, reference = results.parse_plan({"experiments": [{"name": "workspace", "rows": ["teachers", "popularity"]}]})
    table = results.build_table(plan, reference, ws, [], results.Fetcher(world, tmp_path / "scratch"),
                                lambda folders: results.measure_efficiency(folders, world, params, impressions=8,
                                                                           progress=False), resamples=50)
    rows = {r["label"]: r for r in table["rows"]}
    assert rows["teacher_1 (DP)"]["speedup"] == 1.0 and rows["teacher_0 (DP)"]["news_per_s"] > 0
    assert rows["teacher_0 (DP)"]["layers"] == 3 and rows["teacher_0 (DP)"]["params_count"] > 0
    folder_mb = sum(f.stat().st_size for f in (world / "models/teacher_0").rglob("*") if f.is_file()) / 2**20
    assert rows["teacher_0 (DP)"]["size_mb"] == pytest.approx(folder_mb, abs=1e-3)  # the folder on disk
    assert rows["popularity"]["news_per_s"] is None and rows["popularity"]["size_mb"] is None
    assert rows["teacher_0 (DP)"]["auc_diff"] == pytest.approx(-0.02)


def test_the_command_line_names_a_missing_plan(workdir):
    with pytest.raises(DataError, match="results.yaml is missing"):
        results.main(["build"])
    with pytest.raises(DataError, match="results.yaml is missing"):
        results.main(["run"])
