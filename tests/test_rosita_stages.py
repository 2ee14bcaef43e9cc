"""The ``hsk`` and ``rosita`` methods through their stages (prune, hsk_store, distill_stage1,
distill_stage2, evaluate) on the tiny world (3-layer hidden-32 teachers), the teacher-free store
against the teacher online, the store's size limit, and their params checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tinynewsrec.distill.hsk import HSKStore
from tinynewsrec.errors import DataError, ParamError
from tinynewsrec.models.plmnr import PLMNR
from tinynewsrec.models.pruned import PrunedPLMNR
from tinynewsrec.params import load_params
from tinynewsrec.recommender import load_recommender
from conftest import load_stage
from test_distill import config, copy_world, world  # noqa: F401
from test_kd_methods import write_section

#: the tiny teachers have 2 heads, FFN 128, hidden 32
TINY_ROSITA = {"keep_heads": 1, "ffn_dim": 16, "embedding_rank": 8, "importance_batches": 2}


def stage1_and_2():
    load_stage("hsk_store").main()
    load_stage("distill_stage1").main()
    load_stage("distill_stage2").main()


def metrics(folder, name):
    return json.loads((folder / "metrics" / name).read_text())


def test_other_methods_leave_prune_and_hsk_store_as_notes(world, tmp_path, monkeypatch):
    folder = copy_world(world, tmp_path, monkeypatch, method="tinynewsrec")
    load_stage("prune").main()
    load_stage("hsk_store").main()
    assert config(folder / "models/pruned") == {"model": "unused",
                                                "reason": "student.method tinynewsrec does not prune"}
    assert metrics(folder, "prune.json") == {"used": False}
    note = json.loads((folder / "data/hsk/note.json").read_text())
    assert "does not distil hidden-state knowledge" in note["reason"]
    assert metrics(folder, "hsk_store.json")["used"] is False


def test_hsk_trains_teacher_free_from_the_store_then_by_soft_ce(world, tmp_path, monkeypatch):
    folder = copy_world(world, tmp_path, monkeypatch, method="hsk")
    stage1_and_2()
    store = metrics(folder, "hsk_store.json")
    # a 2-layer student keeps all 3 states (0..2) against the 3-layer teacher's round(s 3 / 2) = 0, 2, 3
    assert store["used"] is True and store["pairs"] == [[0, 0], [1, 2], [2, 3]]
    assert store["bytes_on_disk"] >= store["bytes_needed"] > 0
    opened = HSKStore.open(folder / "data/hsk")
    assert opened.meta["teacher"] == 1 and opened.meta["dtype"] == "float16"
    s1, s2 = config(folder / "models/student_stage1"), config(folder / "models/student")
    assert s1["model"] == "plmnr" and s1["teacher_free"] is True and s1["teacher_news_computed"] == 0
    assert s1["hsk_pairs"] == [[0, 0], [1, 2], [2, 3]] and s1["schedule"] == "linear"
    assert s2["weights"] == {"attention": 0.0, "hidden": 0.0, "soft": 1.0, "hard": 0.0} and s2["teachers"] == [1]
    train1 = metrics(folder, "student_stage1/metrics.json")["train"]
    assert "hsk_mse" in train1 and np.isfinite(train1["hsk_mse"])
    # stage 1 trained no score: the heads are the fresh student's; stage 2 moved them
    m1, m2 = PLMNR.from_pretrained(folder / "models/student_stage1"), PLMNR.from_pretrained(folder / "models/student")
    from tinynewsrec.distill.students import build_student

    params = load_params()
    fresh = build_student(params.plm.name, 2, params.plm.news_dim, params.stage1.seed)
    assert torch.equal(m1.news_encoder.dense.weight, fresh.news_encoder.dense.weight)
    assert not torch.equal(m2.news_encoder.dense.weight, m1.news_encoder.dense.weight)
    w = "encoder.layer.1.output.dense.weight"
    assert not torch.equal(m1.plm.state_dict()[w], fresh.plm.state_dict()[w])


def test_the_store_and_the_online_teacher_train_the_same_student(world, tmp_path, monkeypatch):
    """float32 store: teacher-free changes the cost, not the result (1e-4 of the loss)."""
    runs = {}
    for free in (True, False):
        folder = copy_world(world, tmp_path / str(free), monkeypatch, method="hsk")
        write_section(folder, "hsk", teacher_free=free, store_dtype="float32", config="2l_4t_0.5h",
                      token_scheme="attention_no_sep", hidden_scheme="importance_mask_dynamic")
        load_stage("hsk_store").main()
        load_stage("distill_stage1").main()
        runs[free] = config(folder / "models/student_stage1")
    assert runs[True]["teacher_free"] is True and runs[False]["teacher_free"] is False
    assert runs[True]["teacher_news_computed"] == 0 and runs[False]["teacher_news_computed"] > 0
    assert runs[True]["train_loss"] == pytest.approx(runs[False]["train_loss"], rel=1e-4)
    assert runs[True]["hsk_pairs"] == [[1, 2], [2, 3]]


def test_a_store_over_its_limit_is_a_note_and_stage_1_runs_the_teacher_online(world, tmp_path, monkeypatch, caplog):
    caplog.set_level("INFO", logger="tinynewsrec")
    folder = copy_world(world, tmp_path, monkeypatch, method="hsk")
    write_section(folder, "hsk", store_gb=1e-6)
    load_stage("hsk_store").main()
    note = json.loads((folder / "data/hsk/note.json").read_text())
    assert "more than hsk.store_gb" in note["reason"] and note["bytes_needed"] > 1e-6 * 2**30
    assert not (folder / "data/hsk/meta.json").exists()
    load_stage("distill_stage1").main()
    s1 = config(folder / "models/student_stage1")
    assert s1["teacher_free"] is False and s1["teacher_news_computed"] > 0
    assert "online on every batch (the store would take" in caplog.text


def test_a_store_of_another_setting_is_refused(world, tmp_path, monkeypatch):
    folder = copy_world(world, tmp_path, monkeypatch, method="hsk")
    load_stage("hsk_store").main()
    write_section(folder, "hsk", keep_hidden=0.5)
    with pytest.raises(DataError, match="holds the HSK of another setting.*rerun the hsk_store stage"):
        load_stage("distill_stage1").main()


def test_rosita_prunes_distils_and_is_evaluated_as_a_row(world, tmp_path, monkeypatch):
    folder = copy_world(world, tmp_path, monkeypatch, method="rosita")
    write_section(folder, "rosita", **TINY_ROSITA)
    load_stage("prune").main()
    pruned = metrics(folder, "prune.json")
    assert pruned["used"] is True and pruned["importance_batches"] == 2
    assert pruned["heads_per_layer"] == [1, 1] and pruned["ffn_per_layer"] == [16, 16]
    assert pruned["embedding_rank"] == 8 and pruned["pruned_plm_params"] < pruned["teacher_plm_params"]
    assert (folder / "models/pruned/importance.safetensors").is_file()
    stage1_and_2()
    s1, s2 = config(folder / "models/student_stage1"), config(folder / "models/student")
    assert s1["model"] == s2["model"] == "pruned_plmnr" and s1["teacher_free"] is True
    assert s1["pruning"]["heads_per_layer"] == [1, 1]
    # every pruned weight trains in stage 1 (the embedding too), the heads wait for stage 2
    p0 = PrunedPLMNR.from_pretrained(folder / "models/pruned", None)
    p1 = PrunedPLMNR.from_pretrained(folder / "models/student_stage1", None)
    p2 = PrunedPLMNR.from_pretrained(folder / "models/student", None)
    emb = "embeddings.word_embeddings.embed.weight"
    assert emb in p0.plm.state_dict()
    assert not torch.equal(p0.plm.state_dict()[emb], p1.plm.state_dict()[emb])
    assert torch.equal(p0.news_encoder.dense.weight, p1.news_encoder.dense.weight)
    assert not torch.equal(p1.news_encoder.dense.weight, p2.news_encoder.dense.weight)
    # the one Recommender interface loads it; evaluate makes it a row, smaller than the teachers
    assert isinstance(load_recommender(folder / "models/student"), PrunedPLMNR)
    load_stage("evaluate").main()
    results, costs = metrics(folder, "eval.json"), metrics(folder, "efficiency.json")
    assert 0.0 <= results["student"]["auc"] <= 1.0
    assert costs["student"]["params"] < costs["teacher_1"]["params"]
    # the sequential branch's item tables encode with it too (item_emb@student of a rosita run)
    import pyarrow as pa

    from tinynewsrec.seqrec.item_emb import build_table

    params = load_params()
    items = pa.table({"item": pa.array([1, 2, 3]), "text": pa.array(["a storm hits", "the cup final", "markets"])})
    table, meta = build_table("student", items, plm_name=params.plm.name, title_len=params.plm.title_len,
                              hidden=16, teacher=1, seed=0)
    assert table.shape == (4, params.plm.news_dim) and torch.all(table[0] == 0) and meta["model"] == "models/student"


def test_rosita_without_its_pruned_student_says_which_stage_to_run(world, tmp_path, monkeypatch):
    folder = copy_world(world, tmp_path, monkeypatch, method="rosita")
    write_section(folder, "rosita", **TINY_ROSITA)
    load_stage("prune").main()
    (folder / "models/pruned/config.json").write_text(json.dumps({"model": "unused"}))
    load_stage("hsk_store").main()
    with pytest.raises(DataError, match=r"models/pruned holds no pruned student.*dvc repro prune"):
        load_stage("distill_stage1").main()


@pytest.mark.parametrize("method", ["hsk", "rosita"])
@pytest.mark.parametrize("section, match", [
    ({"config": "1l_10t_0.1h", "keep_tokens": 4}, r"\.config \('1l_10t_0.1h'\) sets keep_layers"),
    ({"config": "1l_10tokens"}, r"\.config must look like '1l_10t_0.1h'"),
    ({"keep_layers": 4}, r"keep_layers \(or \w+\.config\) keeps 4 layers of HSK, but student.layers 2 has only 3 hidden states"),
    ({"layer_scheme": "top"}, r"\.layer_scheme must be 't_top' or 't_topN'"),
    ({"token_scheme": "random"}, r"\.token_scheme must be one of"),
    ({"keep_hidden": 0.0}, r"\.keep_hidden"),
    ({"soft_weight": 0.0}, r"soft_weight and hard_weight are both 0"),
])
def test_hsk_settings_are_checked_with_the_key_named(tmp_path, method, section, match):
    from conftest import write_params

    write_params(tmp_path, student={"method": method, "layers": 2}, **{method: section})
    with pytest.raises(ParamError, match=match) as e:
        load_params(tmp_path / "params.yaml")
    assert f"{method}." in str(e.value)


def test_rosita_widths_beyond_the_teachers_are_refused_naming_the_key(world, tmp_path, monkeypatch):
    folder = copy_world(world, tmp_path, monkeypatch, method="rosita")
    write_section(folder, "rosita", **{**TINY_ROSITA, "keep_heads": 3})
    with pytest.raises(ParamError, match=r"rosita\.keep_heads"):
        load_stage("prune").main()
