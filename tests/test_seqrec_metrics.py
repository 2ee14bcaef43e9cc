"""Next-item ranking metrics (tinynewsrec.seqrec.metrics) against hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from tinynewsrec.seqrec.metrics import (candidate_mask, full_ranks, ranking_metrics, sample_negatives,
                                        sampled_ranks)


def test_full_ranking_by_hand():
    # items 1..5 (column 0 = padding). user 0: target 3 scores 0.5; items 1 (0.9) and 4 (0.7) score higher -> rank 3
    # user 1: target 1 is the top item, but padding scores 99 (never ranked) -> rank 1
    scores = torch.tensor([[5.0, 0.9, 0.1, 0.5, 0.7, 0.2],
                           [99.0, 0.8, 0.1, 0.2, 0.3, 0.4]])
    ranks = full_ranks(scores, torch.tensor([3, 1]))
    assert ranks.tolist() == [3, 1]
    m = ranking_metrics(ranks, [1, 5])
    assert m["HR@1"] == pytest.approx(0.5)
    assert m["HR@5"] == pytest.approx(1.0)
    assert m["NDCG@1"] == pytest.approx(0.5)
    assert m["NDCG@5"] == pytest.approx((1 / math.log2(4) + 1) / 2)
    assert m["MRR"] == pytest.approx((1 / 3 + 1) / 2)
    assert m["users"] == 2


def test_history_masking_removes_the_users_own_items_but_never_the_target():
    scores = torch.tensor([[0.0, 0.9, 0.1, 0.5, 0.7, 0.2]])
    target = torch.tensor([3])
    assert full_ranks(scores, target).item() == 3
    # item 1 and 4 were read before: masked, target 3 becomes first
    assert full_ranks(scores, target, torch.tensor([[0, 1, 4]])).item() == 1
    # the target in the history (a repeat) stays a candidate; padding 0 in the history changes nothing
    assert full_ranks(scores, target, torch.tensor([[0, 3, 1]])).item() == 2
    mask = candidate_mask(6, torch.tensor([[0, 3, 1]]), target)
    assert mask.tolist() == [[True, True, False, False, False, False]]


def test_ties_count_against_the_target():
    scores = torch.zeros(1, 6)  # a model that says nothing: every item ties
    assert full_ranks(scores, torch.tensor([2])).item() == 5  # last of the 5 real items
    assert sampled_ranks(scores, torch.tensor([2]), torch.tensor([[1, 3, 4]])).item() == 4


def test_sampled_ranking_by_hand():
    scores = torch.tensor([[0.0, 0.9, 0.1, 0.5, 0.7, 0.2]])
    # target 3 (0.5) against negatives 2 (0.1), 5 (0.2), 4 (0.7): one higher -> rank 2
    assert sampled_ranks(scores, torch.tensor([3]), torch.tensor([[2, 5, 4]])).item() == 2


def test_sampled_negatives_are_distinct_unseen_and_uniform():
    rng = np.random.default_rng(0)
    histories = [np.array([1, 2, 3]), np.array([], dtype=np.int64)]
    neg = sample_negatives(10, histories, np.array([4, 10]), size=6, rng=rng)
    for row, hist, target in zip(neg, histories, [4, 10]):
        assert len(set(row)) == 6 and set(row) <= set(range(1, 11))
        assert not (set(row) & (set(hist.tolist()) | {target}))
    # all 6 unseen items of user 0 (5..10) when 6 are asked for
    assert sorted(neg[0]) == [5, 6, 7, 8, 9, 10]
    counts = np.bincount(sample_negatives(10, [np.array([1])] * 4000, np.full(4000, 2), 1, rng).ravel(),
                         minlength=11)
    assert counts[:3].sum() == 0 and counts[3:].min() > 4000 / 8 * 0.8  # uniform over 3..10
    with pytest.raises(ValueError, match="needs 9 negatives"):
        sample_negatives(10, [np.array([1, 2])], np.array([3]), 9, rng)


def test_empty_rank_lists_give_nan_not_a_crash():
    m = ranking_metrics(np.zeros(0), [10])
    assert m["users"] == 0 and math.isnan(m["NDCG@10"]) and math.isnan(m["MRR"])
