"""Deployment (issue 15): the self-contained model folder, news index, recommend CLI, on a tiny
random PLM-NR (2 layers, hidden 32) and a handful of news."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tinynewsrec.deploy import export_model_folder, load_for_serving
from tinynewsrec.deploy.cli import main as cli
from tinynewsrec.deploy.index import NewsIndex, faiss_available
from tinynewsrec.deploy.news import read_news_table
from tinynewsrec.deploy.recommend import Recommendations, read_behaviors_tsv
from tinynewsrec.errors import DataError
from tinynewsrec.io import atomic_dir
from tinynewsrec.metrics import read_prediction_file
from tinynewsrec.models.plm import load_tokenizer, make_tiny_bert
from tinynewsrec.models.plmnr import PLMNR, PLMNRConfig
from tinynewsrec.recommender import load_recommender

SMALL = PLMNRConfig(news_dim=16, news_query_dim=8, user_query_dim=8)

TITLES = [
    "stocks rally as markets close higher", "the best pasta recipes for winter", "football team wins the cup final",
    "new phone released with a bigger screen", "how to train for a marathon", "election results in three states",
    "movie review: a quiet summer", "storm brings snow to the north", "ten tips to save money on travel",
    "scientists find water on a distant moon", "basketball star signs a new contract", "easy breakfast ideas",
]
NEWS_IDS = [f"N{i + 1}" for i in range(len(TITLES))]


def make_model(folder: Path, seed: int = 0) -> Path:
    """A tiny random PLM-NR saved as the pipeline saves one (cold-user vector made non-zero)."""
    torch.manual_seed(seed)
    model = PLMNR(make_tiny_bert(num_layers=2, hidden=32, seed=seed), SMALL)
    with torch.no_grad():
        model.user_encoder.empty_user.normal_()
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp, method="test stand-in", epochs=1, steps=3)
    return folder


def write_news_tsv(path: Path) -> Path:
    lines = [f"{nid}\tnews\tgeneral\t{t}\tan abstract\thttp://x\t[]\t[]" for nid, t in zip(NEWS_IDS, TITLES)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_behaviors_tsv(path: Path) -> Path:
    rows = [
        "1\tU1\t11/11/2019 9:05:58 AM\tN1 N3\tN2-1 N4-0 N5-0",
        "2\tU2\t11/11/2019 9:06:58 AM\t\tN6-0 N7-1",
        "3\tU1\t11/12/2019 9:05:58 AM\tN1 N3 N9\tN10-0 N11-0 N12-1 N8-0",
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("default")


@pytest.fixture(scope="module")
def files(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("deploy")
    model = make_model(root / "models" / "student")
    (root / "metrics").mkdir()
    (root / "metrics" / "eval.json").write_text(json.dumps({"student": {"auc": 0.61, "mrr": 0.3}}))
    exported = export_model_folder(model, root / "exported", plm_name="default", title_len=16, history_len=5,
                                   metrics={"auc": 0.61, "mrr": 0.3}, metrics_source="eval.json, row student",
                                   tokenizer=tokenizer)
    news = write_news_tsv(root / "news.tsv")
    return {"root": root, "model": model, "exported": exported, "news": news,
            "behaviors": write_behaviors_tsv(root / "behaviors.tsv")}


@pytest.fixture(scope="module")
def index(files, tokenizer):
    recommender = load_recommender(files["exported"])
    return NewsIndex.build(recommender, tokenizer, read_news_table(files["news"]), 16, progress=False)


# --- 1. the exported folder ---------------------------------------------------------------


def test_exported_folder_has_config_heads_plm_tokenizer_and_card(files):
    out = files["exported"]
    for name in ("config.json", "heads.safetensors", "README.md", "plm/config.json", "plm/model.safetensors",
                 "plm/tokenizer.json", "plm/tokenizer_config.json"):
        assert (out / name).is_file(), name


def test_exported_folder_loads_alone_after_the_source_is_gone(files, tmp_path, monkeypatch):
    copy = tmp_path / "elsewhere"
    shutil.copytree(files["exported"], copy)
    monkeypatch.chdir(tmp_path)  # no params.yaml, no data/, no models/ here
    original = load_recommender(files["model"])
    loaded = load_recommender(copy)
    for (k, a), (_, b) in zip(original.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k


def test_load_for_serving_returns_the_saved_tokenizer_and_serving_config(files, tokenizer):
    _, tok, serving = load_for_serving(files["exported"])
    assert tok("a quiet summer")["input_ids"] == tokenizer("a quiet summer")["input_ids"]
    assert serving["title_len"] == 16 and serving["history_len"] == 5 and serving["plm_name"] == "default"


def test_plm_subfolder_is_a_hugging_face_folder_without_pooler_warnings(files, capfd):
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_warning()
    AutoModel.from_pretrained(str(files["exported"] / "plm"), add_pooling_layer=False)
    AutoTokenizer.from_pretrained(str(files["exported"] / "plm"))
    captured = capfd.readouterr()
    assert "pooler" not in (captured.out + captured.err).lower()


def test_model_card_names_kind_layers_parameters_and_metrics(files):
    card = (files["exported"] / "README.md").read_text()
    params = sum(p.numel() for p in load_recommender(files["model"]).parameters())
    assert "`plmnr`" in card and "| PLM layers | 2 |" in card and f"{params:,}" in card
    assert "| auc | 0.6100 |" in card and "test stand-in" in card


def test_exported_config_does_not_point_back_into_the_pipeline(files):
    text = (files["exported"] / "config.json").read_text() + (files["exported"] / "README.md").read_text()
    assert str(files["root"]) not in text


def test_export_of_a_folder_of_another_kind_is_a_one_line_error(files, tmp_path):
    (tmp_path / "seq").mkdir()
    (tmp_path / "seq" / "config.json").write_text(json.dumps({"model": "sasrec"}))
    with pytest.raises(DataError, match="kind 'sasrec'"):
        export_model_folder(tmp_path / "seq", tmp_path / "out", plm_name="default")


def test_export_model_cli_reads_the_metrics_row(files, tmp_path, capsys):
    rc = cli(["-q", "export-model", str(files["model"]), str(tmp_path / "out"), "--plm", "default",
              "--metrics", str(files["root"] / "metrics" / "eval.json"), "--row", "student"])
    assert rc == 0 and json.loads((tmp_path / "out" / "config.json").read_text())["metrics"]["auc"] == 0.61


def test_export_model_cli_with_an_unknown_metrics_row_exits_2(files, tmp_path, capsys):
    rc = cli(["-q", "export-model", str(files["model"]), str(tmp_path / "out"), "--plm", "default",
              "--metrics", str(files["root"] / "metrics" / "eval.json"), "--row", "teacher_9"])
    err = capsys.readouterr().err
    assert rc == 2 and "teacher_9" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_export_refuses_to_replace_a_folder_that_is_not_an_export(files, tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "keep.txt").write_text("precious")
    with pytest.raises(DataError, match="not an exported model folder"):
        export_model_folder(files["model"], tmp_path / "models", plm_name="default")
    assert (tmp_path / "models" / "keep.txt").read_text() == "precious"


def test_tokenizer_title_length_and_training_data_default_to_params_yaml(tmp_path):
    from tinynewsrec.deploy.export import serving_defaults, training_data

    (tmp_path / "params.yaml").write_text("data: {source: synthetic, size: demo, seed: 42, history_len: 7}\n"
                                          "plm: {name: default, title_len: 24}\n")
    serving = serving_defaults({}, params_path=tmp_path / "params.yaml")
    assert (serving["plm_name"], serving["title_len"], serving["history_len"]) == ("default", 24, 7)
    assert "'synthetic'" in training_data({}, params_path=tmp_path / "params.yaml")


def test_loading_the_exported_folder_for_serving_prints_no_pooler_warning(files, capfd):
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_warning()
    load_for_serving(files["exported"])
    captured = capfd.readouterr()
    assert "pooler" not in (captured.out + captured.err).lower()


# --- 3. the news index --------------------------------------------------------------------


def test_index_rows_are_the_models_news_vectors_of_the_titles(files, index, tokenizer):
    model = load_recommender(files["exported"])
    enc = tokenizer([TITLES[4]], truncation=True, max_length=16, return_tensors="pt")
    with torch.no_grad():
        vec = model.encode_news({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    assert index.ids == NEWS_IDS and torch.allclose(index.vectors[4], vec[0], atol=1e-5)


def test_index_saves_and_loads_ids_titles_and_vectors(index, tmp_path):
    index.save(tmp_path / "index.safetensors")
    back = NewsIndex.load(tmp_path / "index.safetensors")
    assert back.ids == index.ids and back.titles == TITLES and torch.equal(back.vectors, index.vectors)


def test_a_file_that_is_not_an_index_is_a_one_line_error(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DataError, match="not a news index"):
        NewsIndex.load(tmp_path / "x.safetensors")


def brute_force(vectors: torch.Tensor, queries: torch.Tensor, k: int) -> np.ndarray:
    scores = (queries @ vectors.T).numpy()
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def test_exact_topk_in_blocks_equals_a_brute_force_sort():
    g = torch.Generator().manual_seed(0)
    index = NewsIndex([f"N{i}" for i in range(1000)], torch.randn(1000, 8, generator=g))
    queries = torch.randn(7, 8, generator=g)
    _, pos = index.topk(queries, 25, block=97)
    assert np.array_equal(pos.numpy(), brute_force(index.vectors, queries, 25))


def test_topk_never_returns_an_excluded_news():
    g = torch.Generator().manual_seed(1)
    index = NewsIndex([f"N{i}" for i in range(50)], torch.randn(50, 4, generator=g))
    queries = torch.randn(1, 4, generator=g)
    best = brute_force(index.vectors, queries, 50)[0]
    _, pos = index.topk(queries, 5, exclude=[best[:3].tolist()])
    assert pos[0].tolist() == best[3:8].tolist()


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is not installed (optional extra 'deploy')")
def test_faiss_flat_ip_gives_the_same_topk_as_torch():
    g = torch.Generator().manual_seed(2)
    index = NewsIndex([f"N{i}" for i in range(500)], torch.randn(500, 8, generator=g))
    queries = torch.randn(5, 8, generator=g)
    s_t, p_t = index.topk(queries, 10)
    s_f, p_f = index.topk(queries, 10, backend="faiss")
    assert torch.equal(p_t, p_f) and torch.allclose(s_t, s_f, atol=1e-5)


def test_news_parquet_and_news_tsv_give_the_same_table(files, tmp_path):
    tsv = read_news_table(files["news"])
    pq.write_table(pa.table({"news_id": NEWS_IDS, "news_index": pa.array(range(1, 13), pa.int32()),
                             "title": TITLES}), tmp_path / "news.parquet")
    par = read_news_table(tmp_path / "news.parquet")
    assert par["news_id"].to_pylist() == tsv["news_id"].to_pylist() and par["title"].to_pylist() == TITLES


# --- 2. recommend -------------------------------------------------------------------------


def test_recommend_ranks_by_the_user_vectors_dot_products_without_the_history(files, index):
    recs = Recommendations(load_recommender(files["exported"]), index, history_len=5)
    result = recs.recommend(["N1", "N3"], k=4)
    user = recs.user_vectors([["N1", "N3"]])[0]
    scores = (index.vectors @ user).numpy()
    scores[[0, 2]] = -np.inf
    assert [it["news_id"] for it in result["items"]] == [NEWS_IDS[i] for i in np.argsort(-scores)[:4]]
    assert result["items"][0]["title"] == TITLES[int(np.argmax(scores))] and not result["cold_user"]


def test_the_user_vector_reads_only_the_last_history_len_clicks(files, index):
    recs = Recommendations(load_recommender(files["exported"]), index, history_len=2)
    assert torch.allclose(recs.user_vectors([["N1", "N2", "N3", "N4"]]), recs.user_vectors([["N3", "N4"]]))


def test_user_vectors_take_the_fast_path_and_equal_the_models_encode_user(files, index):
    model = load_recommender(files["exported"])
    recs = Recommendations(model, index, history_len=5)
    assert recs.users is not None  # a PLM-NR: attention logits once per news
    got = recs.user_vectors([["N1", "N3"], [], ["N2", "N4", "N5", "N6", "N7", "N8"]])
    pos = torch.tensor([[0, 2, 0, 0, 0], [0, 0, 0, 0, 0], [3, 4, 5, 6, 7]])
    mask = torch.tensor([[True, True] + [False] * 3, [False] * 5, [True] * 5])
    with torch.no_grad():
        expected = model.encode_user(index.vectors[pos], mask)
    assert torch.allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(got[1], model.user_encoder.empty_user.detach())


def test_cli_prints_k_lines_with_ids_titles_and_scores(files, capsys):
    rc = cli(["-q", "recommend", str(files["exported"]), "--news", str(files["news"]), "--history", "N1", "N3",
              "-k", "3"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(out) == 3
    rank, score, news_id, *title = out[0].split()
    assert rank == "1" and float(score) and news_id in NEWS_IDS and " ".join(title) == TITLES[NEWS_IDS.index(news_id)]


def test_cli_unknown_history_ids_exit_2_and_are_named(files, capsys):
    rc = cli(["-q", "recommend", str(files["exported"]), "--news", str(files["news"]), "--history", "N1", "N404"])
    err = capsys.readouterr().err
    assert rc == 2 and "N404" in err and len(err.strip().splitlines()) == 1


def test_cli_empty_history_uses_the_cold_user_vector_and_says_so(files, index, capsys):
    rc = cli(["-q", "recommend", str(files["exported"]), "--news", str(files["news"]), "--history", "-k", "2"])
    captured = capsys.readouterr()
    cold = load_recommender(files["exported"]).user_encoder.empty_user.detach()
    best = [NEWS_IDS[i] for i in torch.argsort(index.vectors @ cold, descending=True)[:2].tolist()]
    assert rc == 0 and "empty" in captured.err and [line.split()[2] for line in captured.out.splitlines()] == best


def test_cli_takes_a_users_history_from_a_behaviors_file(files, capsys):
    cli(["-q", "recommend", str(files["exported"]), "--news", str(files["news"]), "--user", "U1", "--behaviors",
         str(files["behaviors"]), "-k", "12"])
    shown = [line.split()[2] for line in capsys.readouterr().out.splitlines()]
    assert len(shown) == 9 and not {"N1", "N3", "N9"} & set(shown)  # U1's last history is N1 N3 N9


def test_cli_recommends_from_a_pipeline_model_folder_too(files, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no params.yaml: the default tokenizer and title length
    rc = cli(["-q", "recommend", str(files["model"]), "--news", str(files["news"]), "--history", "N2", "-k", "2"])
    assert rc == 0 and len(capsys.readouterr().out.splitlines()) == 2


def test_cli_build_index_then_recommend_from_it_equals_encoding_the_news_now(files, tmp_path, capsys):
    assert cli(["-q", "build-index", str(files["exported"]), str(files["news"]), str(tmp_path / "i.safetensors")]) == 0
    capsys.readouterr()
    cli(["-q", "recommend", str(files["exported"]), "--index", str(tmp_path / "i.safetensors"), "--history", "N5"])
    from_index = capsys.readouterr().out
    cli(["-q", "recommend", str(files["exported"]), "--news", str(files["news"]), "--history", "N5"])
    assert from_index == capsys.readouterr().out and len(from_index.splitlines()) == 10


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is not installed (optional extra 'deploy')")
def test_cli_faiss_backend_prints_the_same_top_k(files, capsys):
    args = ["-q", "recommend", str(files["exported"]), "--news", str(files["news"]), "--history", "N1", "N2"]
    cli(args)
    exact = capsys.readouterr().out
    cli([*args, "--backend", "faiss"])
    assert [line.split()[2] for line in capsys.readouterr().out.splitlines()] == [line.split()[2] for line in
                                                                                 exact.splitlines()]


def test_cli_a_model_folder_of_the_wrong_kind_exits_2(files, tmp_path, capsys):
    (tmp_path / "seq").mkdir()
    (tmp_path / "seq" / "config.json").write_text(json.dumps({"model": "sasrec"}))
    rc = cli(["-q", "recommend", str(tmp_path / "seq"), "--news", str(files["news"]), "--history", "N1"])
    assert rc == 2 and "sasrec" in capsys.readouterr().err


def test_cli_a_missing_news_file_exits_2_and_names_it(files, tmp_path, capsys):
    rc = cli(["-q", "recommend", str(files["exported"]), "--news", str(tmp_path / "nope.tsv"), "--history", "N1"])
    assert rc == 2 and "nope.tsv" in capsys.readouterr().err


def test_cli_an_index_from_another_model_exits_2(files, index, tmp_path, capsys):
    index.meta["model_sha256"] = "0" * 64
    index.save(tmp_path / "other.safetensors")
    index.meta["model_sha256"] = ""
    rc = cli(["-q", "recommend", str(files["exported"]), "--index", str(tmp_path / "other.safetensors"),
              "--history", "N1"])
    assert rc == 2 and "another model" in capsys.readouterr().err


def test_behaviors_tsv_reads_histories_candidates_and_labels(files):
    table = read_behaviors_tsv(files["behaviors"])
    assert table["history"].to_pylist()[1] == [] and table["candidates"].to_pylist()[0] == ["N2", "N4", "N5"]
    assert table["labels"].to_pylist()[1] == [0, 1]


def test_batch_mode_writes_prediction_txt_ranking_each_impressions_candidates(files, index, tmp_path):
    rc = cli(["-q", "recommend", str(files["exported"]), "--news", str(files["news"]), "--behaviors",
              str(files["behaviors"]), "--prediction", str(tmp_path / "prediction.txt")])
    ids, ranks, offsets = read_prediction_file(tmp_path / "prediction.txt")
    recs = Recommendations(load_recommender(files["exported"]), index, history_len=5)
    user = recs.user_vectors([["N1", "N3", "N9"]])[0]
    cand = index.positions(["N10", "N11", "N12", "N8"])
    expected = np.argsort(np.argsort(-(index.vectors[cand] @ user).numpy(), kind="stable")) + 1
    assert rc == 0 and ids.tolist() == [1, 2, 3] and ranks[offsets[2]:offsets[3]].tolist() == expected.tolist()


# --- 4. ONNX ------------------------------------------------------------------------------

onnx_missing = pytest.mark.skipif(
    not all(__import__("importlib").util.find_spec(m) for m in ("onnx", "onnxruntime")),
    reason="onnx / onnxruntime are not installed (optional extra 'deploy')")


@pytest.fixture(scope="module")
def onnx_report(files, tmp_path_factory):
    from tinynewsrec.deploy.onnx_export import export_onnx

    return export_onnx(files["exported"], tmp_path_factory.mktemp("onnx"), int8=True)


@onnx_missing
def test_onnx_fp32_encoders_match_pytorch_within_1e_4(onnx_report):
    assert onnx_report["news_encoder"]["max_abs_diff"] < 1e-4 and onnx_report["user_encoder"]["max_abs_diff"] < 1e-4


@onnx_missing
def test_onnx_news_encoder_takes_any_batch_and_title_length(files, onnx_report):
    from tinynewsrec.deploy.onnx_export import news_inputs, session

    sess = session(onnx_report["news_encoder"]["path"])
    for n, t in ((2, 3), (40, 31)):
        assert sess.run(None, news_inputs(30522, n, t, seed=n))[0].shape == (n, SMALL.news_dim)


@onnx_missing
def test_onnx_user_encoder_gives_the_cold_user_vector_for_an_empty_history(files, onnx_report):
    from tinynewsrec.deploy.onnx_export import session

    sess = session(onnx_report["user_encoder"]["path"])
    out = sess.run(None, {"history": np.ones((1, 4, SMALL.news_dim), np.float32), "history_mask": np.zeros((1, 4), bool)})
    cold = load_recommender(files["exported"]).user_encoder.empty_user.detach().numpy()
    assert np.allclose(out[0][0], cold, atol=1e-6)


@onnx_missing
def test_onnx_int8_runs_smaller_and_stays_correlated(onnx_report):
    q = onnx_report["news_encoder.int8"]
    assert q["bytes"] < onnx_report["news_encoder"]["bytes"] / 2 and q["correlation"] > 0.99


@onnx_missing
def test_export_onnx_cli_writes_the_report(files, tmp_path, capsys):
    rc = cli(["-q", "export-onnx", str(files["exported"]), str(tmp_path / "onnx")])
    report = json.loads((tmp_path / "onnx" / "onnx.json").read_text())
    assert rc == 0 and set(report) == {"news_encoder", "user_encoder"} and "max abs difference" in capsys.readouterr().out


# --- 5. the service -----------------------------------------------------------------------

web_missing = pytest.mark.skipif(
    not all(__import__("importlib").util.find_spec(m) for m in ("fastapi", "uvicorn")),
    reason="fastapi / uvicorn are not installed (optional extra 'deploy')")


@pytest.fixture(scope="module")
def service(files, index, tmp_path_factory):
    """The service on 127.0.0.1 (a free port), in a thread of this process; stopped after the module."""
    import socket
    import threading
    import time

    import uvicorn

    from tinynewsrec.deploy.service import create_app

    path = tmp_path_factory.mktemp("svc") / "index.safetensors"
    index.save(path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(files["exported"], path), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the service did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def call(url: str, path: str, body=None, raw: bytes | None = None) -> tuple[int, dict | str]:
    import urllib.error
    import urllib.request

    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, text, kind = r.status, r.read().decode(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        status, text, kind = e.code, e.read().decode(), e.headers.get("content-type", "")
    return status, json.loads(text) if "json" in kind else text


@web_missing
def test_health_answers_ok_with_the_index_size(service):
    status, body = call(service, "/health")
    assert status == 200 and body["status"] == "ok" and body["news"] == len(NEWS_IDS) and body["kind"] == "plmnr"


@web_missing
def test_recommend_answers_what_the_library_recommends(service, files, index):
    status, body = call(service, "/recommend", {"history": ["N1", "N3"], "k": 4})
    expected = Recommendations(load_recommender(files["exported"]), index, history_len=5).recommend(["N1", "N3"], 4)
    assert status == 200, body
    assert [it["news_id"] for it in body["items"]] == [it["news_id"] for it in expected["items"]]
    assert body["items"][0]["title"] == expected["items"][0]["title"]


@web_missing
def test_recommend_for_an_empty_history_is_a_cold_user(service):
    status, body = call(service, "/recommend", {"history": [], "k": 3})
    assert status == 200 and body["cold_user"] is True and len(body["items"]) == 3


@web_missing
def test_unknown_news_ids_are_a_422_naming_them(service):
    status, body = call(service, "/recommend", {"history": ["N1", "N404"], "k": 3})
    assert status == 422 and body["unknown_ids"] == ["N404"] and "N404" in body["error"]


@web_missing
@pytest.mark.parametrize("body", [{"history": "N1"}, {"history": [1, 2]}, {"history": [], "k": 0},
                                  {"history": [], "k": "ten"}, {"history": [], "user": "U1"}])
def test_a_wrong_field_is_a_422_with_a_message(service, body):
    status, answer = call(service, "/recommend", body)
    assert status == 422 and isinstance(answer["error"], str) and "\n" not in answer["error"]


@web_missing
def test_a_body_that_is_not_json_is_a_400(service):
    status, body = call(service, "/recommend", raw=b"history=N1")
    assert status == 400 and "not JSON" in body["error"]


@web_missing
def test_an_unknown_path_is_a_404_in_the_same_json_shape(service):
    status, body = call(service, "/nothing")
    assert status == 404 and "/recommend" in body["error"]


@web_missing
def test_the_page_shows_clicked_and_recommended_titles(service):
    status, page = call(service, "/?history=N1+N3&k=2")
    assert status == 200 and TITLES[0] in page and TITLES[2] in page and page.count("<tr><td>") == 2


@web_missing
@web_missing
def test_serve_with_a_missing_index_exits_2_before_listening(files, tmp_path, capsys):
    rc = cli(["-q", "serve", str(files["exported"]), "--index", str(tmp_path / "none.safetensors"), "--port", "1"])
    assert rc == 2 and "none.safetensors" in capsys.readouterr().err


@web_missing
def test_serving_an_index_of_another_model_fails_at_start(files, index, tmp_path):
    from tinynewsrec.deploy.service import create_app

    index.meta["model_sha256"] = "0" * 64
    index.save(tmp_path / "other.safetensors")
    index.meta["model_sha256"] = ""
    with pytest.raises(DataError, match="another model"):
        create_app(files["exported"], tmp_path / "other.safetensors")


# --- the console script -------------------------------------------------------------------


def test_pyproject_declares_the_tinynewsrec_console_script():
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["tinynewsrec"] == "tinynewsrec.deploy.cli:main"


def test_a_user_mistake_is_one_line_on_stderr_and_exit_2_in_a_real_process(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    r = subprocess.run([sys.executable, "-m", "tinynewsrec.deploy.cli", "recommend", str(tmp_path / "missing"),
                        "--news", "x.tsv", "--history", "N1"], check=False, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing'}: no such model folder"]


# --- 6. the ONNX benchmark (benchmarks/bench_deploy.py --only onnx) ------------------------


def load_bench_deploy():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_deploy.py"
    spec = importlib.util.spec_from_file_location("bench_deploy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_world(tmp_path_factory):
    """The evaluate tests' tiny world (a 3-layer teacher stand-in whose frozen-layer cache fits) plus
    a 2-layer random student (no cache fits it), both evaluated by the evaluate stage."""
    import yaml
    from conftest import load_stage
    from test_evaluate import make_world

    root = make_world(tmp_path_factory.mktemp("bench_world"), teachers=1)
    torch.manual_seed(7)
    student = PLMNR(make_tiny_bert(num_layers=2, hidden=32, seed=7), SMALL)
    with atomic_dir(root / "models" / "student") as tmp:
        student.save_pretrained(tmp, method="test stand-in")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["eval"]["models"] = ["student"]
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        load_stage("evaluate").main()
    return root


@pytest.fixture(scope="module")
def onnx_bench(bench_world, tmp_path_factory):
    """One run of the onnx section on the tiny world; the output file already held an index section."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("bench") / "bench_deploy.json"
    out.write_text(json.dumps({"index": {"kept": True}}))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        load_bench_deploy().main(["--only", "onnx", "--data", str(bench_world), "--rounds", "2", "--encode-news", "32",
                                  "--threads", "1", "--out", str(out), "--models",
                                  f"teacher={bench_world / 'models/teacher_0'}",
                                  f"student-2={bench_world / 'models/student'}"])
    return {"figures": json.loads(out.read_text()), "printed": printed.getvalue(),
            "eval": json.loads((bench_world / "metrics/eval.json").read_text())}


@onnx_missing
def test_onnx_bench_times_every_backend_of_every_model_and_keeps_the_other_sections(onnx_bench):
    figures = onnx_bench["figures"]
    r = figures["onnx"]
    assert figures["index"] == {"kept": True}
    assert r["threads"] == {"torch": 1, "onnxruntime_intra_op": 1} and r["rounds"] == 2
    assert {name: m["layers"] for name, m in r["models"].items()} == {"teacher": 3, "student-2": 2}
    for m in r["models"].values():
        assert set(m["backends"]) == {"pytorch_fp32", "onnx_fp32", "onnx_int8"}
        for b in m["backends"].values():
            assert len(b["news_per_s_rounds"]) == 2 and all(np.isfinite(x) and x > 0 for x in b["news_per_s_rounds"])
            assert b["news_per_s_best"] == max(b["news_per_s_rounds"])
        assert m["backends"]["pytorch_fp32"]["speedup_best"] == 1.0


@onnx_missing
def test_onnx_bench_fp32_parity_is_below_1e_4_and_int8_is_finite_and_small(onnx_bench):
    for m in onnx_bench["figures"]["onnx"]["models"].values():
        b = m["backends"]
        scale = b["pytorch_fp32"]["news_vector_max_abs"]
        keys = ("news_max_abs_diff", "user_max_abs_diff", "user_max_abs_diff_end_to_end")
        assert all(b["onnx_fp32"][k] < 1e-4 for k in keys), b["onnx_fp32"]
        assert all(np.isfinite(b["onnx_int8"][k]) and 0 < b["onnx_int8"][k] < 0.1 * scale for k in keys), b["onnx_int8"]


@onnx_missing
def test_onnx_bench_pytorch_auc_equals_the_evaluate_stages_eval_json_row(onnx_bench):
    models = onnx_bench["figures"]["onnx"]["models"]
    for name, row in (("teacher", "teacher_0"), ("student-2", "student")):
        check = models[name]["eval_json"]
        assert check["row"] == row and check["equal"] is True
        assert check["pytorch_fp32_as_evaluate_stage"] == onnx_bench["eval"][row]
    assert models["teacher"]["eval_json"]["news_input_of_evaluate_stage"].startswith("frozen-layer cache")
    assert models["student-2"]["eval_json"]["news_input_of_evaluate_stage"] == "token ids"
    assert models["student-2"]["backends"]["pytorch_fp32"]["dev"] == onnx_bench["eval"]["student"]


@onnx_missing
def test_onnx_bench_fp32_dev_metrics_equal_pytorchs(onnx_bench):
    for m in onnx_bench["figures"]["onnx"]["models"].values():
        ref = m["backends"]["pytorch_fp32"]["dev"]
        for key in ("dev", "dev_with_pytorch_user_encoder"):
            got = m["backends"]["onnx_fp32"][key]
            assert all(abs(got[k] - ref[k]) < 1e-4 for k in ref), (key, got, ref)


@onnx_missing
def test_onnx_bench_prints_a_markdown_row_per_model_and_backend(onnx_bench):
    rows = [line for line in onnx_bench["printed"].splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| model | layers | backend | news/s | speed-up vs PyTorch fp32")
    assert [r.split(" | ")[:3] for r in rows[1:]] == [
        ["| teacher", "3", "pytorch fp32"], ["| teacher", "3", "onnx fp32"], ["| teacher", "3", "onnx int8"],
        ["| student-2", "2", "pytorch fp32"], ["| student-2", "2", "onnx fp32"], ["| student-2", "2", "onnx int8"]]


@onnx_missing
@pytest.mark.parametrize("models, message", [(["teacher"], "'teacher' is not NAME=VALUE"),
                                             (["teacher=/nowhere/teacher_0"], "/nowhere/teacher_0: no model folder")])
def test_onnx_bench_bad_models_argument_is_one_line_and_exit_2(tmp_path, capsys, models, message):
    with pytest.raises(SystemExit) as e:
        load_bench_deploy().main(["--only", "onnx", "--out", str(tmp_path / "out.json"), "--models", *models])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and message in err[0] and not (tmp_path / "out.json").exists()


def test_onnx_bench_checks_a_model_against_its_own_pipelines_eval_json_or_a_named_row(files, tmp_path):
    eval_json_row = load_bench_deploy().eval_json_row
    root = files["root"]  # models/student beside metrics/eval.json
    assert eval_json_row(files["model"], None) == (root / "metrics" / "eval.json", "student")
    copy = tmp_path / "student_1layer"
    shutil.copytree(files["model"], copy)  # copied out of its pipeline: no row is guessed
    assert eval_json_row(copy, None) == (None, "student_1layer")
    assert eval_json_row(copy, "/x/eval.json#student") == (Path("/x/eval.json"), "student")
    assert eval_json_row(files["exported"], None) == (None, "student")  # the name it was exported under


# --- a ROSITA-pruned student deploys like any PLM-NR -----------------------------------------------


@pytest.fixture(scope="module")
def pruned_export(tmp_path_factory, tokenizer):
    from tinynewsrec.models.pruned import pruned_student

    root = tmp_path_factory.mktemp("pruned")
    torch.manual_seed(1)
    teacher = PLMNR(make_tiny_bert(num_layers=2, hidden=32, heads=4, seed=1), SMALL)
    g = torch.Generator().manual_seed(1)
    scores = {"heads": [torch.rand(4, generator=g) for _ in range(2)],
              "ffn": [torch.rand(teacher.plm.config.intermediate_size, generator=g) for _ in range(2)], "batches": 1}
    student = pruned_student(teacher, scores, keep_heads=2, ffn_dim=16, num_layers=1, embedding_rank=8)
    with atomic_dir(root / "student") as tmp:
        student.save_pretrained(tmp, method="rosita")
    exported = export_model_folder(root / "student", root / "exported", plm_name="default", title_len=16,
                                   history_len=5, tokenizer=tokenizer)
    return {"model": root / "student", "exported": exported, "news": write_news_tsv(root / "news.tsv")}


def test_a_pruned_student_exports_serves_and_recommends_what_it_scores(pruned_export, tokenizer):
    recommender, saved_tokenizer, serving = load_for_serving(pruned_export["exported"])
    assert recommender.kind == "pruned_plmnr" and serving["title_len"] == 16
    original = load_recommender(pruned_export["model"])
    for (k, a), (_, b) in zip(original.state_dict().items(), recommender.state_dict().items()):
        assert torch.equal(a, b), k  # the weights are the pruned ones, bit for bit
    assert "pruned_plmnr" in (pruned_export["exported"] / "README.md").read_text()
    index = NewsIndex.build(recommender, saved_tokenizer, read_news_table(pruned_export["news"]), 16, progress=False)
    recs = Recommendations(recommender, index, history_len=5)
    result = recs.recommend(["N1", "N3"], k=4)
    scores = (index.vectors @ recs.user_vectors([["N1", "N3"]])[0]).numpy()
    scores[[0, 2]] = -np.inf
    assert [it["news_id"] for it in result["items"]] == [NEWS_IDS[i] for i in np.argsort(-scores)[:4]]


@onnx_missing
def test_a_pruned_students_onnx_encoders_match_pytorch(pruned_export, tmp_path):
    from tinynewsrec.deploy.onnx_export import export_onnx

    report = export_onnx(pruned_export["exported"], tmp_path)
    assert report["news_encoder"]["max_abs_diff"] < 1e-4 and report["user_encoder"]["max_abs_diff"] < 1e-4
