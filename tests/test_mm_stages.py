"""The multimodal branch end to end on the tiny synthetic world: render_cards -> encode_images,
encode_text -> train_multimodal@<model>-<modality> -> recall -> evaluate_multimodal."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import load_stage
from test_evaluate import make_world, save_plmnr
from tinynewsrec.errors import DataError
from tinynewsrec.evaluate import DevImpressions
from tinynewsrec.metrics import evaluate_impressions, read_prediction_file
from tinynewsrec.multimodal.tables import IMAGE_TABLE, TEXT_TABLE, read_table

ROWS = [f"{m}-{x}" for m in ("two_tower", "reranker") for x in ("text", "image", "text_image")]
BRANCH = {
    "images": {"width": 122, "height": 39},
    "multimodal": {"dim": 16, "epochs": 1, "max_steps_per_epoch": 3, "batch_size": 16, "history_len": 20,
                   "models": ["two_tower", "reranker"]},
    "reranker": {"layers": 1, "heads": 2, "ffn": 32},
    "recall": {"ks": [5, 10, 20], "rerank_k": 10, "batch": 7},
}


def set_params(folder, **sections):
    params = yaml.safe_load((folder / "params.yaml").read_text())
    for name, values in sections.items():
        params.setdefault(name, {}).update(values)
    (folder / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture(scope="module")
def mm_world(tmp_path_factory):
    folder = make_world(tmp_path_factory.mktemp("mmworld"), teachers=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        save_plmnr(folder / "tiny_bert", "models/student", seed=7)
        set_params(folder, eval={"models": ["student"]}, **BRANCH)
        load_stage("evaluate").main()
        load_stage("render_cards").main()
        load_stage("encode_images").main()
        load_stage("encode_text").main()
        for row in ROWS:
            load_stage("train_multimodal").main([row])
        load_stage("recall").main()
        load_stage("evaluate_multimodal").main()
    return folder


pytestmark = pytest.mark.slow


def test_the_tables_cover_every_news_of_the_token_table(mm_world):
    tokens = pq.read_table(mm_world / "data/tokens/news.parquet")
    news = tokens.column("news_index").to_numpy()
    text, present, meta = read_table(mm_world / TEXT_TABLE, stage="encode_text")
    image, image_present, _ = read_table(mm_world / IMAGE_TABLE, stage="encode_images", n_slots=text.shape[0])
    assert text.shape[0] == news.max() + 1 and meta["model"] == "models/student"
    assert present.numpy()[news].all() and not present[0] and float(text[0].abs().sum()) == 0.0
    assert image_present.numpy()[news].all()  # every synthetic news has a card


def test_every_row_is_written_and_its_metrics_are_those_of_its_prediction_file(mm_world):
    result = json.loads((mm_world / "metrics/multimodal.json").read_text())
    assert list(result["rows"]) == ROWS
    dev = DevImpressions.read(mm_world / "data/samples/dev.parquet", 20)
    for row in ROWS:
        ids, ranks, offsets = read_prediction_file(mm_world / f"data/mm_eval/prediction_{row}.txt")
        assert np.array_equal(ids, dev.impression_ids)
        from_file = evaluate_impressions(-ranks.astype(float), dev.labels, offsets, progress=False)
        assert from_file["auc"] == pytest.approx(result["rows"][row]["metrics"]["auc"], abs=1e-6)
        assert result["rows"][row]["latency_ms"] > 0


def test_the_text_rows_are_the_references_of_the_intervals(mm_world):
    result = json.loads((mm_world / "metrics/multimodal.json").read_text())
    assert set(result["intervals"]) == {r for r in ROWS if not r.endswith("-text")}
    for name, ci in result["intervals"].items():
        assert ci["lo"] <= ci["diff"] <= ci["hi"]
        model = name.split("-")[0]
        diff = result["rows"][name]["metrics"]["auc"] - result["rows"][f"{model}-text"]["metrics"]["auc"]
        assert ci["diff"] == pytest.approx(diff, abs=1e-5)


def test_every_row_is_compared_with_the_best_teacher_as_in_the_results_table(mm_world):
    result = json.loads((mm_world / "metrics/multimodal.json").read_text())
    eval_rows = json.loads((mm_world / "metrics/eval.json").read_text())
    vs = result["vs_best_teacher"]
    assert vs["teacher"] == "teacher_0" and set(vs["rows"]) == set(ROWS) | {"recall"}
    for row in ROWS:
        diff = result["rows"][row]["metrics"]["auc"] - eval_rows["teacher_0"]["auc"]
        assert vs["rows"][row]["diff"] == pytest.approx(diff, abs=1e-5)


def test_end_to_end_with_every_candidate_recalled_is_the_row_itself(mm_world, monkeypatch):
    # with rerank_k above the pool size every candidate is recalled: the end-to-end ranking is the row's
    monkeypatch.chdir(mm_world)
    pool = json.loads((mm_world / "metrics/recall.json").read_text())["pool"]
    set_params(mm_world, recall={"ks": [5, 10, pool + 1], "rerank_k": pool + 1})
    try:
        load_stage("recall").main()
        load_stage("evaluate_multimodal").main()
        result = json.loads((mm_world / "metrics/multimodal.json").read_text())
        for row in ROWS:
            assert result["rows"][row]["end_to_end"] == result["rows"][row]["metrics"]
    finally:
        set_params(mm_world, recall=BRANCH["recall"])
        load_stage("recall").main()
        load_stage("evaluate_multimodal").main()


def test_a_stale_recall_table_is_refused_in_one_line(mm_world, monkeypatch, tmp_path):
    monkeypatch.chdir(mm_world)
    slots = mm_world / "data/recall/slots.parquet"
    kept = tmp_path / "slots.parquet"
    kept.write_bytes(slots.read_bytes())
    table = pq.read_table(slots)
    pq.write_table(table.slice(1), slots)
    try:
        with pytest.raises(DataError, match="rerun `dvc repro recall`"):
            load_stage("evaluate_multimodal").main()
    finally:
        slots.write_bytes(kept.read_bytes())
