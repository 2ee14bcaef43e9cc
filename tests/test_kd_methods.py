"""Standard KD, Simplified TinyBERT and the two-step TinyBERT (distill/methods/_kd.py and its three
method modules): TinyBERT's layer maps, each loss against a formula written out here, the teacher
states computed once equal to the teacher run on every batch, the ensemble's per-sample weights,
the learning-rate schedule, the cross-param checks, and each method through its stages on the
tiny world."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinynewsrec.distill.layer_map import tinybert_maps
from tinynewsrec.distill.methods._kd import TeacherStates, state_bytes, training_news
from tinynewsrec.distill.students import KDStudent, attention_scores, encoder_states
from tinynewsrec.errors import ParamError
from tinynewsrec.models.plmnr import NewsTokens, click_scores
from tinynewsrec.params import load_params
from tinynewsrec.train.distill import read_teachers, DistillPaths
from tinynewsrec.train.loop import LoopConfig, make_scheduler
from conftest import load_stage, write_params
from test_distill import click_batch, config, copy_world, parts, run_student, student_of, teacher_of, world  # noqa: F401


# --- layer maps ----------------------------------------------------------------------------------


@pytest.mark.parametrize("teacher, student, states, layers", [
    # 12 -> 6: the original's teacher states 0, 2, ..., 12 and 0-based attention layers 1, 3, ..., 11
    (12, 6, [0, 2, 4, 6, 8, 10, 12], [2, 4, 6, 8, 10, 12]),
    (6, 2, [0, 3, 6], [3, 6]),
    (6, 1, [0, 6], [6]),
    (6, 6, list(range(7)), list(range(1, 7))),
    # depths that do not divide: round(i T / S), halves up, still ending on the last layer
    (6, 4, [0, 2, 3, 5, 6], [2, 3, 5, 6]),
    (3, 2, [0, 2, 3], [2, 3]),
])
def test_tinybert_maps(teacher, student, states, layers):
    hidden, attention = tinybert_maps(teacher, student)
    assert hidden == list(zip(range(student + 1), states))
    assert attention == list(zip(range(1, student + 1), layers))
    if teacher % student == 0:
        k = teacher // student
        assert [t for _, t in hidden] == [i * k for i in range(student + 1)]
        assert [t - 1 for _, t in attention] == [i * k + k - 1 for i in range(student)]


# --- the losses ------------------------------------------------------------------------------------


def exported(parts, ids=(1,)):
    tables, users = read_teachers(DistillPaths(teacher_emb=parts["world"] / "data/teacher_emb"), list(ids), ("news",),
                                  int(parts["tokens"].column("news_index").to_numpy().max()) + 1, user_encoders=True)
    return tables["news"], users


def scores_by_hand(student, batch):
    vecs = student.news_encoder(batch["news_tokens"])
    users = student.user_encoder(vecs[batch["history"]], batch["history_mask"])
    return click_scores(users, vecs[batch["candidates"]])


def teacher_scores_by_hand(tables, users, batch):
    """Teacher i's scores from its global table (rows by news_index) and the batch's local positions."""
    local = tables[:, batch["news_index"]]
    return torch.stack([click_scores(u(local[i][batch["history"]], batch["history_mask"]),
                                     local[i][batch["candidates"]]) for i, u in enumerate(users)])


def test_standard_kd_is_alpha_soft_plus_one_minus_alpha_hard(parts):
    tables, users = exported(parts)
    student = student_of(parts).eval()
    batch = click_batch(parts, teacher_news=tables)
    T, alpha = 2.0, 0.3
    module = KDStudent(student, 0.0, 0.0, alpha, 1 - alpha, T, user_encoders=users)
    loss, got = module(batch)
    s = scores_by_hand(student, batch)
    t = teacher_scores_by_hand(tables, users, batch)[0]
    soft = -(F.softmax(t / T, -1) * F.log_softmax(s / T, -1)).sum(-1).mean()
    hard = F.cross_entropy(s, torch.zeros(len(s), dtype=torch.long))
    assert loss.item() == pytest.approx((alpha * soft + (1 - alpha) * hard).item(), rel=1e-5)
    assert got["soft_ce"] == pytest.approx(soft.item(), rel=1e-5) and "hidden_mse" not in got


def test_the_ensemble_mixes_the_teachers_per_sample_with_tiny_newsrecs_weights(parts):
    tables, users = exported(parts, ids=(0, 1))
    batch = click_batch(parts, teacher_news=tables)
    module = KDStudent(student_of(parts), 0.0, 0.0, 1.0, 0.0, user_encoders=users)
    t = teacher_scores_by_hand(tables, users, batch)  # [2, B, C]
    loss_i = torch.stack([F.cross_entropy(x, torch.zeros(x.shape[0], dtype=torch.long), reduction="none") for x in t])
    w = torch.softmax(-loss_i, dim=0)
    expected = (w.unsqueeze(-1) * t).sum(0)
    assert torch.allclose(module.teacher_scores(batch), expected, atol=1e-6)
    assert not torch.allclose(expected, t[0]) and not torch.allclose(expected, t[1])


def states_of(parts, teacher, pairs, layers, cached, dtype=torch.float32):
    pool = training_news(parts["samples"])
    return TeacherStates(teacher, NewsTokens(parts["tokens"], "title_ids"), pool, [t for _, t in pairs],
                         [t for _, t in layers], title_len=32, cached=cached, dtype=dtype)


def test_simplified_tinybert_sums_attention_hidden_soft_and_hard_over_the_mapped_layers(parts):
    tables, users = exported(parts)
    teacher = teacher_of(parts).eval()
    hidden_pairs, attention_pairs = tinybert_maps(3, 2)
    states = states_of(parts, teacher, hidden_pairs, attention_pairs, cached=False)
    batch = click_batch(parts, teacher_states=states, teacher_news=tables)
    student = student_of(parts).eval()
    module = KDStudent(student, 1.0, 1.0, 1.0, 1.0, user_encoders=users, hidden_pairs=hidden_pairs,
                       attention_pairs=attention_pairs, teacher_hidden=32)
    assert module.fit_dense is None  # same width
    loss, got = module(batch)

    # by hand, from Hugging Face's own outputs: hidden states and pre-softmax scores over real tokens
    news = batch["news_tokens"]
    mask = news["attention_mask"].bool()
    with torch.no_grad():
        s_out = student.plm(**news, output_hidden_states=True)
        t_out = teacher.plm(**news, output_hidden_states=True)
    pair_mask = (mask.unsqueeze(-1) & mask.unsqueeze(-2)).unsqueeze(1)

    def per_text_mean(err, m):
        return ((err * m).flatten(1).sum(1) / m.flatten(1).sum(1)).mean()

    hid = sum(per_text_mean((s_out.hidden_states[i] - t_out.hidden_states[t]).pow(2).mean(-1), mask.float())
              for i, t in hidden_pairs)
    att = 0.0
    with torch.no_grad():
        for j, t in attention_pairs:
            a_s = attention_scores(student.plm.encoder.layer[j - 1], s_out.hidden_states[j - 1])
            a_t = attention_scores(teacher.plm.encoder.layer[t - 1], t_out.hidden_states[t - 1])
            att = att + per_text_mean((a_s - a_t).pow(2), pair_mask.expand_as(a_s).float())
    s = scores_by_hand(student, batch)
    t = teacher_scores_by_hand(tables, users, batch)[0]
    soft = -(F.softmax(t, -1) * F.log_softmax(s, -1)).sum(-1).mean()
    hard = F.cross_entropy(s, torch.zeros(len(s), dtype=torch.long))
    assert got["hidden_mse"] == pytest.approx(float(hid), rel=1e-4)
    assert got["attention_mse"] == pytest.approx(float(att), rel=1e-4)
    assert loss.item() == pytest.approx(float((hid + att + soft + hard).detach()), rel=1e-4)


def test_tinybert_step_one_trains_no_score_and_step_two_only_the_soft_loss(parts):
    tables, users = exported(parts)
    hidden_pairs, attention_pairs = tinybert_maps(3, 2)
    states = states_of(parts, teacher_of(parts).eval(), hidden_pairs, attention_pairs, cached=True)
    batch = click_batch(parts, teacher_states=states, teacher_news=tables)
    step1 = KDStudent(student_of(parts), 1.0, 1.0, 0.0, 0.0, hidden_pairs=hidden_pairs,
                      attention_pairs=attention_pairs)
    _, got = step1(batch)
    assert set(got) == {"attention_mse", "hidden_mse", "total"}
    step2 = KDStudent(student_of(parts), 0.0, 0.0, 1.0, 0.0, user_encoders=users)
    _, got = step2({k: v for k, v in batch.items() if k != "teacher_states"})
    assert set(got) == {"soft_ce", "accuracy", "total"}


# --- teacher states computed once ------------------------------------------------------------------


def test_cached_teacher_states_equal_the_teacher_run_on_every_batch_and_each_news_runs_once(parts):
    teacher = teacher_of(parts).eval()
    hidden_pairs, attention_pairs = tinybert_maps(3, 2)
    online = states_of(parts, teacher, hidden_pairs, attention_pairs, cached=False)
    cached = states_of(parts, teacher, hidden_pairs, attention_pairs, cached=True)
    seen = set()
    for start in (0, 4, 0, 8):  # overlapping batches, one repeated
        batch = click_batch(parts, n=4) if start == 0 else collate_slice(parts, start)
        idx = batch["news_index"].numpy()
        seen |= set(idx.tolist())
        a, b = online.batch(idx), cached.batch(idx)
        width = batch["news_tokens"]["attention_mask"].shape[1]
        m = batch["news_tokens"]["attention_mask"].bool()
        for s in online.states:
            assert a["hidden"][s].shape == b["hidden"][s].shape == (len(idx), width, 32)
            assert torch.allclose(a["hidden"][s][m], b["hidden"][s][m], atol=1e-5)
        for layer in online.layers:
            pairs = (m.unsqueeze(-1) & m.unsqueeze(-2)).unsqueeze(1).expand_as(a["attention"][layer - 1])
            assert torch.allclose(a["attention"][layer - 1][pairs], b["attention"][layer - 1][pairs], atol=1e-4)
    assert cached.computed == len(seen) < online.computed
    assert cached.kept_bytes == len(seen) * state_bytes(3, 2, 32, 32, 2, 4)


def collate_slice(parts, start, n=4):
    from tinynewsrec.models.plmnr import collate_train

    return collate_train(parts["samples"].slice(start, n), parts["titles"], history_len=20)


def test_float16_teacher_states_stay_within_half_precision(parts):
    teacher = teacher_of(parts).eval()
    hidden_pairs, attention_pairs = tinybert_maps(3, 2)
    exact = states_of(parts, teacher, hidden_pairs, attention_pairs, cached=False)
    half = states_of(parts, teacher, hidden_pairs, attention_pairs, cached=True, dtype=torch.float16)
    idx = click_batch(parts, n=4)["news_index"].numpy()
    a, b = exact.batch(idx), half.batch(idx)
    assert b["hidden"][3].dtype == torch.float32  # handed out as float32
    assert torch.allclose(a["hidden"][3], b["hidden"][3], rtol=2e-3, atol=2e-3)


# --- the schedule ------------------------------------------------------------------------------------


def test_linear_schedule_warms_up_then_decays_and_a_resume_follows_the_same_curve():
    weight = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([weight], lr=1.0)
    cfg = LoopConfig(epochs=2, batch_size=1, seed=0, schedule="linear", warmup=0.25)
    sched = make_scheduler(opt, cfg, total_steps=8)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.0, 0.5, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    make_scheduler(opt2, cfg, total_steps=8, done_steps=4)
    assert opt2.param_groups[0]["lr"] == pytest.approx(lrs[4])
    assert make_scheduler(opt, LoopConfig(epochs=1, batch_size=1, seed=0), 8) is None


# --- params --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["standard_kd", "simplified_tinybert", "tinybert"])
def test_the_new_methods_take_their_weights_from_their_own_section(tmp_path, method):
    write_params(tmp_path, student={"method": method}, stage2={"ce_weight": 0.2})
    with pytest.raises(ParamError, match=rf"stage2\.ce_weight must be null for student\.method {method}.*"
                                         rf"\({method}\.\*_weight\)"):
        load_params(tmp_path / "params.yaml")
    write_params(tmp_path, student={"method": method}, stage2={"tau": 2.0})
    with pytest.raises(ParamError, match=rf"set {method}\.temperature instead"):
        load_params(tmp_path / "params.yaml")
    write_params(tmp_path, student={"method": method}, **{method: {"temperature": 0}})
    with pytest.raises(ParamError, match=rf"{method}\.temperature must be a number > 0"):
        load_params(tmp_path / "params.yaml")
    write_params(tmp_path, student={"method": method, "teacher": 9})
    with pytest.raises(ParamError, match=r"student\.teacher must be one of teacher\.ids"):
        load_params(tmp_path / "params.yaml")


def test_each_method_has_its_paper_schedule():
    from tinynewsrec.distill.methods import get_method

    assert {n: get_method(n).schedule for n in ("standard_kd", "simplified_tinybert", "tinybert", "tinynewsrec",
                                                "no_kd")} == {"standard_kd": "linear", "simplified_tinybert": "linear",
                                                              "tinybert": "linear", "tinynewsrec": "constant",
                                                              "no_kd": "constant"}


# --- through the stages --------------------------------------------------------------------------------


def test_standard_kd_through_the_stages(world, tmp_path, monkeypatch):
    folder = run_student(world, tmp_path, monkeypatch, method="standard_kd")
    assert config(folder / "models/student_stage1")["model"] == "unused"
    student = config(folder / "models/student")
    assert student["method"] == "standard_kd" and student["schedule"] == "linear" and student["teachers"] == [1]
    assert student["weights"] == {"attention": 0.0, "hidden": 0.0, "soft": 0.5, "hard": 0.5}
    assert student["method_params"] == {"alpha": 0.5, "temperature": 1.0, "teachers": "one"}
    train = json.loads((folder / "metrics/student/metrics.json").read_text())["train"]
    assert {"soft_ce", "hard_ce", "lr"} <= set(train) and "hidden_mse" not in train


def test_simplified_tinybert_through_the_stages_computes_each_teacher_news_once(world, tmp_path, monkeypatch):
    folder = run_student(world, tmp_path, monkeypatch, method="simplified_tinybert")
    student = config(folder / "models/student")
    assert student["hidden_map"] == [[0, 0], [1, 2], [2, 3]] and student["attention_map"] == [[1, 2], [2, 3]]
    assert student["teacher_cache"] is True and 0 < student["teacher_news_computed"]
    assert student["teacher_cache_mib"] <= student["teacher_cache_mib_max"]
    train = json.loads((folder / "metrics/student/metrics.json").read_text())["train"]
    assert {"attention_mse", "hidden_mse", "soft_ce", "hard_ce"} <= set(train)


def test_the_cache_and_the_online_teacher_train_the_same_student(world, tmp_path, monkeypatch):
    """float32 storage (the world's plm.cache_dtype): the cache changes the cost, not the result."""
    runs = {}
    for cached in (True, False):
        folder = copy_world(world, tmp_path / str(cached), monkeypatch, method="simplified_tinybert")
        write_section(folder, "simplified_tinybert", cache_teacher=cached)
        load_stage("distill_stage2").main()
        runs[cached] = config(folder / "models/student")
    assert runs[True]["train_loss"] == pytest.approx(runs[False]["train_loss"], rel=1e-4)
    assert runs[True]["teacher_news_computed"] < runs[False]["teacher_news_computed"]


def test_a_cache_over_its_limit_runs_the_teacher_on_every_batch(world, tmp_path, monkeypatch, caplog):
    caplog.set_level("INFO", logger="tinynewsrec")
    folder = copy_world(world, tmp_path, monkeypatch, method="simplified_tinybert")
    write_section(folder, "simplified_tinybert", teacher_cache_gb=1e-6)
    load_stage("distill_stage2").main()
    assert config(folder / "models/student")["teacher_cache"] is False
    assert "more than simplified_tinybert.teacher_cache_gb" in caplog.text


def test_tinybert_runs_its_intermediate_step_then_its_prediction_step(world, tmp_path, monkeypatch):
    folder = run_student(world, tmp_path, monkeypatch, method="tinybert")
    step1, step2 = config(folder / "models/student_stage1"), config(folder / "models/student")
    assert step1["model"] == "plmnr" and step1["method"] == "tinybert" and step1["schedule"] == "linear"
    assert step1["weights"] == {"attention": 1.0, "hidden": 1.0, "soft": 0.0, "hard": 0.0}
    assert step2["weights"] == {"attention": 0.0, "hidden": 0.0, "soft": 1.0, "hard": 0.0}
    s1 = json.loads((folder / "metrics/student_stage1/metrics.json").read_text())["train"]
    assert {"attention_mse", "hidden_mse"} <= set(s1) and "soft_ce" not in s1
    # step 1 moved the layers away from the raw PLM and left the heads as initialised (no score trained)
    from tinynewsrec.distill.students import build_student
    from tinynewsrec.models.plmnr import PLMNR
    from tinynewsrec.models.plm import load_plm

    params = load_params()
    s1m = PLMNR.from_pretrained(folder / "models/student_stage1")
    raw = load_plm(str(folder / "tiny_bert"), num_layers=2)
    w = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(s1m.plm.state_dict()[w], raw.state_dict()[w])
    fresh = build_student(params.plm.name, 2, params.plm.news_dim, params.stage1.seed)
    assert torch.equal(s1m.news_encoder.dense.weight, fresh.news_encoder.dense.weight)
    assert torch.equal(s1m.user_encoder.pooling.proj.weight, fresh.user_encoder.pooling.proj.weight)
    # step 2 moved on from step 1
    s2m = PLMNR.from_pretrained(folder / "models/student")
    assert not torch.equal(s2m.plm.state_dict()[w], s1m.plm.state_dict()[w])
    assert not torch.equal(s2m.news_encoder.dense.weight, s1m.news_encoder.dense.weight)


def write_section(folder, section, **values):
    import yaml

    params = yaml.safe_load((folder / "params.yaml").read_text())
    params[section] = {**params.get(section, {}), **values}
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
