"""export_teacher_emb: teacher and post-trained embeddings of every news, through the stage entry point."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from tinynewsrec.errors import DataError, ParamError
from tinynewsrec.evaluate import export_teacher_embeddings, news_lookup
from tinynewsrec.io import checkpoint_sha256
from tinynewsrec.teacher_emb import read_teacher_emb
from tinynewsrec.models.cache import FrozenCache
from tinynewsrec.models.plmnr import PLMNR, NewsTokens
from conftest import load_stage
from test_evaluate import SMALL, make_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"), teachers=2)


@pytest.fixture(scope="module")
def exported(world):
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(world)
        load_stage("export_teacher_emb").main(["1"])
    return world / "data/teacher_emb/teacher_1.safetensors"


def test_export_writes_news_title_and_body_tables_with_a_zero_padding_row(world, exported):
    tensors, _ = read_teacher_emb(exported)
    news_index = pq.read_table(world / "data/tokens/news.parquet").column("news_index").to_numpy()
    rows = int(news_index.max()) + 1
    for key in ("news", "title", "body"):
        assert tensors[key].shape == (rows, SMALL.news_dim) and tensors[key].dtype == torch.float32
        assert torch.all(tensors[key][0] == 0)
        assert torch.all(tensors[key][news_index.astype(np.int64)].abs().sum(dim=1) > 0)
    assert not torch.allclose(tensors["news"], tensors["title"])  # teacher_1 vs post_train/step_1


def test_export_metadata_names_the_checkpoints_and_sizes(world, exported):
    _, meta = read_teacher_emb(exported)
    assert meta["teacher"] == "models/teacher_1" and meta["post_train"] == "models/post_train/step_1"
    assert meta["teacher_sha256"] == checkpoint_sha256(world / "models/teacher_1")
    assert meta["post_train_sha256"] == checkpoint_sha256(world / "models/post_train/step_1")
    assert meta["teacher_sha256"] != meta["post_train_sha256"]
    assert meta["tokenizer"] == str(world / "tiny_bert")
    assert int(meta["news_dim"]) == SMALL.news_dim and int(meta["hidden_size"]) == 32
    assert int(meta["n_news"]) == pq.read_table(world / "data/tokens/news.parquet").num_rows


def test_export_news_rows_are_the_teachers_news_encoder_on_titles(world, exported):
    tensors, _ = read_teacher_emb(exported)
    teacher = PLMNR.from_pretrained(world / "models/teacher_1").eval()
    tokens = NewsTokens(pq.read_table(world / "data/tokens/news.parquet"))
    with torch.no_grad():
        expected = teacher.news_encoder(tokens.batch([1, 2, 3]))
    torch.testing.assert_close(tensors["news"][[1, 2, 3]], expected, rtol=1e-4, atol=1e-5)


def test_export_through_the_cache_equals_export_from_token_ids(world):
    tokens = pq.read_table(world / "data/tokens/news.parquet")
    teacher = PLMNR.from_pretrained(world / "models/teacher_0").eval()
    step = PLMNR.from_pretrained(world / "models/post_train/step_0").eval()
    cached = export_teacher_embeddings(teacher, step, tokens, cache_dir=world / "data/cache/frozen",
                                       batch_size=50, progress=False)
    direct = export_teacher_embeddings(teacher, step, tokens, cache_dir=None, batch_size=50, progress=False)
    for key in ("news", "title", "body"):
        torch.testing.assert_close(cached[key], direct[key], rtol=1e-4, atol=1e-5)


def test_news_lookup_uses_the_cache_only_for_models_with_its_frozen_layers(world):
    tokens = pq.read_table(world / "data/tokens/news.parquet")
    teacher = PLMNR.from_pretrained(world / "models/teacher_0")
    assert isinstance(news_lookup(teacher.plm, tokens, "body_ids", world / "data/cache/frozen/body"), FrozenCache)
    with torch.no_grad():
        teacher.plm.encoder.layer[0].output.dense.weight.add_(0.1)  # a lower layer that was trained
    fallback = news_lookup(teacher.plm, tokens, "body_ids", world / "data/cache/frozen/body")
    assert isinstance(fallback, NewsTokens)
    assert np.array_equal(fallback.batch([2])["input_ids"][0].numpy(),
                          tokens.column("body_ids")[int(np.flatnonzero(tokens.column("news_index").to_numpy() == 2)[0])]
                          .values.to_numpy())


def test_export_of_an_unknown_teacher_id_names_the_param(world, monkeypatch):
    monkeypatch.chdir(world)
    with pytest.raises(ParamError, match=r"teacher\.ids \[0, 1\]"):
        load_stage("export_teacher_emb").main(["5"])


def test_export_without_the_teacher_names_the_stage_to_run(world, tmp_path, monkeypatch):
    folder = tmp_path / "w"
    shutil.copytree(world, folder, ignore=shutil.ignore_patterns("tiny_bert", "teacher_*"))
    monkeypatch.chdir(folder)
    with pytest.raises(DataError, match="models/teacher_0.*finetune_teacher"):
        load_stage("export_teacher_emb").main(["0"])
    assert not (folder / "data/teacher_emb").exists()


@pytest.mark.parametrize("artifact", ["models/teacher_0/heads.safetensors", "models/teacher_0/plm/model.safetensors",
                                      "data/tokens/news.parquet"])
def test_a_truncated_input_ends_the_export_in_one_line(world, tmp_path, monkeypatch, capsys, artifact):
    from tinynewsrec.stage import run_stage

    folder = tmp_path / "w"
    shutil.copytree(world, folder, symlinks=True)
    monkeypatch.chdir(folder)
    path = folder / artifact
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(SystemExit) as e:
        run_stage(lambda: load_stage("export_teacher_emb").main(["0"]))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert e.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert not (folder / "data/teacher_emb/teacher_0.safetensors").exists()
