"""Encoding every news once with a PLM-NR, and scoring MIND's dev impressions with it.

Two stages use this module:

- ``export_teacher_emb``: teacher i's news embeddings of every title (``news``, what
  stage-2 distillation matches), its user encoder's weights (``user_encoder.*``, which
  stage 2 runs frozen on those embeddings) and the post-trained checkpoint step_i's
  embeddings of every title and body (``title``, ``body``, what stage-1 distillation
  matches), written to
  ``data/teacher_emb/teacher_{i}.safetensors`` (:func:`export_teacher_embeddings`,
  :mod:`tinynewsrec.teacher_emb`).
- ``evaluate``: for every model, the news of the dev impressions are encoded ONCE
  (:func:`encode_news`), each impression's user vector is computed ONCE from its history's
  embeddings, and its candidates are scored by dot product (:func:`score_impressions`);
  the ranking metrics are MIND's (:func:`tinynewsrec.metrics.evaluate_impressions`),
  averaged over impressions with both a click and a non-click.

Decisions where the design is silent:

- **Frozen-layer cache.** News are encoded through ``data/cache/frozen/{title,body}``
  (only the PLM's top layers run) when that cache exists and was built from this model's
  embeddings and lower layers (:meth:`FrozenCache.check_model`); otherwise (e.g. a student
  whose lower layers were trained) from token ids through the whole PLM, which is the same
  function, only slower. The reason is logged. A float16 cache changes embeddings by a
  few 1e-4 relative (MiniLM titles: median 2e-4); a float32 cache by float rounding only.
- **Which news are encoded.** ``evaluate``: exactly the news the dev impressions refer to
  (kept history and candidates); ``export``: every news of data/tokens/news.parquet. Tables
  are indexed by ``news_index`` with row 0 (the padding) and any news not encoded all zeros.
- **Several processes** (``accelerate launch``): news are split between processes
  (``split_between_processes`` on contiguous ranges, each process sorting its part by length
  to pad little) and impressions likewise; results are gathered (``pad_across_processes`` +
  ``gather``) in the original order, so every process holds the whole table / all scores.
  Writing, metrics and efficiency measurements happen on the main process only. With one
  process (the default) nothing is split.
- **The popularity row** ranks by :func:`tinynewsrec.popularity.popularity_scores` (train
  clicks + dev history occurrences); the **oracle row** (synthetic data only) ranks by the
  generator's true click probabilities: the synthetic world's ceiling, which no model can
  beat in expectation. Neither has an efficiency row: neither is a deployable model.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .data import schemas
from .errors import DataError
from .io import read_parquet
from .metrics import (
    METRIC_NAMES,
    evaluate_impressions,
    flatten_impressions,
    rank_lists,
    write_prediction_file,
)
from .models.cache import FrozenCache, pad_ranges, ragged_parts
from .models.plmnr import PLMNR, AttentionPooling, NewsTokens, UserEncoder, click_scores
from .models.base import Recommender
from .teacher_emb import USER_ENCODER_PREFIX

log = logging.getLogger("tinynewsrec")



# --- several processes -------------------------------------------------------------------


def _my_rows(n: int, state) -> np.ndarray:
    """This process's contiguous share of the rows 0..n-1 (all of them without ``state``)."""
    if state is None or state.num_processes == 1:
        return np.arange(n, dtype=np.int64)
    with state.split_between_processes(torch.arange(n, dtype=torch.int64)) as mine:
        return mine.numpy()


def _gather_rows(t: torch.Tensor, state) -> torch.Tensor:
    """Concatenate every process's ``t`` along dim 0 in process order (ragged sizes allowed)."""
    if state is None or state.num_processes == 1:
        return t
    from accelerate.utils import gather, pad_across_processes

    sizes = gather(torch.tensor([t.shape[0]], device=state.device)).cpu().tolist()
    padded = pad_across_processes(t.to(state.device), dim=0)
    width = padded.shape[0]
    every = gather(padded).cpu()
    return torch.cat([every[p * width : p * width + size] for p, size in enumerate(sizes)])


def _is_main(state) -> bool:
    return state is None or state.is_main_process


# --- news ----------------------------------------------------------------------------------


def news_lookup(plm, tokens: pa.Table, column: str = "title_ids", cache_dir: str | os.PathLike | None = None,
                name: str = "the model"):
    """Where ``plm``'s news encoder reads its input from: the frozen-layer cache
    ``cache_dir`` if it exists and fits ``plm``, else the token ids ``column`` of ``tokens``
    (data/tokens/news.parquet). ``name`` is used in the log."""
    if cache_dir is not None and Path(cache_dir).exists():
        cache = FrozenCache(cache_dir)
        try:
            cache.check_model(plm)
        except DataError as e:
            log.info("%s: the frozen-layer cache does not fit (%s); encoding from token ids", name, e)
        else:
            return cache
    elif cache_dir is not None:
        log.info("%s: no frozen-layer cache at %s; encoding from token ids", name, cache_dir)
    return NewsTokens(tokens, column=column)


@torch.inference_mode()
def encode_news(
    news_encoder,
    lookup,
    news_index,
    *,
    n_slots: int | None = None,
    batch_size: int = 128,
    progress: bool = True,
    desc: str = "encoding news",
    state=None,
) -> torch.Tensor:
    """Embeddings [n_slots, news_dim] (float32, on the encoder's device) of ``news_index`` by
    ``news_encoder``: a :class:`~tinynewsrec.recommender.Recommender` (its ``encode_news``) or a
    bare news encoder module.

    Row ``i`` holds news_index ``i``'s embedding; row 0 and rows not in ``news_index`` are
    zeros. ``lookup``: a :class:`NewsTokens` or :class:`FrozenCache` (see :func:`news_lookup`).
    News are batched by similar length (little padding); eval mode, no autograd.
    """
    news_index = np.unique(np.asarray(news_index, dtype=np.int64))
    news_index = news_index[news_index > 0]
    if n_slots is None:
        n_slots = int(news_index[-1]) + 1 if len(news_index) else 1
    if len(news_index) and news_index[-1] >= n_slots:
        raise ValueError(f"news_index {news_index[-1]} does not fit a table of {n_slots} rows")
    mine = news_index[_my_rows(len(news_index), state)]
    lengths = np.diff(lookup.offsets)[np.minimum(mine, len(lookup.offsets) - 2)]
    mine = mine[np.argsort(lengths, kind="stable")]
    device = next(news_encoder.parameters()).device
    was_training = news_encoder.training
    news_encoder.eval()
    encode = news_encoder.encode_news if isinstance(news_encoder, Recommender) else news_encoder
    parts = []
    try:
        with tqdm(total=len(mine), desc=desc, unit="news", disable=not (progress and _is_main(state))) as bar:
            for lo in range(0, len(mine), batch_size):
                batch = lookup.batch(mine[lo : lo + batch_size])
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                parts.append(encode(batch).float())
                bar.update(len(parts[-1]))
    finally:
        news_encoder.train(was_training)
    dim = news_encoder.news_dim if isinstance(news_encoder, Recommender) else news_encoder.dense.out_features
    vecs = torch.cat(parts) if parts else torch.zeros(0, dim, device=device)
    idx = _gather_rows(torch.from_numpy(mine).to(device), state).to(device)
    vecs = _gather_rows(vecs, state).to(device)
    table = torch.zeros(n_slots, dim, device=device)
    table[idx] = vecs
    return table


# --- dev impressions ----------------------------------------------------------------------


@dataclass
class DevImpressions:
    """MIND dev impressions as flat arrays (no Python object per impression).

    Impression ``i`` has candidates ``candidates[offsets[i]:offsets[i + 1]]`` with labels
    ``labels[...]`` (same slice) and clicked history
    ``history[history_offsets[i]:history_offsets[i + 1]]`` (oldest first, news_index).
    """

    impression_ids: np.ndarray  # int64 [I]
    candidates: np.ndarray  # int32, flat
    labels: np.ndarray  # int8, flat
    offsets: np.ndarray  # int64 [I + 1]
    history: np.ndarray  # int32, flat
    history_offsets: np.ndarray  # int64 [I + 1]

    @classmethod
    def from_table(cls, table: pa.Table, history_len: int | None = None) -> DevImpressions:
        """From a DEV_SAMPLES (or BEHAVIORS) table; only the last ``history_len`` clicks are kept."""
        ids, cands, labels, offsets = flatten_impressions(table)
        h_vals, h_off = ragged_parts(table.column("history"))
        if history_len is not None:
            first = np.maximum(h_off[:-1], h_off[1:] - history_len)
            keep = np.arange(len(h_vals)) >= np.repeat(first, np.diff(h_off))
            h_vals = h_vals[keep]
            h_off = np.concatenate([[0], np.cumsum(h_off[1:] - first)])
        return cls(ids, cands, labels, offsets, h_vals.astype(np.int32, copy=False), h_off.astype(np.int64))

    @classmethod
    def read(cls, path: str | os.PathLike, history_len: int | None = None) -> DevImpressions:
        """Read data/samples/dev.parquet."""
        return cls.from_table(read_parquet(path, stage="split", schema=schemas.DEV_SAMPLES), history_len)

    def __len__(self) -> int:
        return len(self.impression_ids)

    def news_index(self) -> np.ndarray:
        """Every distinct news the impressions refer to (history and candidates), no padding."""
        every = np.unique(np.concatenate([self.history, self.candidates]).astype(np.int64))
        return every[every > 0]

    def impression(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(history, candidates, labels) of impression ``i``."""
        h = self.history[self.history_offsets[i] : self.history_offsets[i + 1]]
        s = slice(self.offsets[i], self.offsets[i + 1])
        return h, self.candidates[s], self.labels[s]


# --- scoring: the fast PLM-NR path and the generic one -----------------------------------


def attention_user_encoder(model) -> UserEncoder | None:
    """``model``'s user encoder when scoring may take the fast path (:class:`AttentionUsers`),
    else None (then :func:`score_impressions` takes the generic ``encode_user`` / ``score`` path).

    Decided by type, not by duck typing: ``model`` is a :class:`~tinynewsrec.models.plmnr.PLMNR`
    (or a subclass) that overrides neither ``encode_user`` nor ``score`` (so a user vector is
    ``user_encoder(history, mask)`` and a score is the dot product of
    :meth:`Recommender.score <tinynewsrec.recommender.Recommender.score>`), or a bare user
    encoder; and that user encoder is exactly :class:`~tinynewsrec.models.plmnr.UserEncoder`
    pooling with exactly :class:`~tinynewsrec.models.plmnr.AttentionPooling` over two exact
    ``nn.Linear`` layers. Anything else (a subclass that changes the pooling, a sequential
    recommender, a re-ranker) keeps the generic path."""
    if type(model) is UserEncoder:
        encoder = model
    elif (isinstance(model, PLMNR) and type(model).encode_user is Recommender.encode_user
          and type(model).score is Recommender.score):
        encoder = model.user_encoder
    else:
        return None
    if type(encoder) is not UserEncoder:
        return None
    pooling = encoder.pooling
    if type(pooling) is not AttentionPooling or type(pooling.proj) is not nn.Linear \
            or type(pooling.query) is not nn.Linear:
        return None
    return encoder


class AttentionUsers:
    """PLM-NR user vectors from a table of attention logits computed once per news.

    :class:`~tinynewsrec.models.plmnr.UserEncoder` pools the clicked news ``x_j`` with weights
    ``softmax_j(q(x_j))``, ``q(x) = w2^T tanh(W1 x + b1) + b2``: the logit depends on the news
    only, so it is computed once per news (``logits[n_slots]``, filled on demand by
    :meth:`ensure`: each news when it is first needed) instead of once per history slot of every
    impression. A user vector then costs a gather of logits, a masked softmax and a weighted sum of
    the news vectors (``F.embedding_bag`` over the real clicks only, so padding is never read).
    An empty history gives the encoder's learned ``empty_user`` vector, as the encoder does.

    The same function as ``user_encoder(news_vecs[history], mask)`` up to float32 rounding (the
    logits come out of a matrix product of another shape, the weighted sum adds in another
    order): on the MIND-dev-scale bench (``metrics/bench.json``, ``eval``) the scores differ by at
    most 1.5e-5 on scores up to 282 (one float32 ulp at 128-256), 56 of 13.9M candidates (in 28
    of 376k impressions) change rank between near-equal scores, and the metrics are equal at 6
    decimals (tie-averaged and the leaderboard's, from the ranks).

    The table belongs to these weights and these news vectors: build a new one after either
    changes. :meth:`ensure` may be called from several threads (the service): a lock guards the
    fill. Device-agnostic: everything lives on ``news_vecs``' device.
    """

    def __init__(self, user_encoder: UserEncoder, news_vecs: torch.Tensor, chunk: int = 32_768):
        self.user_encoder = user_encoder
        self.news_vecs = news_vecs
        self.chunk = chunk
        with torch.inference_mode():
            self.logits = torch.zeros(len(news_vecs), dtype=news_vecs.dtype, device=news_vecs.device)
            self.known = torch.zeros(len(news_vecs), dtype=torch.bool, device=news_vecs.device)
        self._lock = threading.Lock()

    @torch.inference_mode()
    def ensure(self, rows) -> None:
        """Compute the logits of the news ``rows`` (news_vecs rows; any shape, repeats allowed)
        that are not in the table yet."""
        rows = torch.as_tensor(rows, device=self.news_vecs.device).reshape(-1).long()
        with self._lock:
            wanted = torch.zeros_like(self.known)
            wanted[rows] = True
            missing = torch.nonzero(wanted & ~self.known).squeeze(1)
            pooling = self.user_encoder.pooling
            for lo in range(0, len(missing), self.chunk):
                part = missing[lo : lo + self.chunk]
                self.logits[part] = pooling.query(torch.tanh(pooling.proj(self.news_vecs[part]))).squeeze(-1)
            self.known[missing] = True

    @torch.inference_mode()
    def __call__(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """User vectors [B, D] of ``history`` [B, L] (rows of ``news_vecs``) where ``mask`` [B, L]
        is True (an all-False row: ``empty_user``); the logits are computed first where missing."""
        mask = mask.bool()
        self.ensure(history[mask])
        return self.pool(history, mask)

    @torch.inference_mode()
    def pool(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """:meth:`__call__` for histories whose logits are all in the table already."""
        mask = mask.bool()
        logits = self.logits[history].masked_fill(~mask, torch.finfo(self.logits.dtype).min)
        weights = torch.softmax(logits, dim=-1) * mask  # as AttentionPooling: padding weighs exactly 0
        lengths = mask.sum(dim=1)
        starts = torch.cumsum(lengths, dim=0) - lengths
        users = F.embedding_bag(history[mask], self.news_vecs, starts, mode="sum", per_sample_weights=weights[mask])
        empty = (lengths == 0).unsqueeze(1)
        return torch.where(empty, self.user_encoder.empty_user.to(users.dtype), users)


def _ragged_take(offsets: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of the rows ``order`` of a ragged array with ``offsets`` (concatenated in
    that order) and the offsets of the result."""
    lengths = np.diff(offsets)[order]
    new = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new[1:])
    return np.repeat(offsets[:-1][order] - new[:-1], lengths) + np.arange(new[-1], dtype=np.int64), new


def _score_fast(encoder: UserEncoder, news_vecs: torch.Tensor, dev: DevImpressions, rows: np.ndarray,
                batch_size: int, bar) -> torch.Tensor:
    """Flat scores of the impressions ``rows`` (contiguous, as :func:`_my_rows` gives them) by
    the fast path, in batches of ``batch_size`` impressions ordered by candidate count, then by
    history length; each batch's scores are written straight to its candidates' places in the
    original order.

    Why that order: the user vectors' weighted sums read the real clicks only (no history
    padding is ever gathered; the [B, L] logits are all that is padded, and the second key keeps
    that small), while equal candidate counts let :func:`_dot` score whole blocks of impressions
    against their user vectors without gathering a user row per candidate (20% less time for
    the dot products on this machine than a flat layout)."""
    device = news_vecs.device
    if len(rows) == 0:
        return torch.zeros(0, device=device)
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    if hi - lo != len(rows):
        raise ValueError("the fast path scores a contiguous range of impressions")
    h_offsets = dev.history_offsets[lo : hi + 1] - dev.history_offsets[lo]
    c_offsets = dev.offsets[lo : hi + 1] - dev.offsets[lo]
    order = np.lexsort((np.diff(h_offsets), np.diff(c_offsets)))  # candidate count, then history length
    h_src, h_off = _ragged_take(h_offsets, order)
    c_src, c_off = _ragged_take(c_offsets, order)
    history = dev.history[dev.history_offsets[lo] : dev.history_offsets[hi]][h_src]
    del h_src
    h_len, c_len = np.diff(h_off), np.diff(c_off)
    candidates = torch.from_numpy(dev.candidates[dev.offsets[lo] : dev.offsets[hi]][c_src].astype(np.int64))
    candidates = candidates.to(device)
    c_src = torch.from_numpy(c_src).to(device)  # sorted position -> original position
    users_of = AttentionUsers(encoder, news_vecs)
    users_of.ensure(torch.from_numpy(history[history > 0]).to(device))
    scores = torch.empty(len(candidates), dtype=news_vecs.dtype, device=device)
    for b0 in range(0, len(order), batch_size):
        b1 = min(b0 + batch_size, len(order))
        hist, mask = pad_ranges(history, h_off[b0:b1], h_len[b0:b1])
        mask &= hist > 0
        users = users_of.pool(torch.from_numpy(hist.astype(np.int64)).to(device), torch.from_numpy(mask).to(device))
        a, b = int(c_off[b0]), int(c_off[b1])
        scores[c_src[a:b]] = _dot(users, news_vecs, candidates[a:b], c_len[b0:b1])
        bar.update(b1 - b0)
    return scores.float()


#: candidates per dot-product step on a CPU: the gathered news rows (2 MB at 256 dims) stay in
#: the core's cache between the gather and the multiply-add, in a buffer allocated once per
#: batch (on this 2-core machine ~1,000-2,000 per step ran 7x faster than 65,536 freshly
#: allocated rows); other devices take as many as a batch has
CPU_DOT_CHUNK = 2048


def _dot(users: torch.Tensor, news_vecs: torch.Tensor, candidates: torch.Tensor, counts: np.ndarray) -> torch.Tensor:
    """<u_b, n_c> for the flat ``candidates`` of the users [B, D], ``counts[b]`` each, in order.

    Impressions with equal counts (consecutive, as :func:`_score_fast` orders them) are scored
    as blocks [k, C, D] * [k, 1, D] summed over D, so no user row is copied per candidate."""
    n, dim = len(candidates), users.shape[1]
    out = torch.empty(n, dtype=users.dtype, device=users.device)
    if n == 0:
        return out
    chunk = CPU_DOT_CHUNK if users.device.type == "cpu" else n
    buffer = torch.empty(max(chunk, int(counts.max())), dim, dtype=users.dtype, device=users.device)
    starts = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    edges = np.concatenate([[0], np.flatnonzero(np.diff(counts)) + 1, [len(counts)]])
    for r0, r1 in zip(edges[:-1].tolist(), edges[1:].tolist()):  # runs of equal counts
        size = int(counts[r0])
        if size == 0:
            continue
        step = max(1, chunk // size)
        for i0 in range(r0, r1, step):
            i1 = min(i0 + step, r1)
            a, b = int(starts[i0]), int(starts[i1])
            news = torch.index_select(news_vecs, 0, candidates[a:b], out=buffer[: b - a]).view(i1 - i0, size, dim)
            torch.sum(news.mul_(users[i0:i1].unsqueeze(1)), dim=-1, out=out[a:b].view(i1 - i0, size))
    return out


@torch.inference_mode()
def score_impressions(
    model,
    news_vecs: torch.Tensor,
    dev: DevImpressions,
    *,
    batch_size: int = 1024,
    progress: bool = True,
    state=None,
    fast: bool = True,
) -> np.ndarray:
    """Click scores of every candidate of every impression: a flat float32 array aligned with
    ``dev.candidates``. ``news_vecs`` [n_slots, D] by news_index (from :func:`encode_news`);
    each user vector is computed once per impression from its history's embeddings (padding
    masked; an empty history gives the model's cold-user vector).

    ``model``: a :class:`~tinynewsrec.recommender.Recommender`, or a bare user encoder (scored
    by dot product). When :func:`attention_user_encoder` accepts it (PLM-NR) and ``fast``, the
    fast path (:class:`AttentionUsers`: attention logits once per news, impressions in
    batches ordered by candidate count then history length, only real candidates scored);
    else the generic path: the model's ``encode_user`` and ``score`` on batches of ``batch_size`` impressions in
    dev order, padded to the batch's longest history and candidate list (every history slot
    through the pooling's projection). ``fast=False`` forces the generic path (the reference
    the fast one is tested and benchmarked against).
    """
    mine = _my_rows(len(dev), state)
    was_training = model.training
    model.eval()
    encoder = attention_user_encoder(model) if fast else None
    try:
        with tqdm(total=len(mine), desc="scoring impressions", unit="impression",
                  disable=not (progress and _is_main(state))) as bar:
            if encoder is not None:
                flat = _score_fast(encoder, news_vecs, dev, mine, batch_size, bar)
            else:
                flat = _score_generic(model, news_vecs, dev, mine, batch_size, bar)
    finally:
        model.train(was_training)
    return _gather_rows(flat, state).cpu().numpy()


def _score_generic(model, news_vecs: torch.Tensor, dev: DevImpressions, rows: np.ndarray, batch_size: int,
                   bar) -> torch.Tensor:
    """Flat scores of the impressions ``rows`` by ``encode_user`` and ``score`` (see
    :func:`score_impressions`)."""
    device = news_vecs.device
    if isinstance(model, Recommender):
        encode_user, score = model.encode_user, model.score
    else:  # a bare user encoder, dot-product scores
        encode_user, score = model, click_scores
    parts = []
    h_len = np.diff(dev.history_offsets)
    c_len = np.diff(dev.offsets)
    for lo in range(0, len(rows), batch_size):
        batch = rows[lo : lo + batch_size]
        hist, hist_mask = pad_ranges(dev.history, dev.history_offsets[batch], h_len[batch])
        cand, cand_mask = pad_ranges(dev.candidates, dev.offsets[batch], c_len[batch])
        hist_mask &= hist > 0
        hist_t = torch.from_numpy(hist.astype(np.int64)).to(device)
        cand_t = torch.from_numpy(cand.astype(np.int64)).to(device)
        users = encode_user(news_vecs[hist_t], torch.from_numpy(hist_mask).to(device))
        scores = score(users, news_vecs[cand_t])
        parts.append(scores[torch.from_numpy(cand_mask).to(device)].float())
        bar.update(len(batch))
    return torch.cat(parts) if parts else torch.zeros(0, device=device)


@dataclass
class Ranking:
    """What a row's scores give: ``ranks`` (prediction.txt's, flat, 1 = best), the averaged
    ``metrics`` ``{"auc", "mrr", "ndcg5", "ndcg10"}`` (0-1, rounded to 6 decimals) and the
    ``per_impression`` metric arrays (NaN for an impression without both a click and a
    non-click), all computed FROM THE RANKS, as the MIND leaderboard scores prediction.txt."""

    ranks: np.ndarray
    metrics: dict
    per_impression: dict


def rank_and_score(scores: np.ndarray, dev: DevImpressions, name: str = "", progress: bool = False) -> Ranking:
    """Rank each impression's candidates (equal scores: the earlier candidate ranks higher, see
    :mod:`tinynewsrec.metrics`) and compute the metrics the leaderboard computes from those
    ranks (its score is 1/rank), so metrics/eval.json and prediction.txt always agree; with tied
    scores this differs from tie-averaged AUC (e.g. the popularity ranker's integer counts)."""
    ranks = rank_lists(scores, dev.offsets, progress=False)
    result = evaluate_impressions(-ranks.astype(np.float64), dev.labels, dev.offsets, per_impression=True,
                                  progress=progress)
    row = {k: round(result[k], 6) for k in METRIC_NAMES}
    log.info("%s: AUC %.4f  MRR %.4f  nDCG@5 %.4f  nDCG@10 %.4f  (%s impressions)", name or "scores",
             row["auc"], row["mrr"], row["ndcg5"], row["ndcg10"], f"{result['impressions']:,}")
    return Ranking(ranks, row, result["per_impression"])


def metric_row(scores: np.ndarray, dev: DevImpressions, name: str = "", progress: bool = False) -> dict:
    """``{"auc", "mrr", "ndcg5", "ndcg10"}`` of flat ``scores`` as the leaderboard computes them
    from their prediction.txt ranks (:func:`rank_and_score`)."""
    return rank_and_score(scores, dev, name, progress).metrics


def evaluate_model(
    model: Recommender,
    dev: DevImpressions,
    lookup,
    *,
    n_slots: int | None = None,
    encode_batch: int = 128,
    batch_size: int = 1024,
    name: str = "model",
    progress: bool = True,
    state=None,
) -> tuple[torch.Tensor, np.ndarray]:
    """Encode the dev news once and score every dev impression with ``model`` (any
    :class:`~tinynewsrec.recommender.Recommender`).

    Returns ``(news_vecs [n_slots, D], flat scores)``; see :func:`rank_and_score` for metrics.
    """
    news = dev.news_index()
    log.info("encoding %s dev news with %s", f"{len(news):,}", name)
    vecs = encode_news(model, lookup, news, n_slots=n_slots, batch_size=encode_batch,
                       progress=progress, desc=f"encoding news ({name})", state=state)
    log.info("scoring %s dev impressions with %s", f"{len(dev):,}", name)
    scores = score_impressions(model, vecs, dev, batch_size=batch_size, progress=progress, state=state)
    return vecs, scores


def write_impression_metrics(path: str | os.PathLike, dev: DevImpressions, rows: dict[str, dict]) -> None:
    """data/eval/impressions.parquet: ``impression_id`` and, per row R, ``R/auc``, ``R/mrr``,
    ``R/ndcg5``, ``R/ndcg10`` (float64, NaN where the impression is not counted), for paired
    comparisons between rows (the results table's bootstrap intervals)."""
    from .io import write_parquet

    columns = {"impression_id": pa.array(dev.impression_ids.astype(np.int64))}
    for name, per in rows.items():
        columns.update({f"{name}/{k}": pa.array(np.asarray(per[k], dtype=np.float64)) for k in METRIC_NAMES})
    write_parquet(pa.table(columns), path)


# --- reference rankers ---------------------------------------------------------------------


def oracle_scores(oracle: pa.Table, dev: DevImpressions) -> np.ndarray:
    """The synthetic generator's true click probabilities (data/mind/dev/oracle.parquet:
    ``impression_id``, ``probs``) of every dev candidate, flat and aligned with
    ``dev.candidates`` (matched by impression id)."""
    ids = oracle.column("impression_id").to_numpy()
    if len(ids) == 0:
        raise DataError("oracle.parquet holds no impressions; rerun the download stage")
    order = np.argsort(ids, kind="stable")
    pos = np.minimum(np.searchsorted(ids[order], dev.impression_ids), len(ids) - 1)
    found = ids[order][pos] == dev.impression_ids
    if not np.all(found):
        missing = dev.impression_ids[~found][0]
        raise DataError(f"oracle.parquet has no probabilities for dev impression {missing}; rerun the download stage")
    probs, offs = ragged_parts(oracle.column("probs").take(pa.array(order[pos])))
    if not np.array_equal(np.diff(offs), np.diff(dev.offsets)):
        raise DataError("oracle.parquet and data/samples/dev.parquet disagree on candidate counts; "
                        "rerun the download and split stages")
    return probs.astype(np.float32)


#: how the log names the reference rows of eval.json
REFERENCE_LABELS = {"popularity": "popularity", "oracle": "oracle (the synthetic world's ceiling)"}


def reference_scores(mind_dir: str | os.PathLike, dev: DevImpressions, n_slots: int) -> dict[str, np.ndarray]:
    """Flat scores of the reference rankers on ``dev``: ``popularity`` (train clicks + dev
    history occurrences, from ``{mind_dir}/{train,dev}/behaviors.parquet``) and, when
    ``{mind_dir}/dev/oracle.parquet`` exists (synthetic data), ``oracle``."""
    from .popularity import popularity_scores

    mind_dir = Path(mind_dir)
    tables = {}
    for split in ("train", "dev"):
        tables[split] = read_parquet(mind_dir / split / "behaviors.parquet", stage="download", schema=schemas.BEHAVIORS)
    out = {"popularity": popularity_scores(tables["train"], tables["dev"], n_slots)[dev.candidates]}
    if (mind_dir / "dev" / "oracle.parquet").exists():
        out["oracle"] = oracle_scores(read_parquet(mind_dir / "dev" / "oracle.parquet", stage="download"), dev)
    return out


# --- prediction.txt -----------------------------------------------------------------------


def write_predictions(path: str | os.PathLike, dev: DevImpressions, scores: np.ndarray | None = None, *,
                      ranks: np.ndarray | None = None) -> None:
    """The MIND leaderboard's ``prediction.txt`` of ``scores`` (or of ``ranks`` already computed
    by :func:`rank_and_score`): one line per dev impression, in dev order,
    ``impression_id [rank,rank,...]`` (1 = highest score; equal scores: earlier candidate first)."""
    if ranks is None:
        ranks = rank_lists(scores, dev.offsets, progress=False)
    write_prediction_file(path, dev.impression_ids, ranks, dev.offsets)


# --- teacher embeddings -------------------------------------------------------------------


def export_teacher_embeddings(
    teacher: PLMNR,
    post_trained: PLMNR,
    tokens: pa.Table,
    *,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 128,
    names: tuple[str, str] = ("the teacher", "the post-trained checkpoint"),
    progress: bool = True,
    state=None,
) -> dict[str, torch.Tensor]:
    """Teacher i's embeddings for distillation, every news of ``tokens`` (data/tokens/news.parquet):

    - ``news``: ``teacher``'s news encoder on the titles (stage 2 matches these);
    - ``title`` / ``body``: ``post_trained``'s (step_i's) news encoder on the titles / bodies
      (stage 1 matches these).

    Each is float32 [max news_index + 1, news_dim] on the CPU, row 0 zeros. Also the
    teacher's user encoder weights as ``user_encoder.<name>`` (stage 2 needs nothing else of
    the teacher). ``cache_dir``: the folder holding the ``title`` and ``body`` frozen-layer
    caches (None: token ids).
    """
    news_index = tokens.column("news_index").to_numpy().astype(np.int64)
    n_slots = int(news_index.max()) + 1 if len(news_index) else 1
    cache = Path(cache_dir) if cache_dir is not None else None
    jobs = (
        ("news", teacher, "title_ids", "title", names[0], "titles"),
        ("title", post_trained, "title_ids", "title", names[1], "titles"),
        ("body", post_trained, "body_ids", "body", names[1], "bodies"),
    )
    out = {}
    for key, model, column, cache_name, name, what in jobs:
        lookup = news_lookup(model.plm, tokens, column, cache / cache_name if cache else None, name)
        log.info("encoding %s news %s with %s", f"{len(news_index):,}", what, name)
        out[key] = encode_news(model.news_encoder, lookup, news_index, n_slots=n_slots, batch_size=batch_size,
                               progress=progress, desc=f"{what} ({name})", state=state).cpu().contiguous()
    out.update({f"{USER_ENCODER_PREFIX}{k}": v.detach().cpu().contiguous()
                for k, v in teacher.user_encoder.state_dict().items()})
    return out
