import json
import math

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import roc_auc_score

from tinynewsrec.data.schemas import BEHAVIORS
from tinynewsrec.errors import DataError
from tinynewsrec.metrics import (
    auc_score,
    evaluate_impressions,
    flatten_impressions,
    mrr_score,
    ndcg_score,
    rank_lists,
    read_prediction_file,
    write_prediction_file,
)


# The MIND leaderboard's scorer (evaluate.py of the competition kit), as it is.
def mind_dcg(y_true, y_score, k):
    order = np.argsort(y_score)[::-1]
    y_true = np.take(y_true, order[:k])
    gains = 2**y_true - 1
    discounts = np.log2(np.arange(len(y_true)) + 2)
    return np.sum(gains / discounts)


def mind_scores(y_true, y_score):
    y_true = np.asarray(y_true, dtype="float32")
    order = np.argsort(y_score)[::-1]
    y = np.take(y_true, order)
    mrr = np.sum(y / (np.arange(len(y)) + 1)) / np.sum(y)
    ndcg = [mind_dcg(y_true, y_score, k) / mind_dcg(y_true, y_true, k) for k in (5, 10)]
    return roc_auc_score(y_true, y_score), mrr, ndcg[0], ndcg[1]


def ev(scores, labels, offsets, **kwargs):
    """evaluate_impressions, quietly, on plain lists or arrays."""
    labels = np.asarray(labels, dtype=np.int8)
    scores, offsets = np.asarray(scores), np.asarray(offsets)
    return evaluate_impressions(scores, labels, offsets, progress=False, **kwargs)


def one(labels, scores):
    """evaluate_impressions on a single impression."""
    return ev(np.asarray(scores, dtype=np.float64), labels, [0, len(labels)])


def metrics_of(r):
    return [r["auc"], r["mrr"], r["ndcg5"], r["ndcg10"]]


def reference(labels, scores):
    return [
        auc_score(labels, scores),
        mrr_score(labels, scores),
        ndcg_score(labels, scores, 5),
        ndcg_score(labels, scores, 10),
    ]


def random_impressions(rng, n, ties, dtype, max_size=60):
    sizes = rng.integers(0, max_size, n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    total = offsets[-1]
    labels = (rng.random(total) < 0.25).astype(np.int8)
    scores = rng.standard_normal(total)
    if ties:
        scores = np.round(scores * 2) / 2  # a handful of distinct values: many ties
    if dtype == "float64-inexact":
        scores = scores + 0.1  # not representable in float32: the lexsort path
        dtype = np.float64
    return scores.astype(dtype), labels, offsets


# ---- hand-computed cases ------------------------------------------------------------


def test_single_click_at_rank_1_is_perfect():
    labels, scores = [1, 0, 0, 0], [0.9, 0.1, 0.2, 0.3]
    assert metrics_of(one(labels, scores)) == pytest.approx([1, 1, 1, 1])
    assert reference(labels, scores) == pytest.approx([1, 1, 1, 1])


def test_click_at_rank_3_of_4():
    # order c0, c1, c2, c3; the click c2 beats 1 of 3 non-clicks; DCG = 1/log2(4) = 1/2
    labels, scores = [0, 0, 1, 0], [0.9, 0.8, 0.5, 0.1]
    expected = [1 / 3, 1 / 3, 0.5, 0.5]
    assert metrics_of(one(labels, scores)) == pytest.approx(expected, abs=1e-12)
    assert reference(labels, scores) == pytest.approx(expected, abs=1e-12)


def test_several_clicks():
    # order c1(0) c2(1) c4(0) c0(1) c3(0): clicks at ranks 2 and 4
    labels, scores = [1, 0, 1, 0, 0], [0.2, 0.9, 0.8, 0.1, 0.3]
    auc = (2 + 1) / 6  # c2 beats 0.3 and 0.1; c0 beats 0.1
    mrr = (1 / 2 + 1 / 4) / 2
    ndcg = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    expected = [auc, mrr, ndcg, ndcg]
    assert metrics_of(one(labels, scores)) == pytest.approx(expected, abs=1e-12)
    assert reference(labels, scores) == pytest.approx(expected, abs=1e-12)


def test_click_at_rank_7_counts_in_ndcg10_not_ndcg5():
    labels = [0] * 10
    labels[6] = 1
    scores = np.linspace(1, 0, 10)  # rank = position
    r = one(labels, scores)
    assert r["ndcg5"] == 0.0
    assert r["ndcg10"] == pytest.approx(1 / math.log2(8))  # = 1/3
    assert r["mrr"] == pytest.approx(1 / 7)
    assert r["auc"] == pytest.approx(3 / 9)


def test_tied_scores_give_half_credit_in_auc():
    labels, scores = [0, 1, 0, 0], [0.5, 0.5, 0.5, 0.1]
    # the click ties with two non-clicks (1/2 each) and beats one: (1 + 0.5 + 0.5) / 3
    assert one(labels, scores)["auc"] == pytest.approx(2 / 3)
    assert auc_score(labels, scores) == pytest.approx(roc_auc_score(labels, scores))


def test_tied_scores_rank_the_earlier_candidate_first_in_mrr_and_ndcg():
    # c0, c1, c2 tie: documented order keeps them in list order, so the click c1 is rank 2
    labels, scores = [0, 1, 0, 0], [0.5, 0.5, 0.5, 0.1]
    r = one(labels, scores)
    expected = [1 / 2, 1 / math.log2(3)]
    assert [r["mrr"], r["ndcg5"]] == pytest.approx(expected)
    assert [mrr_score(labels, scores), ndcg_score(labels, scores, 5)] == pytest.approx(expected)
    assert one([1, 0], [1.0, 1.0])["mrr"] == 1.0
    assert one([0, 1], [1.0, 1.0])["mrr"] == 0.5


def test_negative_and_positive_zero_are_a_tie():
    scores = np.array([-0.0, 0.0], dtype=np.float32)
    r = evaluate_impressions(scores, np.array([0, 1], np.int8), np.array([0, 2]), progress=False)
    assert r["auc"] == 0.5
    assert r["mrr"] == 0.5  # earlier candidate first


def test_impressions_without_both_a_click_and_a_non_click_are_skipped_and_counted():
    labels = np.array([1, 1, 0, 0, 0, 0, 1], dtype=np.int8)  # all clicks | none | empty | mixed
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.9, 0.1])
    offsets = np.array([0, 2, 5, 5, 7])
    r = evaluate_impressions(scores, labels, offsets, per_impression=True, progress=False)
    assert r["impressions"] == 1
    assert r["skipped_impressions"] == 3
    assert metrics_of(r) == pytest.approx([0, 0.5, 1 / math.log2(3), 1 / math.log2(3)])
    assert np.isnan(r["per_impression"]["auc"][:3]).all()


def test_no_countable_impression_is_a_data_error():
    with pytest.raises(DataError, match="both a click and a non-click"):
        ev(np.array([0.1, 0.2]), [0, 0], [0, 2])


def test_nan_scores_are_a_data_error():
    with pytest.raises(DataError, match="NaN"):
        ev(np.array([np.nan, 0.2]), [1, 0], [0, 2])


def test_non_binary_labels_are_a_data_error():
    with pytest.raises(DataError, match="labels must be 0"):
        ev(np.array([0.1, 0.2]), [2, 0], [0, 2])


def test_offsets_that_do_not_cover_the_scores_are_refused():
    with pytest.raises(ValueError, match="offsets"):
        ev(np.array([0.1, 0.2, 0.3]), [1, 0, 0], [0, 2])


# ---- agreement on random data ---------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64, "float64-inexact"])
@pytest.mark.parametrize("ties", [False, True])
def test_vectorised_agrees_with_sklearn_and_reference_per_impression(dtype, ties):
    rng = np.random.default_rng(7)
    scores, labels, offsets = random_impressions(rng, 200, ties, dtype)
    # a small chunk size makes impressions cross many chunk boundaries
    r = ev(scores, labels, offsets, per_impression=True, chunk_candidates=500)
    per = r["per_impression"]
    counted = 0
    for i in range(len(offsets) - 1):
        y, s = labels[offsets[i] : offsets[i + 1]], scores[offsets[i] : offsets[i + 1]]
        if y.sum() in (0, len(y)):
            assert np.isnan(per["auc"][i])
            continue
        counted += 1
        got = [per["auc"][i], per["mrr"][i], per["ndcg5"][i], per["ndcg10"][i]]
        assert got == pytest.approx(reference(y, s), abs=1e-9)
        assert per["auc"][i] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert r["impressions"] == counted > 120
    assert r["auc"] == pytest.approx(np.nanmean(per["auc"]), abs=1e-12)


def test_agrees_with_the_leaderboard_scorer_when_scores_do_not_tie():
    rng = np.random.default_rng(3)
    scores, labels, offsets = random_impressions(rng, 200, False, np.float64)
    r = evaluate_impressions(scores, labels, offsets, progress=False)
    rows = []
    for i in range(len(offsets) - 1):
        y, s = labels[offsets[i] : offsets[i + 1]], scores[offsets[i] : offsets[i + 1]]
        if 0 < y.sum() < len(y):
            rows.append(mind_scores(y, s))
    assert metrics_of(r) == pytest.approx(np.mean(rows, axis=0), abs=1e-9)


def test_an_impression_larger_than_a_chunk():
    labels = np.zeros(10, dtype=np.int8)
    labels[6] = 1
    r = ev(np.linspace(1, 0, 10), labels, [0, 10], chunk_candidates=3)
    assert r["mrr"] == pytest.approx(1 / 7)


# ---- ranks and prediction.txt -----------------------------------------------------------


def test_rank_lists_gives_1_based_ranks_in_candidate_order():
    scores = np.array([0.1, 0.9, 0.5, 2.0, 2.0, 1.0])
    ranks = rank_lists(scores, np.array([0, 3, 3, 6]), progress=False)
    assert ranks.tolist() == [3, 1, 2, 1, 2, 3]  # ties: earlier candidate first


def test_prediction_file_format(tmp_path):
    path = tmp_path / "prediction.txt"
    ranks = np.array([3, 1, 2, 1, 2, 1])
    write_prediction_file(path, np.array([17, 18, 19]), ranks, np.array([0, 3, 5, 6]))
    assert path.read_text() == "17 [3,1,2]\n18 [1,2]\n19 [1]\n"


def test_prediction_file_round_trip_and_leaderboard_parse(tmp_path):
    rng = np.random.default_rng(5)
    scores, labels, offsets = random_impressions(rng, 150, True, np.float32)
    ids = rng.permutation(10_000)[:150] + 1
    ranks = rank_lists(scores, offsets, progress=False, chunk_candidates=300)
    path = tmp_path / "prediction.txt"
    write_prediction_file(path, ids, ranks, offsets)
    got_ids, got_ranks, got_offsets = read_prediction_file(path)
    assert got_ids.tolist() == ids.tolist()
    assert got_ranks.tolist() == ranks.tolist()
    assert got_offsets.tolist() == offsets.tolist()
    for line, i in zip(path.read_text().splitlines(), range(150)):
        impid, r = line.split()  # the leaderboard's parse_line
        sizes = offsets[i + 1] - offsets[i]
        assert int(impid) == ids[i] and sorted(json.loads(r)) == list(range(1, sizes + 1))


def test_leaderboard_score_of_prediction_file_equals_ours(tmp_path):
    # with ties in the scores: MRR/nDCG match exactly; AUC only where an impression has no tie
    rng = np.random.default_rng(11)
    scores, labels, offsets = random_impressions(rng, 200, True, np.float64)
    ours = evaluate_impressions(scores, labels, offsets, per_impression=True, progress=False)
    path = tmp_path / "prediction.txt"
    ranks = rank_lists(scores, offsets, progress=False)
    write_prediction_file(path, np.arange(200), ranks, offsets)
    _, ranks, _ = read_prediction_file(path)
    rows, tie_free = [], []
    for i in range(200):
        a, b = offsets[i], offsets[i + 1]
        y = labels[a:b]
        if 0 < y.sum() < len(y):
            rows.append(mind_scores(y, 1.0 / ranks[a:b]))
            tie_free.append(len(np.unique(scores[a:b])) == b - a)
    rows = np.array(rows)
    leaderboard = rows[:, 1:].mean(axis=0)
    assert [ours["mrr"], ours["ndcg5"], ours["ndcg10"]] == pytest.approx(leaderboard, abs=1e-9)
    valid = ~np.isnan(ours["per_impression"]["auc"])
    ours_auc = ours["per_impression"]["auc"][valid]
    tie_free = np.array(tie_free)
    assert tie_free.any() and not tie_free.all()
    assert ours_auc[tie_free] == pytest.approx(rows[tie_free, 0], abs=1e-9)


def test_bad_ranks_leave_an_existing_prediction_file_untouched(tmp_path):
    path = tmp_path / "prediction.txt"
    write_prediction_file(path, np.array([1]), np.array([2, 1]), np.array([0, 2]))
    with pytest.raises(ValueError, match="outside 1..impression size"):
        write_prediction_file(path, np.array([1]), np.array([3, 1]), np.array([0, 2]))
    assert path.read_text() == "1 [2,1]\n"
    assert [p.name for p in tmp_path.iterdir()] == ["prediction.txt"]


# ---- flattening a behaviors table --------------------------------------------------------


def behaviors(rows):
    return pa.Table.from_pylist(
        [
            {"impression_id": i, "user_id": "U1", "time": None, "history": [],
             "candidates": c, "labels": y}
            for i, c, y in rows
        ],
        schema=BEHAVIORS,
    )


def test_flatten_impressions():
    table = behaviors([(5, [3, 4], [0, 1]), (6, [7], [1])])
    ids, cands, labels, offsets = flatten_impressions(table)
    assert ids.tolist() == [5, 6]
    assert cands.tolist() == [3, 4, 7]
    assert labels.tolist() == [0, 1, 1] and labels.dtype == np.int8
    assert offsets.tolist() == [0, 2, 3]


def test_flatten_impressions_refuses_unlabeled_impressions():
    with pytest.raises(DataError, match="impression 6"):
        flatten_impressions(behaviors([(5, [3, 4], [0, 1]), (6, [7], None)]))
