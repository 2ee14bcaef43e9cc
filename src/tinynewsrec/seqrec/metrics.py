"""Next-item ranking metrics: full ranking (padding and history masked) and sampled-N ranking.

One target per user (leave-one-out). A target's **rank** is 1 + the number of candidate items
scoring higher, + the number of OTHER candidates scoring exactly the same (ties count against
the target: a model that gives every item the same score ranks its targets last, not first).
HR@K = share of users with rank <= K; NDCG@K = mean of 1 / log2(rank + 1) over users with
rank <= K (one relevant item, so the ideal DCG is 1); MRR = mean of 1 / rank.

Full ranking ranks the target among all items 1..N: column 0 (padding) is never a candidate,
and with ``mask_history`` neither are the user's own earlier items (the seed code ranked both,
which lets a model "recommend" padding and the news a user already read). Sampled ranking
ranks it among ``S`` random items the user never interacted with (the seed code's 100): far
easier than full ranking, so its HR / NDCG are inflated and not comparable to full ranking.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def candidate_mask(n_columns: int, histories: torch.Tensor | None, targets: torch.Tensor) -> torch.Tensor:
    """``[B, n_columns]`` bool: True where an item is NOT a candidate (padding; history if given).

    The target itself is always a candidate, even if it also appears in the history."""
    out = torch.zeros(len(targets), n_columns, dtype=torch.bool, device=targets.device)
    out[:, 0] = True
    if histories is not None:
        out.scatter_(1, histories.clamp(0, n_columns - 1), True)
    out[torch.arange(len(targets), device=targets.device), targets] = False
    return out


def full_ranks(scores: torch.Tensor, targets: torch.Tensor, histories: torch.Tensor | None = None) -> torch.Tensor:
    """1-based ranks ``[B]`` of ``targets`` among all items (columns of ``scores`` [B, N + 1])."""
    scores = scores.float()
    masked = candidate_mask(scores.shape[1], histories, targets)
    target = scores.gather(1, targets[:, None])
    higher = ((scores > target) & ~masked).sum(1)
    ties = ((scores == target) & ~masked).sum(1) - 1  # the target ties with itself
    return 1 + higher + ties


def sample_negatives(n_items: int, histories: list, targets: np.ndarray, size: int,
                     rng: np.random.Generator) -> np.ndarray:
    """``[B, size]`` distinct items per user drawn uniformly from 1..n_items, none of them the
    user's target or in the user's history (``histories[b]``: an array of item ids)."""
    out = np.empty((len(targets), size), dtype=np.int64)
    for b, (history, target) in enumerate(zip(histories, targets)):
        seen = np.unique(np.append(np.asarray(history, dtype=np.int64), target))
        seen = seen[seen > 0]
        free = n_items - len(seen)
        if free < size:
            raise ValueError(f"sampled ranking needs {size} negatives, but a user has only {free} unseen items")
        picks = rng.choice(free, size=size, replace=False)  # positions among the unseen items, in order
        # the k-th unseen item is k + 1 + (number of seen items <= it): shift past each seen item
        items = picks + 1
        for s in seen:  # seen is sorted: each one pushes the later picks one further
            items = items + (items >= s)
        out[b] = items
    return out


def sampled_ranks(scores: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """1-based ranks of ``targets`` among themselves and ``negatives`` [B, S] (ties against)."""
    scores = scores.float()
    target = scores.gather(1, targets[:, None])
    neg = scores.gather(1, negatives)
    return 1 + (neg >= target).sum(1)


def ranking_metrics(ranks: np.ndarray | torch.Tensor, ks: list[int]) -> dict[str, float]:
    """HR@K, NDCG@K for each K, MRR and the number of users, from 1-based ranks."""
    ranks = np.asarray(ranks.cpu() if torch.is_tensor(ranks) else ranks, dtype=np.float64)
    out: dict[str, float] = {"users": int(len(ranks))}
    if not len(ranks):
        return out | {f"{m}@{k}": math.nan for k in ks for m in ("HR", "NDCG")} | {"MRR": math.nan}
    for k in ks:
        hit = ranks <= k
        out[f"HR@{k}"] = float(hit.mean())
        out[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean())
    out["MRR"] = float((1.0 / ranks).mean())
    return out
