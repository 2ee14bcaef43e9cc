"""The sequential branch end to end on the tiny synthetic world: sequences -> item_emb@source ->
train_seqrec@<model>-<init> -> evaluate_seqrec, and the stages' one-line errors."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from accelerate import Accelerator

from conftest import load_stage
from test_evaluate import make_world, save_plmnr
from tinynewsrec.errors import DataError, ParamError
from tinynewsrec.models.plm import load_tokenizer
from tinynewsrec.models.plmnr import PLMNR
from tinynewsrec.params import load_params
from tinynewsrec.recommender import load_recommender
from tinynewsrec.seqrec.item_emb import item_tokens, read_item_table
from tinynewsrec.train.loop import LoopConfig, fit

SEQREC = {"teacher": 1, "hidden": 16, "blocks": 1, "max_len": 8, "epochs": 3, "patience": 2, "batch_size": 64,
          "models": ["sasrec", "bert4rec"], "inits": ["random", "student", "plm_cls"], "sampled": 5}
SOURCES = ["random", "plm_mean", "plm_cls", "post_train", "teacher", "student"]


@pytest.fixture(scope="module")
def seq_world(tmp_path_factory):
    folder = make_world(tmp_path_factory.mktemp("seqworld"), teachers=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        save_plmnr(folder / "tiny_bert", "models/student", seed=7)
        set_seqrec(folder, **SEQREC)
        load_stage("sequences").main()
        for source in SOURCES:
            load_stage("item_emb").main([source])
        for model in SEQREC["models"]:
            for init in SEQREC["inits"]:
                load_stage("train_seqrec").main([f"{model}-{init}"])
        load_stage("evaluate_seqrec").main()
    return folder


def set_seqrec(folder, **values):
    """Change seqrec keys of the world's own params.yaml (its plm is the tiny BERT)."""
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params.setdefault("seqrec", {}).update(values)
    (folder / "params.yaml").write_text(yaml.safe_dump(params))


def test_every_source_writes_one_row_per_item_with_padding_zeros(seq_world):
    items = pq.read_table(seq_world / "data/sequences/items.parquet")
    widths = {"random": 16, "plm_mean": 32, "plm_cls": 32, "post_train": 16, "teacher": 16, "student": 16}
    for source, width in widths.items():
        table, meta = read_item_table(seq_world / f"data/item_emb/{source}.safetensors", items.num_rows)
        assert table.shape == (items.num_rows + 1, width) and meta["source"] == source
        assert torch.all(table[0] == 0) and table[1:].abs().sum(1).min() > 0
    assert read_item_table(seq_world / "data/item_emb/teacher.safetensors")[1]["model"] == "models/teacher_1"


def test_the_student_table_is_the_students_news_encoder_on_the_item_titles(seq_world):
    items = pq.read_table(seq_world / "data/sequences/items.parquet")
    table, _ = read_item_table(seq_world / "data/item_emb/student.safetensors")
    student = PLMNR.from_pretrained(seq_world / "models/student").eval()
    tokens = item_tokens(items, load_tokenizer(str(seq_world / "tiny_bert")), title_len=32)
    with torch.no_grad():
        expected = student.encode_news(tokens.batch(np.array([1, 2, 3])))
    assert torch.allclose(table[1:4], expected, atol=1e-5)


def test_each_init_enters_as_declared(seq_world):
    student, _ = read_item_table(seq_world / "data/item_emb/student.safetensors")
    # BERT4Rec keeps the table frozen (its own setting): after training the copy is still the table, exactly
    b4r = load_recommender(seq_world / "models_seqrec/bert4rec-student")
    assert b4r.config.entry == "copy" and b4r.config.table == "frozen"
    assert torch.equal(b4r.user_encoder.items.embedding.weight, student)
    # SASRec trains its copied table: it has moved away from the student's vectors
    sas = load_recommender(seq_world / "models_seqrec/sasrec-student")
    assert sas.config.entry == "copy" and sas.config.table == "trainable"
    assert not torch.equal(sas.user_encoder.items.embedding.weight, student)
    # the 32-wide PLM table enters through a learned projection to the model's 16
    plm, _ = read_item_table(seq_world / "data/item_emb/plm_cls.safetensors")
    proj = load_recommender(seq_world / "models_seqrec/bert4rec-plm_cls")
    assert proj.config.entry == "project" and proj.user_encoder.items.proj.in_features == 32
    assert torch.equal(proj.user_encoder.items.embedding.weight, plm)
    # random: always trainable
    assert load_recommender(seq_world / "models_seqrec/bert4rec-random").config.table == "trainable"


def test_metrics_cover_every_row_split_and_the_cold_users(seq_world):
    result = json.loads((seq_world / "metrics/seqrec.json").read_text())
    rows = [f"{m}-{i}" for m in SEQREC["models"] for i in SEQREC["inits"]]
    assert set(result["rows"]) == set(rows)
    seq = json.loads((seq_world / "metrics/sequences.json").read_text())
    assert result["data"]["cold_test"] == seq["cold_targets"]["test"]
    for row in result["rows"].values():
        for split in ("valid", "test"):
            full = row[split]["full"]
            assert full["users"] == seq[split]["users"]
            assert 0 <= full["NDCG@10"] <= full["HR@10"] <= full["HR@50"] <= 1
            assert row[split]["full_cold"]["users"] == result["data"][f"cold_{split}"]
            # 5 sampled negatives: the target is among 6, so HR@5 sampled >= HR@5 full (inflated)
            assert row[split]["sampled5"]["HR@5"] >= full["HR@5"]
        assert 1 <= row["train"]["best_epoch"] <= row["train"]["epochs"] <= SEQREC["epochs"]
    assert set(result["intervals"]) == {"sasrec-student", "sasrec-plm_cls", "bert4rec-student", "bert4rec-plm_cls"}
    table = (seq_world / "metrics/seqrec.md").read_text()
    assert all(f"| {row} |" in table for row in rows) and "reference" in table
    assert (seq_world / "metrics/seqrec.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_writes_the_curve_and_the_cost(seq_world):
    summary = json.loads((seq_world / "metrics/seqrec_train/sasrec-random.json").read_text())
    assert len(summary["curve"]) == summary["epochs"] and summary["peak_rss_mib"] > 0 and summary["s_per_epoch"] > 0
    best = max(c["valid_NDCG@10"] for c in summary["curve"])
    assert summary["best_valid_NDCG@10"] == pytest.approx(best)
    curve = json.loads((seq_world / "metrics/seqrec_train/curves/sasrec-random.json").read_text())
    assert [c["epoch"] for c in curve] == list(range(1, summary["epochs"] + 1))
    assert [c["valid_NDCG@10"] for c in curve] == [c["valid_NDCG@10"] for c in summary["curve"]]
    saved = json.loads((seq_world / "models_seqrec/sasrec-random/config.json").read_text())
    assert saved["model"] == "sasrec" and saved["best_epoch"] == summary["best_epoch"]


def test_early_stopping_ends_fit_after_the_epoch_that_asks():
    model = torch.nn.Linear(2, 1)
    seen = []

    def on_epoch_end(epoch):
        seen.append(epoch)
        return epoch == 2

    out = fit(Accelerator(cpu=True), model, torch.optim.SGD(model.parameters(), lr=0.1), 8,
              lambda rows: torch.ones(len(rows), 2), lambda m, b: (m(b).pow(2).mean(), {}),
              LoopConfig(epochs=10, batch_size=4, seed=0))
    assert len(out["history"]) == 10  # no callback: every epoch
    out = fit(Accelerator(cpu=True), model, torch.optim.SGD(model.parameters(), lr=0.1), 8,
              lambda rows: torch.ones(len(rows), 2), lambda m, b: (m(b).pow(2).mean(), {}),
              LoopConfig(epochs=10, batch_size=4, seed=0), on_epoch_end=on_epoch_end)
    assert seen == [1, 2] and len(out["history"]) == 2


def test_bad_stage_items_and_mismatched_widths_are_one_line_errors(seq_world, tmp_path, monkeypatch):
    folder = tmp_path / "w"
    shutil.copytree(seq_world, folder, ignore=shutil.ignore_patterns("models_seqrec"))
    monkeypatch.chdir(folder)
    with pytest.raises(ParamError, match="source one of random"):
        load_stage("item_emb").main(["imagenet"])
    monkeypatch.setenv("DVC_STAGE", "train_seqrec@sasrec-$(reboot)")
    with pytest.raises(ParamError, match="is not a name of a-z"):
        load_stage("train_seqrec").main([])
    set_seqrec(folder, entry="copy")
    with pytest.raises(ParamError, match="seqrec.entry copy needs seqrec.hidden = the plm_cls table's width"):
        load_stage("train_seqrec").main(["sasrec-plm_cls"])
    (folder / "data/item_emb/student.safetensors").write_bytes(b"not a table")
    with pytest.raises(DataError, match="student.safetensors: cannot read the item table"):
        load_stage("train_seqrec").main(["sasrec-student"])
    with pytest.raises(DataError, match="models_seqrec/sasrec-random is not a model folder"):
        load_stage("evaluate_seqrec").main()
    assert load_params().seqrec.entry == "copy"
