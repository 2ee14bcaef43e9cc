"""Ranking metrics exactly as the MIND leaderboard computes them, and its ``prediction.txt``.

The leaderboard's scorer (``evaluate.py`` in the MIND competition kit) scores every
impression on its own and averages over impressions:

- **AUC**: ``sklearn.metrics.roc_auc_score(labels, scores)``; tied scores get half credit
  (the Mann-Whitney U with tie-averaged ranks).
- **MRR**: candidates in descending score order; ``sum(y / rank) / sum(y)``, i.e. the sum over
  clicked news of 1/rank divided by the number of clicks.
- **nDCG@k**: ``DCG@k(labels, scores) / DCG@k(labels, labels)`` with
  ``DCG@k = sum_{rank <= k} (2**y - 1) / log2(rank + 1)``.

Decisions where MIND is silent:

- **Which impressions count.** Only impressions with at least one click and at least one
  non-click are scored (AUC is undefined otherwise; MIND's dev set has none of the other
  kind). The others, including empty impressions, are skipped and counted in
  ``skipped_impressions``.
- **Tied scores in MRR and nDCG.** MIND orders candidates with ``np.argsort(scores)[::-1]``,
  whose order among equal scores depends on numpy's (unstable) default sort. Here the order
  is defined: a *stable* sort by descending score, so among equal scores the candidate that
  comes **earlier in the impression ranks higher**. The reference functions
  (:func:`mrr_score`, :func:`ndcg_score`), the vectorised :func:`evaluate_impressions` and
  :func:`rank_lists` all use this order. Continuous model scores practically never tie; the
  popularity ranker's integer counts do.
- **prediction.txt.** The leaderboard does not read scores but ranks, and scores each
  impression with ``1 / rank``. :func:`rank_lists` gives every candidate a distinct rank in
  the order above, so the leaderboard's MRR and nDCG of our ``prediction.txt`` equal ours
  exactly; its AUC equals ours whenever an impression has no tied scores (with ties, ours
  gives half credit while the file's ranks break the tie).

Data layout of the vectorised functions (no Python loop per impression): all candidates of
all impressions in one flat array, impression ``i`` owning
``scores[offsets[i]:offsets[i + 1]]``, in the impression's original candidate order.
"""

from __future__ import annotations

import logging
import os
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from .errors import DataError
from .io import atomic_path

log = logging.getLogger("tinynewsrec")

#: Candidates sorted at once; bounds memory (about 60 bytes per candidate) at any scale.
CHUNK_CANDIDATES = 1 << 21

METRIC_NAMES = ("auc", "mrr", "ndcg5", "ndcg10")


# --------------------------------------------------------------------------------------
# Reference per-impression functions: written plainly, one impression at a time.
# --------------------------------------------------------------------------------------


def descending_order(scores: np.ndarray) -> np.ndarray:
    """Candidate indices from the highest score to the lowest; equal scores keep list order."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.argsort(-scores, kind="stable")


def auc_score(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUC of one impression: the share of (click, non-click) pairs ranked the right way.

    A pair with equal scores counts one half, which is what ``roc_auc_score`` computes.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("AUC needs at least one click and one non-click")
    wins = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((wins + 0.5 * ties) / (len(pos) * len(neg)))


def mrr_score(labels: np.ndarray, scores: np.ndarray) -> float:
    """MRR of one impression: sum over clicked news of 1/rank, divided by the clicks."""
    y = np.asarray(labels, dtype=np.float64)[descending_order(scores)]
    rr = y / (np.arange(len(y)) + 1)
    return float(np.sum(rr) / np.sum(y))


def dcg_score(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    """DCG@k: gains ``2**y - 1`` of the top k by score, discounted by ``log2(rank + 1)``."""
    y = np.asarray(labels, dtype=np.float64)[descending_order(scores)[:k]]
    gains = 2**y - 1
    discounts = np.log2(np.arange(len(y)) + 2)
    return float(np.sum(gains / discounts))


def ndcg_score(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    """nDCG@k of one impression: DCG@k of the scores' order over DCG@k of the ideal order."""
    return dcg_score(labels, scores, k) / dcg_score(labels, labels, k)


# --------------------------------------------------------------------------------------
# Vectorised: all impressions at once, in chunks of whole impressions.
# --------------------------------------------------------------------------------------


def _check_offsets(offsets: np.ndarray, n_values: int, what: str) -> np.ndarray:
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != n_values:
        raise ValueError(
            f"offsets must start at 0 and end at len({what}) = {n_values:,}; "
            f"got {len(offsets):,} offsets"
        )
    if np.any(np.diff(offsets) < 0):
        raise ValueError("offsets must be non-decreasing")
    return offsets


def _check_scores(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(f"scores must be a flat array, got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    return scores


def _chunks(offsets: np.ndarray, chunk: int) -> Iterator[tuple[int, int]]:
    """Ranges ``[lo, hi)`` of whole impressions holding about ``chunk`` candidates each."""
    n = len(offsets) - 1
    lo = 0
    while lo < n:
        hi = int(np.searchsorted(offsets, offsets[lo] + chunk, side="right")) - 1
        hi = min(max(hi, lo + 1), n)
        yield lo, hi
        lo = hi


def _sort_chunk(scores: np.ndarray, imp: np.ndarray) -> np.ndarray:
    """Order of a chunk by (impression, descending score), equal scores in list order.

    Scores that are exact in float32 (model outputs, counts) are sorted through one 64-bit
    key (impression in the high half, an order-preserving image of the score in the low
    half), about five times faster than ``np.lexsort``, which handles the rest.
    """
    bad = ~np.isfinite(scores)
    if bad.any():
        raise DataError(
            f"{int(bad.sum()):,} candidate scores are NaN or infinite; the model that produced "
            "them has diverged or read broken inputs: retrain it or check its checkpoint"
        )
    s32 = scores.astype(np.float32)
    if scores.dtype == np.float32 or np.array_equal(s32, scores):
        s32 += np.float32(0.0)  # -0.0 -> +0.0, so that both get the same key
        bits = s32.view(np.uint32)
        ascending = np.where(bits >> 31 == 1, ~bits, bits | np.uint32(0x80000000))
        key = imp.astype(np.uint64) << np.uint64(32)
        key |= (~ascending).astype(np.uint64)
        return np.argsort(key, kind="stable")
    return np.lexsort((-scores, imp))


def _chunk_positions(
    offsets: np.ndarray, lo: int, hi: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local impression index of each candidate, impression sizes and local starts."""
    starts = offsets[lo:hi] - offsets[lo]
    sizes = np.diff(offsets[lo : hi + 1])
    imp = np.repeat(np.arange(hi - lo, dtype=np.int32), sizes)
    return imp, sizes, starts


def _progress(total: int, progress: bool, desc: str):
    return tqdm(total=total, unit="impression", unit_scale=True, desc=desc, disable=not progress)


def evaluate_impressions(
    scores: np.ndarray,
    labels: np.ndarray,
    offsets: np.ndarray,
    *,
    per_impression: bool = False,
    progress: bool = True,
    chunk_candidates: int = CHUNK_CANDIDATES,
) -> dict:
    """AUC, MRR, nDCG@5 and nDCG@10 averaged over impressions, as the MIND leaderboard.

    ``scores`` (flat, float) and ``labels`` (flat, 0/1) hold the candidates of all
    impressions; impression ``i`` is ``[offsets[i], offsets[i + 1])``. Returns
    ``{"auc", "mrr", "ndcg5", "ndcg10"}`` (floats, 0-1 scale, means over the counted
    impressions), ``"impressions"`` (how many were counted) and ``"skipped_impressions"``
    (those without both a click and a non-click). With ``per_impression=True`` the dict also
    holds ``"per_impression"``: one float64 array per metric, NaN for skipped impressions.

    Agrees with :func:`auc_score` (and ``roc_auc_score``), :func:`mrr_score` and
    :func:`ndcg_score` per impression; see the module docstring for the order of ties.
    Works in chunks of whole impressions, so memory stays bounded at MIND-large scale.
    """
    scores = _check_scores(scores)
    labels = np.asarray(labels)
    if labels.shape != scores.shape:
        raise ValueError(f"labels have shape {labels.shape}, scores {scores.shape}")
    offsets = _check_offsets(offsets, len(scores), "scores")
    n_imp = len(offsets) - 1
    if len(labels) and (labels.min() < 0 or labels.max() > 1):
        raise DataError(
            f"labels must be 0 (not clicked) or 1 (clicked); found values from {labels.min()} "
            f"to {labels.max()}: check the behaviors' impressions column"
        )
    log.info("scoring %s impressions (%s candidates)", f"{n_imp:,}", f"{len(scores):,}")

    out = {name: np.full(n_imp, np.nan) for name in METRIC_NAMES}
    clicks = np.zeros(n_imp, dtype=np.int64)
    sizes_all = np.diff(offsets)
    max_size = int(sizes_all.max()) if n_imp else 0
    discount = 1.0 / np.log2(np.arange(max_size) + 2)  # 1/log2(rank + 1) for rank 1..max
    ideal = {k: np.concatenate([[0.0], np.cumsum(discount[:k])]) for k in (5, 10)}

    with _progress(n_imp, progress, "scoring impressions") as bar:
        for lo, hi in _chunks(offsets, chunk_candidates):
            a, b = offsets[lo], offsets[hi]
            imp, sizes, starts = _chunk_positions(offsets, lo, hi)
            s = scores[a:b]
            order = _sort_chunk(s, imp)
            s_sorted = s[order]
            pos = np.arange(b - a) - starts[imp]  # 0-based rank within the impression
            clicked = np.flatnonzero(labels[a:b][order] == 1)
            imp_c, pos_c = imp[clicked], pos[clicked]
            n_loc = hi - lo
            p = np.bincount(imp_c, minlength=n_loc)
            n_neg = sizes - p
            valid = (p > 0) & (n_neg > 0)
            clicks[lo:hi] = p
            with np.errstate(divide="ignore", invalid="ignore"):
                # AUC: Mann-Whitney U from the ascending ranks of the clicks, ties averaged.
                # A tie run spans descending positions first..last; its mean ascending rank
                # is size - (first + last) / 2.
                new_run = np.empty(b - a, dtype=bool)
                new_run[:1] = True
                np.not_equal(s_sorted[1:], s_sorted[:-1], out=new_run[1:])
                new_run |= pos == 0
                first = np.flatnonzero(new_run)
                last = np.append(first[1:], b - a) - 1
                mid = (pos[first] + pos[last]) * 0.5
                run_c = np.cumsum(new_run)[clicked] - 1
                rank_sum = np.bincount(imp_c, weights=sizes[imp_c] - mid[run_c], minlength=n_loc)
                auc = (rank_sum - p * (p + 1) / 2) / (p * n_neg)
                mrr = np.bincount(imp_c, weights=1.0 / (pos_c + 1), minlength=n_loc) / p
                res = {"auc": auc, "mrr": mrr}
                for k in (5, 10):
                    top = pos_c < k
                    dcg = np.bincount(imp_c[top], weights=discount[pos_c[top]], minlength=n_loc)
                    res[f"ndcg{k}"] = dcg / ideal[k][np.minimum(p, k)]
            for name in METRIC_NAMES:
                out[name][lo:hi] = np.where(valid, res[name], np.nan)
            bar.update(hi - lo)

    valid = (clicks > 0) & (clicks < sizes_all)
    counted = int(valid.sum())
    if counted == 0:
        raise DataError(
            f"none of the {n_imp:,} impressions has both a click and a non-click, so AUC, MRR "
            "and nDCG are undefined: evaluate on labeled dev impressions"
        )
    result: dict = {name: float(np.mean(out[name][valid])) for name in METRIC_NAMES}
    result["impressions"] = counted
    result["skipped_impressions"] = n_imp - counted
    if n_imp - counted:
        log.info(
            "skipped %s impressions without both a click and a non-click", f"{n_imp - counted:,}"
        )
    if per_impression:
        result["per_impression"] = out
    return result


def rank_lists(
    scores: np.ndarray,
    offsets: np.ndarray,
    *,
    progress: bool = True,
    chunk_candidates: int = CHUNK_CANDIDATES,
) -> np.ndarray:
    """1-based rank of every candidate within its impression (1 = highest score).

    Flat int32 array aligned with ``scores``: impression ``i``'s ranks, in its original
    candidate order, are ``ranks[offsets[i]:offsets[i + 1]]``, a permutation of
    ``1..size``. Equal scores: the earlier candidate gets the better rank.
    """
    scores = _check_scores(scores)
    offsets = _check_offsets(offsets, len(scores), "scores")
    ranks = np.empty(len(scores), dtype=np.int32)
    with _progress(len(offsets) - 1, progress, "ranking candidates") as bar:
        for lo, hi in _chunks(offsets, chunk_candidates):
            a, b = offsets[lo], offsets[hi]
            imp, _, starts = _chunk_positions(offsets, lo, hi)
            order = _sort_chunk(scores[a:b], imp)
            ranks[a + order] = np.arange(1, b - a + 1) - starts[imp]
            bar.update(hi - lo)
    return ranks


def write_prediction_file(
    path: str | os.PathLike,
    impression_ids: np.ndarray,
    ranks: np.ndarray,
    offsets: np.ndarray,
) -> None:
    """Write the MIND leaderboard's ``prediction.txt`` atomically.

    One line per impression, in the given order (the leaderboard matches it line by line
    against its truth file, i.e. the order of ``behaviors.tsv``): ``impression_id [r1,r2,...]``
    with the ranks of :func:`rank_lists` in the impression's candidate order and no spaces
    inside the brackets. Built with pyarrow string kernels, not a Python loop per line.
    """
    impression_ids = np.asarray(impression_ids)
    ranks = np.asarray(ranks)
    offsets = _check_offsets(offsets, len(ranks), "ranks")
    n_imp = len(offsets) - 1
    if len(impression_ids) != n_imp:
        raise ValueError(f"{len(impression_ids):,} impression ids for {n_imp:,} impressions")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for lo, hi in _chunks(offsets, CHUNK_CANDIDATES):
            f.write(_prediction_lines(impression_ids[lo:hi], ranks, offsets[lo : hi + 1]))
    log.info("wrote %s impressions' ranks to %s", f"{n_imp:,}", path)


def _prediction_lines(
    impression_ids: np.ndarray, ranks: np.ndarray, offsets: np.ndarray
) -> pa.Buffer:
    """``prediction.txt`` lines of some whole impressions, as one buffer of UTF-8 text."""
    r = ranks[offsets[0] : offsets[-1]]
    local = offsets - offsets[0]
    sizes = np.diff(local)
    bad = np.flatnonzero((r < 1) | (r > np.repeat(sizes, sizes)))
    if len(bad):
        imp = int(np.searchsorted(local, bad[0], side="right")) - 1
        raise ValueError(
            f"{len(bad):,} ranks are outside 1..impression size, first in impression "
            f"{impression_ids[imp]}: ranks must come from rank_lists"
        )
    text = pa.large_string()
    lit = lambda s: pa.scalar(s, text)  # noqa: E731
    rank_text = pc.cast(pa.array(r.astype(np.int32, copy=False)), text)
    joined = pc.binary_join(pa.LargeListArray.from_arrays(pa.array(local), rank_text), lit(","))
    ids = pc.cast(pa.array(impression_ids), text)
    lines = pc.binary_join_element_wise(ids, lit(" ["), joined, lit("]\n"), lit(""))
    whole = pc.binary_join(
        pa.LargeListArray.from_arrays(pa.array([0, len(lines)], pa.int64()), lines), lit("")
    )
    return whole[0].as_buffer()


def read_prediction_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a ``prediction.txt`` back as ``(impression_ids, ranks, offsets)`` (flat ranks).

    Parses the same way as the leaderboard (``impression_id`` then the bracketed list,
    split on whitespace); a malformed line raises :class:`DataError` naming it.
    """
    ids, lists = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 2 or not (parts[1].startswith("[") and parts[1].endswith("]")):
                raise DataError(
                    f"{path}, line {number}: expected 'impression_id [r1,r2,...]', got {line!r}"
                )
            ids.append(int(parts[0]))
            lists.append(parts[1][1:-1])
    sizes = np.array([s.count(",") + 1 if s else 0 for s in lists], dtype=np.int64)
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    body = ",".join(s for s in lists if s)
    ranks = np.array(body.split(",") if body else [], dtype=np.int64).astype(np.int32)
    return np.array(ids, dtype=np.int64), ranks, offsets


def flatten_impressions(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat ``(impression_ids, candidates, labels, offsets)`` of labeled impressions.

    ``table`` has the BEHAVIORS or DEV_SAMPLES columns ``impression_id``, ``candidates``
    (news_index) and ``labels``. An impression without labels (MIND's test split) or with a
    different number of labels than candidates raises :class:`DataError`.
    """
    ids = table.column("impression_id").to_numpy()
    cands = table.column("candidates").combine_chunks()
    labels = table.column("labels").combine_chunks()
    unlabeled = np.flatnonzero(labels.is_null().to_numpy(zero_copy_only=False))
    if len(unlabeled):
        raise DataError(
            f"{len(unlabeled):,} impressions have no labels (first: impression "
            f"{ids[unlabeled[0]]}); evaluation needs a labeled split such as dev, not test"
        )
    n_cand = pc.list_value_length(cands).to_numpy(zero_copy_only=False)
    n_lab = pc.list_value_length(labels).to_numpy(zero_copy_only=False)
    wrong = np.flatnonzero(n_cand != n_lab)
    if len(wrong):
        i = wrong[0]
        raise DataError(
            f"{len(wrong):,} impressions have a different number of labels than candidates "
            f"(first: impression {ids[i]}, {n_cand[i]} candidates, {n_lab[i]} labels); "
            "rebuild the behaviors table with the download stage"
        )
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(n_cand, out=offsets[1:])
    flat_c = pc.list_flatten(cands).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    flat_l = pc.list_flatten(labels).to_numpy(zero_copy_only=False).astype(np.int8, copy=False)
    return ids.astype(np.int64, copy=False), flat_c, flat_l, offsets
