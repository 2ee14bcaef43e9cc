"""The embedding recall stage: user vectors, exact / FAISS top-k over the pool, metrics, end to end."""

import json
import math
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from conftest import ROOT, load_stage
from tinynewsrec.errors import ParamError
from tinynewsrec.evaluate import DevImpressions
from tinynewsrec.models.base import Recommender
from tinynewsrec.multimodal.recall import (
    FaissSearch,
    end_to_end_scores,
    exact_top_k,
    import_faiss,
    pool_news,
    recall_impressions,
    recall_metrics,
)
from tinynewsrec.multimodal.tables import TEXT_TABLE, write_table

S = 1 / math.sqrt(2)
#: news 1..5 on the plane (rows are news_index; row 0 the padding); magnitudes differ, directions matter
HAND = torch.tensor([[0, 0], [2, 0], [0, 1], [3, 3], [-1, 0], [1, -1]], dtype=torch.float32)


def impressions(rows):
    """DevImpressions from [(history, candidates, labels)]."""
    def flat(parts, dtype):
        return np.concatenate([np.asarray(p, dtype) for p in parts]) if parts else np.zeros(0, dtype)

    def offsets(parts):
        return np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)

    hist, cands, labels = zip(*rows)
    return DevImpressions(np.arange(100, 100 + len(rows), dtype=np.int64), flat(cands, np.int32),
                          flat(labels, np.int8), offsets(cands), flat(hist, np.int32), offsets(hist))


def hand_recall(rows, vectors=HAND, present=None, **kw):
    present = torch.ones(len(vectors), dtype=torch.bool) if present is None else present
    present[0] = False
    pool = pool_news(np.arange(1, len(vectors)), present)
    kw = {"k": 4, "batch": 1000, "progress": False} | kw
    return recall_impressions(vectors, present, pool, impressions(rows), **kw)


# A: history [1] -> u = (1, 0): cosines n3 = n5 = 0.707 (tie: n3 first), n2 0, n4 -1 (n1 masked)
# B: history [2] -> u = (0, 1): n3 0.707, n1 = n4 = 0 (n1 first), n5 -0.707 (n2 masked)
# C: cold -> the pool centroid, 35.3 degrees: n3 0.986, n1 0.816, n2 0.577, n5 0.169, n4 -0.816
HAND_ROWS = [([1], [3, 2, 4], [1, 0, 1]), ([2], [3, 5], [1, 0]), ([], [2, 4], [1, 0])]


def test_recall_ranks_and_scores_on_a_hand_made_pool():
    out = hand_recall(HAND_ROWS)
    assert out.ranks.tolist() == [1, 3, 4, 1, 4, 3, 0]
    np.testing.assert_allclose(out.scores[:5], [S, 0, -1, S, -S], atol=1e-6)
    assert (out.pool, out.users, out.cold_users) == (5, 3, 1)


def test_recall_at_k_on_a_hand_made_pool():
    out = hand_recall(HAND_ROWS)
    dev = impressions(HAND_ROWS)
    m = recall_metrics(dev.labels, dev.offsets, out.ranks, [1, 2, 4])["recall"]
    # A finds 1 of its 2 clicks in the top 1 and 2, both in the top 4; B its click at rank 1; C at 3
    assert m["1"]["recall"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert m["4"]["recall"] == pytest.approx(1.0)
    assert m["2"]["clicks"] == pytest.approx(2 / 4)
    assert m["4"]["candidates"] == pytest.approx(6 / 7)


def test_metrics_of_a_known_case_leave_impressions_without_a_click_out_of_the_mean():
    labels = np.array([1, 1, 0, 0, 0, 1, 0], np.int8)
    offsets = np.array([0, 3, 5, 7])  # the second impression has no click
    ranks = np.array([2, 7, 1, 1, 3, 0, 9], np.int32)
    m = recall_metrics(labels, offsets, ranks, [2, 10])
    assert (m["impressions_with_click"], m["clicks"], m["candidates"]) == (2, 3, 7)
    assert m["recall"]["2"] == pytest.approx({"recall": (1 / 2 + 0) / 2, "clicks": 1 / 3, "candidates": 3 / 7})
    assert m["recall"]["10"] == pytest.approx({"recall": (1 + 0) / 2, "clicks": 2 / 3, "candidates": 6 / 7})


def test_a_users_own_clicked_news_is_never_recalled_when_masked():
    rows = [([1, 3], [1, 3, 2], [1, 1, 0])]
    assert hand_recall(rows, mask_history=True).ranks.tolist()[:2] == [0, 0]


def test_a_users_own_clicked_news_is_recalled_when_not_masked():
    rows = [([1, 3], [1, 3, 2], [1, 1, 0])]
    assert sorted(hand_recall(rows, mask_history=False).ranks[:2].tolist()) == [1, 2]


def test_masking_covers_the_whole_history_not_only_the_kept_part():
    # history_len 1 averages news 3 only; news 1 (older) is still the user's own click
    rows = [([1, 3], [1, 5], [1, 0])]
    out = hand_recall(rows, history_len=1)
    assert out.ranks[0] == 0 and out.ranks[1] > 0


def test_a_cold_user_is_counted_and_ranked_by_the_pool_centroid():
    out = hand_recall([([], [1, 2, 3, 4, 5], [0, 0, 1, 0, 0])], k=5)
    assert out.cold_users == 1
    assert out.ranks.tolist() == [2, 3, 1, 5, 4]  # n3, n1, n2, n5, n4


def test_a_user_whose_clicks_have_no_vector_is_cold():
    present = torch.ones(6, dtype=torch.bool)
    present[2] = False
    out = hand_recall([([2], [1, 3], [1, 0])], present=present)
    assert out.cold_users == 1


def test_a_candidate_without_a_vector_gets_a_finite_score_below_the_others_and_no_rank():
    present = torch.ones(6, dtype=torch.bool)
    present[4] = False
    out = hand_recall([([1], [4, 3, 2], [1, 0, 0])], present=present)
    assert out.ranks[0] == 0 and np.isfinite(out.scores[0]) and out.scores[0] < out.scores[1:].min()


def test_ties_go_to_the_lower_news_index_even_at_the_cut():
    users = torch.tensor([[1.0, 0.0]])
    pool = torch.tensor([[0.0, 1.0], [S, -S], [0.5, 0.0], [S, S], [S, -S]])
    cols, vals = exact_top_k(users, pool, 2)
    assert cols.tolist() == [[1, 3]]  # 1, 3 and 4 tie at 0.707: the two lowest columns, in order


def test_fewer_news_than_k_pads_with_minus_one():
    cols, _ = exact_top_k(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), 4,
                          (torch.tensor([0]), torch.tensor([0])))
    assert cols.tolist() == [[1, -1, -1, -1]]


def random_world(seed=0, n_news=60, n_imp=40, dim=8):
    g = np.random.default_rng(seed)
    vectors = torch.from_numpy(g.normal(size=(n_news + 1, dim)).astype(np.float32))
    vectors[0] = 0
    rows = []
    for _ in range(n_imp):
        hist = g.choice(np.arange(1, n_news + 1), size=g.integers(0, 12), replace=False)
        cands = g.choice(np.arange(1, n_news + 1), size=g.integers(2, 8), replace=False)
        rows.append((hist, cands, (g.random(len(cands)) < 0.3).astype(np.int8)))
    present = torch.ones(n_news + 1, dtype=torch.bool)
    present[0] = False
    return vectors, present, rows


def test_batch_boundaries_do_not_change_the_result():
    vectors, present, rows = random_world()
    one = hand_recall(rows, vectors, present, k=10, batch=1)
    all_ = hand_recall(rows, vectors, present, k=10, batch=1000)
    np.testing.assert_array_equal(one.ranks, all_.ranks)
    np.testing.assert_allclose(one.scores, all_.scores, rtol=0, atol=1e-6)


def test_faiss_equals_exact():
    pytest.importorskip("faiss")
    vectors, present, rows = random_world(seed=1)
    for mask in (True, False):
        exact = hand_recall(rows, vectors, present, k=10, batch=7, mask_history=mask)
        faiss = hand_recall(rows, vectors, present, k=10, batch=7, mask_history=mask, backend="faiss")
        np.testing.assert_array_equal(exact.ranks, faiss.ranks)


def test_faiss_keeps_the_tie_order_at_the_cut():
    pytest.importorskip("faiss")
    users = torch.tensor([[1.0, 0.0]])
    pool = torch.tensor([[0.0, 1.0], [S, -S], [0.5, 0.0], [S, S], [S, -S]])
    assert FaissSearch(pool)(users, 2)[0].tolist() == exact_top_k(users, pool, 2)[0].tolist() == [[1, 3]]


def test_faiss_redoes_a_row_whose_tie_crosses_the_cut_with_its_mask():
    pytest.importorskip("faiss")
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pool = torch.tensor([[0.0, 1.0], [S, -S], [0.5, 0.0], [S, S], [S, -S], [S, S]])
    masked = (torch.tensor([0]), torch.tensor([1]))  # user 0 has clicked column 1
    assert FaissSearch(pool)(users, 2, masked)[0].tolist() == exact_top_k(users, pool, 2, masked)[0].tolist() \
        == [[3, 4], [0, 3]]


def test_faiss_missing_is_a_one_line_param_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` raises ImportError
    with pytest.raises(ParamError, match=r"recall\.backend.*pip install faiss-cpu"):
        import_faiss()


class SumUser(Recommender):
    """A stand-in text model: the user vector is the sum of the clicks, (9, 9) for an empty history."""

    news_dim = 2

    def encode_user(self, history, mask):
        users = (history * mask.unsqueeze(-1)).sum(dim=1)
        return torch.where(mask.any(dim=1, keepdim=True), users, torch.tensor([9.0, 9.0]))


def test_student_users_score_by_the_dot_product_of_the_models_user_vector():
    out = hand_recall([([1, 2], [3, 4], [1, 0]), ([], [1, 5], [0, 1])], user="student", model=SumUser())
    # u = (2, 1): n3 = (3, 3) scores 9, n4 = (-1, 0) scores -2; the cold user's (9, 9): n1 18, n5 0
    np.testing.assert_allclose(out.scores, [9, -2, 18, 0])
    assert out.cold_users == 1


def test_end_to_end_puts_recalled_news_first_by_rerank_then_the_rest_by_recall_score():
    rerank = np.array([0.1, 0.9, 0.5, 0.7, 5.0, -3.0])
    rank = np.array([1, 0, 2, 3, 0, 0])  # within k = 2: slots 0 and 2 of the first impression
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.1, 0.2])
    out = end_to_end_scores(rerank, rank, score, 2)
    assert np.argsort(-out[:4], kind="stable").tolist() == [2, 0, 1, 3]
    assert np.argsort(-out[4:], kind="stable").tolist() == [1, 0]


def test_end_to_end_keeps_equal_rerank_scores_equal():
    out = end_to_end_scores(np.array([0.5, 0.5, 0.1]), np.array([1, 2, 0]), np.array([0.0, 0.0, 0.9]), 2)
    assert out[0] == out[1] > out[2]


# --- the stage ---------------------------------------------------------------------------------


def stage_world(folder, **recall):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["recall"] = params["recall"] | {"ks": [1, 2, 4], "rerank_k": 2, "batch": 2} | recall
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    dev = impressions(HAND_ROWS)
    (folder / "data/samples").mkdir(parents=True)
    (folder / "data/mind/dev").mkdir(parents=True)
    pq.write_table(pa.table({
        "impression_id": pa.array(dev.impression_ids, pa.int64()), "user_id": ["a", "b", "c"],
        "history": pa.array([r[0] for r in HAND_ROWS], pa.list_(pa.int32())),
        "candidates": pa.array([r[1] for r in HAND_ROWS], pa.list_(pa.int32())),
        "labels": pa.array([r[2] for r in HAND_ROWS], pa.list_(pa.int8())),
    }), folder / "data/samples/dev.parquet")
    from tinynewsrec.data import schemas

    columns = {name: [""] * 5 for name in schemas.NEWS.names} | {"news_id": [f"N{i}" for i in range(1, 6)],
                                                                  "news_index": list(range(1, 6))}
    pq.write_table(pa.table(columns, schema=schemas.NEWS), folder / "data/mind/dev/news.parquet")
    present = np.ones(len(HAND), np.uint8)
    present[0] = 0
    write_table(folder / TEXT_TABLE, HAND, present, {"model": "models/student", "dim": 2})


def test_the_stage_writes_the_metrics_and_a_slot_table_aligned_with_dev(workdir):
    stage_world(workdir, pool="all")
    load_stage("recall").main()
    m = json.loads((workdir / "metrics/recall.json").read_text())
    assert (m["pool"], m["users"], m["cold_users"]) == (5, 3, 1)
    assert m["recall"]["1"]["recall"] == pytest.approx(0.5)
    slots = pq.read_table(workdir / "data/recall/slots.parquet")
    assert slots.column("impression_id").to_pylist() == [100, 100, 100, 101, 101, 102, 102]
    assert slots.column("recall_rank").to_pylist() == [1, 3, 4, 1, 4, 3, 0]
    assert slots.schema.field("recall_score").type == pa.float32()


def test_the_default_pool_is_the_news_shown_in_the_dev_impressions(workdir):
    stage_world(workdir)  # news.parquet holds 5 news, the impressions show 4 of them
    load_stage("recall").main()
    m = json.loads((workdir / "metrics/recall.json").read_text())
    shown = {n for r in HAND_ROWS for n in r[1]}
    assert m["pool_kind"] == "candidates" and m["pool"] == len(shown) == 4


def test_the_stage_refuses_faiss_when_missing_before_reading_anything(workdir, monkeypatch):
    stage_world(workdir, backend="faiss")
    (workdir / "data/samples/dev.parquet").unlink()
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ParamError, match="pip install faiss-cpu"):
        load_stage("recall").main()


def test_a_table_shorter_than_the_news_the_impressions_refer_to_is_stale():
    from tinynewsrec.errors import DataError

    with pytest.raises(DataError, match="rerun the encode_text stage"):
        hand_recall([([1], [7], [1])])
