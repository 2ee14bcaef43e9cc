"""The popularity ranker: the reference row that a text model must beat clearly.

A news item's score is how popular it is known to be at dev time, without dev labels:

    popularity[n] = clicks n received in the train split's impressions
                  + occurrences of n in the dev users' click histories

Both parts are counts over ``news_index`` (``np.bincount``); index 0 (padding) always
scores 0. The ranker ignores the user, so it scores every impression's candidates with
``popularity[candidates]``. Counts tie often (most dev candidates are fresh news with a
count of 0): AUC gives ties half credit, MRR and nDCG order equal scores as documented in
:mod:`tinynewsrec.metrics` (the earlier candidate of the impression ranks higher).
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import DataError

log = logging.getLogger("tinynewsrec")


def _news_counts(indices: np.ndarray, n_news: int, what: str) -> np.ndarray:
    """``np.bincount`` of news indices; padding (0) is not counted; out of range refused."""
    if len(indices) and (indices.min() < 0 or indices.max() >= n_news):
        raise DataError(
            f"{what} refers to news_index {int(indices.min())}..{int(indices.max())}, outside "
            f"0..{n_news - 1} (n_news = {n_news:,}): the behaviors and the news table come from "
            "different download runs; rerun the download stage"
        )
    counts = np.bincount(indices, minlength=n_news)
    counts[0] = 0
    return counts


def train_clicks(train_behaviors: pa.Table, n_news: int) -> np.ndarray:
    """Clicks each news received in the (labeled) train impressions, per ``news_index``."""
    cands = train_behaviors.column("candidates").combine_chunks()
    labels = train_behaviors.column("labels").combine_chunks()
    n_unlabeled = labels.null_count
    if n_unlabeled:
        raise DataError(
            f"{n_unlabeled:,} train impressions have no labels; the popularity ranker counts "
            "train clicks, so the train split must be labeled (MIND's train split is)"
        )
    n_cand = pc.list_value_length(cands).to_numpy(zero_copy_only=False)
    n_lab = pc.list_value_length(labels).to_numpy(zero_copy_only=False)
    if not np.array_equal(n_cand, n_lab):
        bad = int(np.sum(n_cand != n_lab))
        raise DataError(
            f"{bad:,} train impressions have a different number of labels than candidates; "
            "rebuild the behaviors table with the download stage"
        )
    flat_c = pc.list_flatten(cands).to_numpy(zero_copy_only=False)
    flat_l = pc.list_flatten(labels).to_numpy(zero_copy_only=False)
    return _news_counts(flat_c[flat_l == 1], n_news, "a train click")


def history_counts(behaviors: pa.Table, n_news: int) -> np.ndarray:
    """Occurrences of each news in the users' click histories, per ``news_index``."""
    hist = behaviors.column("history").combine_chunks()
    return _news_counts(pc.list_flatten(hist).to_numpy(zero_copy_only=False), n_news, "a history")


def popularity_scores(
    train_behaviors: pa.Table, dev_behaviors: pa.Table, n_news: int
) -> np.ndarray:
    """Popularity per ``news_index`` (float64, length ``n_news``), known at dev time.

    Train clicks plus occurrences in the dev users' histories; dev labels are not read.
    ``n_news`` is the number of index slots, i.e. the largest ``news_index`` + 1. Tables
    have the BEHAVIORS columns of :mod:`tinynewsrec.data.schemas`.
    """
    if n_news < 1:
        raise ValueError(f"n_news must be at least 1 (the padding slot), got {n_news}")
    clicks = train_clicks(train_behaviors, n_news)
    seen = history_counts(dev_behaviors, n_news)
    log.info(
        "popularity of %s news: %s train clicks, %s dev history entries",
        f"{n_news - 1:,}", f"{int(clicks.sum()):,}", f"{int(seen.sum()):,}",
    )
    return (clicks + seen).astype(np.float64)
