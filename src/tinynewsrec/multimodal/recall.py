"""Embedding recall: the top-k news of the split's whole pool for every dev impression.

An industrial recommender never scores every news with its strong model: a cheap recall stage picks
a few hundred candidates out of the whole pool, and a re-ranker orders them. DL_News_Rec's recaller
is the mean of the user's history vectors, cosine top-k over all news; this module is that recaller,
built so that its numbers can be trusted, plus the text model's own user encoder as a second user
vector. The recall stage (stages/recall.py) runs it over data/samples/dev.parquet.

Decisions:

- **The pool** is every news of the split (data/mind/dev/news.parquet: the history and candidates
  of the dev impressions) that has a text vector (``present`` in data/mm/text.safetensors), sorted
  by ``news_index``.
- **User vectors.** ``mean``: the mean of the L2-normalised text vectors of the impression's kept
  history (the last ``multimodal.history_len`` clicks; padding and news without a vector left
  out), normalised again; scores are cosines against the L2-normalised pool. ``student``: the text
  model's user encoder over the raw history vectors ([B, L, D], right-padded, ``mask`` True on a
  click with a vector), scored by the dot product, as that model scores (the model must keep
  :meth:`Recommender.score <tinynewsrec.models.base.Recommender.score>`, the dot product).
- **Cold users** (no history news with a vector) have no history to average. ``mean`` ranks the pool
  for them by the pool's centroid (the normalised mean of the normalised pool vectors: the most
  "typical" news first; no popularity, no labels); ``student`` uses the model's own answer for an
  empty history (its learned empty-user vector). Either way they are counted (``cold_users``).
- **History masking** (``recall.mask_history``): a user's own clicked news (the whole history of
  dev.parquet, not only the kept part) get -inf before the top-k, so they are never recalled.
- **Exact top-k** (``recall.backend: exact``): ``recall.batch`` users at a time, one matrix product
  [batch, pool] and ``torch.topk``; memory is bounded by batch x pool x 4 bytes (1,024 x 160,000 =
  655 MB at MIND-large scale), never [users x pool]. **Tie order** is deterministic: by score
  descending, then by ``news_index`` ascending (top-k takes k + 1: a row whose k-th and (k+1)-th
  scores are equal is redone with a stable full sort, so the lower news_index wins at the cut).
- **FAISS** (``recall.backend: faiss``): an exact inner-product index (``faiss.IndexFlatIP``) over
  the same (normalised for ``mean``) pool; each batch searches k + (the most pool news any user of
  the batch has masked) + 1 and drops the masked hits afterwards, then applies the same tie order.
  A row whose k-th kept score ties the extra last hit (equal scores may lie beyond what FAISS
  returned) is redone exactly; FAISS itself keeps the lower ids on ties, so this is a guard. The
  result equals the exact backend's up to float rounding of near-equal inner products (FAISS and
  torch add in another order; at MIND-large scale every candidate slot got the same rank,
  metrics/bench_recall.json). Without faiss installed, a one-line ParamError says
  ``pip install faiss-cpu``.
- **Per candidate slot** (aligned with ``DevImpressions.candidates``): ``recall_rank`` (int32, the
  candidate's 1-based rank in its user's top-max(ks) list, 0 when not recalled within it) and
  ``recall_score`` (float32, the candidate's cosine / dot product with its user vector, recalled or
  not). A candidate without a vector (none, when encode_text covered every news) gets a finite
  score below every other (the lowest score minus 1), because the evaluator refuses non-finite
  scores.
- **Metrics**, for each k of ``recall.ks``: ``recall`` = mean over impressions with at least one
  click of (clicked candidates recalled within k) / (clicked candidates); ``clicks`` = share of
  all clicks recalled (micro); ``candidates`` = share of all candidate slots recalled.
- **End to end** (:func:`end_to_end_scores`): candidates recalled within ``recall.rerank_k`` are
  ordered by the re-ranker, the others after them by their recall score.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import DataError, ParamError

log = logging.getLogger("tinynewsrec")

#: data/recall/slots.parquet: one row per dev candidate slot, in dev.parquet's order
RECALL_SLOTS = pa.schema(
    [
        pa.field("impression_id", pa.int64(), nullable=False),
        pa.field("news_index", pa.int32(), nullable=False),
        pa.field("recall_rank", pa.int32(), nullable=False),  # 1-based within max(ks); 0 = not recalled
        pa.field("recall_score", pa.float32(), nullable=False),
    ]
)


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def import_faiss():
    """The faiss module, or a one-line ParamError naming recall.backend."""
    try:
        import faiss
    except ImportError:
        raise ParamError("recall.backend is faiss but faiss is not installed: `pip install faiss-cpu` "
                         "(or set recall.backend: exact, which gives the same result)") from None
    return faiss


def pool_news(news_index: np.ndarray, present: np.ndarray | torch.Tensor) -> np.ndarray:
    """The pool: the distinct ``news_index`` (no padding) whose vector is ``present``, ascending (int64)."""
    present = np.asarray(present, dtype=bool)
    news = np.unique(np.asarray(news_index, dtype=np.int64))
    news = news[news > 0]
    if len(news) and news[-1] >= len(present):
        raise DataError(f"news_index {news[-1]:,} is beyond the text table's {len(present):,} rows: the table is "
                        "stale; rerun the encode_text stage")
    return news[present[news]]


# --- user vectors ----------------------------------------------------------------------------


class MeanUsers:
    """``mean`` user vectors: the normalised mean of the normalised history vectors (module docstring)."""

    name = "mean"

    def __init__(self, vectors: torch.Tensor, present: torch.Tensor, pool: np.ndarray):
        self.table = F.normalize(vectors.float(), dim=1)  # what candidates and the pool are scored with
        self.present = torch.as_tensor(present).bool()
        pool_vecs = self.table[torch.as_tensor(pool)]
        centroid = pool_vecs.mean(dim=0) if len(pool) else torch.zeros(vectors.shape[1])
        self.cold_vector = F.normalize(centroid, dim=0)

    def __call__(self, history: torch.Tensor, rows: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """User vectors [n, D] and the cold mask [n] from the flat kept ``history`` of ``n`` users
        (``rows``: each history news' user, 0..n-1)."""
        keep = self.present[history]
        history, rows = history[keep], rows[keep]
        counts = torch.bincount(rows, minlength=n)  # rows ascend: each user's clicks are contiguous
        sums = F.embedding_bag(history, self.table, torch.cumsum(counts, 0) - counts, mode="sum")
        cold = counts == 0
        users = F.normalize(sums, dim=1)
        users[cold] = self.cold_vector
        return users, cold


class StudentUsers:
    """``student`` user vectors: the text model's ``encode_user`` over the raw history vectors."""

    name = "student"

    def __init__(self, model, vectors: torch.Tensor, present: torch.Tensor):
        from ..models.base import Recommender

        if type(model).score is not Recommender.score:
            raise ParamError(f"recall.user is student but the text model ({type(model).__name__}) does not score by "
                             "the dot product, which recall over the whole pool needs; use recall.user: mean")
        self.model = model.eval()
        self.table = vectors.float()
        self.present = torch.as_tensor(present).bool()

    @torch.inference_mode()
    def __call__(self, history: torch.Tensor, rows: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        keep = self.present[history]
        history, rows = history[keep], rows[keep]
        counts = torch.bincount(rows, minlength=n)
        width = max(int(counts.max()) if n else 0, 1)
        starts = torch.cumsum(counts, 0) - counts
        cols = torch.arange(len(rows)) - starts[rows]  # right-padded, oldest first as in dev.parquet
        padded = torch.zeros(n, width, self.table.shape[1])
        mask = torch.zeros(n, width, dtype=torch.bool)
        padded[rows, cols] = self.table[history]
        mask[rows, cols] = True
        return self.model.encode_user(padded, mask).float(), counts == 0


# --- top-k -------------------------------------------------------------------------------------


def _tie_order(cols: torch.Tensor, vals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of (pool column, score) reordered by score descending, then column ascending."""
    cols, order = cols.sort(dim=1)
    vals = vals.gather(1, order)
    vals, order = vals.sort(dim=1, descending=True, stable=True)
    return cols.gather(1, order), vals


def _finish(cols: torch.Tensor, vals: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked (-inf) hits become column -1; rows padded with -1 / -inf to k columns."""
    cols = cols.masked_fill(torch.isneginf(vals), -1)
    if cols.shape[1] < k:
        pad = k - cols.shape[1]
        cols = F.pad(cols, (0, pad), value=-1)
        vals = F.pad(vals, (0, pad), value=float("-inf"))
    return cols, vals


def exact_top_k(users: torch.Tensor, pool: torch.Tensor, k: int,
                masked: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` pool columns [b, k] (int64; -1 where fewer than k news are left) and their
    scores [b, k] of ``users`` [b, D] against ``pool`` [N, D] by inner product; ``masked`` = (rows,
    cols) get -inf first (never recalled). Ties: score descending, then column ascending."""
    scores = users @ pool.T
    if masked is not None:
        scores[masked[0], masked[1]] = float("-inf")
    kk = min(k, pool.shape[0])
    if kk < pool.shape[0]:  # one more than needed: equal k-th and (k+1)-th scores = a tie across the cut
        vals, cols = scores.topk(kk + 1, dim=1)
        tied = torch.nonzero((vals[:, kk - 1] == vals[:, kk]) & torch.isfinite(vals[:, kk])).squeeze(1) if kk else []
        vals, cols = vals[:, :kk].clone(), cols[:, :kk].clone()
        for r in tied.tolist():  # the lower news_index wins: a stable sort of the row
            cols[r] = torch.sort(scores[r], descending=True, stable=True).indices[:kk]
            vals[r] = scores[r, cols[r]]
    else:
        vals, cols = scores.topk(kk, dim=1)
    return _finish(*_tie_order(cols, vals), k)


class FaissSearch:
    """An exact inner-product FAISS index (``IndexFlatIP``) over ``pool``, searched like :func:`exact_top_k`."""

    def __init__(self, pool: torch.Tensor):
        faiss = import_faiss()
        self.pool = pool
        self.index = faiss.IndexFlatIP(pool.shape[1])
        if pool.shape[0]:
            self.index.add(np.ascontiguousarray(pool.numpy(), dtype=np.float32))

    def __call__(self, users: torch.Tensor, k: int, masked: tuple[torch.Tensor, torch.Tensor] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        n_pool, b = self.pool.shape[0], users.shape[0]
        extra = int(torch.bincount(masked[0], minlength=b).max()) if masked is not None and len(masked[0]) else 0
        want = min(k + extra + 1, n_pool)  # one more than needed: it shows whether a tie crosses the cut
        if want == 0:
            return _finish(torch.zeros(b, 0, dtype=torch.int64), torch.zeros(b, 0), k)
        dist, labels = self.index.search(np.ascontiguousarray(users.numpy(), dtype=np.float32), want)
        vals, cols = torch.from_numpy(dist), torch.from_numpy(labels).long()
        if extra:
            keys = masked[0] * n_pool + masked[1]
            hit = torch.isin(torch.arange(b).unsqueeze(1) * n_pool + cols, keys)
            vals = vals.masked_fill(hit, float("-inf"))
        cols, vals = _tie_order(cols, vals)
        kk = min(k, n_pool)
        cols, vals = cols[:, :kk].clone(), vals[:, :kk].clone()
        if want < n_pool and kk:
            # the k-th kept score equals the lowest FAISS returned: news of that score may lie beyond
            # the cut, so the lower news_index is not guaranteed; redo those rows exactly
            lowest = torch.from_numpy(dist[:, -1])
            tied = torch.nonzero(torch.isfinite(vals[:, -1]) & (vals[:, -1] <= lowest)).squeeze(1)
            if len(tied):
                sub = None
                if masked is not None:
                    sel = torch.isin(masked[0], tied)
                    remap = torch.full((b,), -1, dtype=torch.int64)
                    remap[tied] = torch.arange(len(tied))
                    sub = (remap[masked[0][sel]], masked[1][sel])
                c, v = exact_top_k(users[tied], self.pool, kk, sub)
                cols[tied], vals[tied] = c[:, :kk], v[:, :kk]
        return _finish(cols, vals, k)


# --- recall over the dev impressions ------------------------------------------------------------------


@dataclass
class RecallOutput:
    ranks: np.ndarray  # int32 per candidate slot: 1-based rank within k, 0 = not recalled
    scores: np.ndarray  # float32 per candidate slot
    users: int
    cold_users: int
    pool: int
    k: int
    seconds: float


def _ragged(values: np.ndarray, offsets: np.ndarray, lo: int, hi: int, last: int | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat values of rows lo..hi-1 (the ``last`` of each row when given) and their row (0-based)."""
    starts, ends = offsets[lo:hi], offsets[lo + 1 : hi + 1]
    if last is not None:
        starts = np.maximum(starts, ends - last)
    counts = ends - starts
    rows = np.repeat(np.arange(hi - lo), counts)
    pos = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(starts, counts)
    return torch.from_numpy(values[pos].astype(np.int64)), torch.from_numpy(rows)


def _ranks_in(top: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, n_pool: int) -> torch.Tensor:
    """1-based position of pool column ``cols[i]`` in the list ``top[rows[i]]`` (0 when absent or -1),
    by one sorted key per listed (row, column) and a binary search per query."""
    b, k = top.shape
    keys = (torch.arange(b).unsqueeze(1) * (n_pool + 1) + top + 1).reshape(-1)  # -1 (none) -> row * (n + 1)
    keys, order = keys.sort()
    query = rows * (n_pool + 1) + cols + 1
    at = torch.searchsorted(keys, query).clamp(max=max(len(keys) - 1, 0))
    found = (keys[at] == query) & (cols >= 0) if len(keys) else torch.zeros_like(query, dtype=torch.bool)
    return torch.where(found, order[at] % k + 1, 0) if len(keys) else torch.zeros_like(query)


def recall_impressions(vectors: torch.Tensor, present: torch.Tensor, pool: np.ndarray, dev, *, user: str = "mean",
                       model=None, k: int = 200, batch: int = 1024, history_len: int | None = None,
                       mask_history: bool = True, backend: str = "exact", progress: bool = True) -> RecallOutput:
    """Recall the top ``k`` of ``pool`` (news_index, ascending) for every impression of ``dev`` (a
    :class:`~tinynewsrec.evaluate.DevImpressions` holding the whole history: what is masked), with
    user vectors from the last ``history_len`` clicks; ``model`` (a Recommender) when ``user`` is
    ``student``. Returns every candidate slot's rank and score (module docstring)."""
    t0 = time.perf_counter()
    if backend not in ("exact", "faiss"):
        raise ParamError(f"recall.backend must be exact or faiss, got {backend!r}")
    vectors = torch.as_tensor(vectors).float()
    present = torch.as_tensor(present).bool()
    top_news = max((int(a.max()) for a in (dev.history, dev.candidates) if len(a)), default=0)
    if top_news >= len(present):
        raise DataError(f"the dev impressions refer to news_index {top_news:,}, beyond the text table's "
                        f"{len(present):,} rows: the table is stale; rerun the encode_text stage")
    if user == "mean":
        users_of = MeanUsers(vectors, present, pool)
    elif user == "student":
        if model is None:
            raise ParamError("recall.user is student: the text model is needed (multimodal.text_model)")
        users_of = StudentUsers(model, vectors, present)
    else:
        raise ParamError(f"recall.user must be mean or student, got {user!r}")
    table = users_of.table
    pool_t = torch.as_tensor(pool, dtype=torch.int64)
    pool_vecs = table[pool_t].contiguous()
    search = FaissSearch(pool_vecs) if backend == "faiss" else None
    column = torch.full((len(present),), -1, dtype=torch.int64)  # news_index -> pool column
    column[pool_t] = torch.arange(len(pool))
    n = len(dev)
    ranks = np.zeros(len(dev.candidates), np.int32)
    scores = np.zeros(len(dev.candidates), np.float32)
    cold_users = 0
    bar = tqdm(total=n, desc=f"recalling top {k}", unit="impression", disable=not progress)
    with torch.inference_mode(), bar:
        for lo in range(0, n, batch):
            hi = min(lo + batch, n)
            kept, kept_rows = _ragged(dev.history, dev.history_offsets, lo, hi, history_len)
            users, cold = users_of(kept, kept_rows, hi - lo)
            cold_users += int(cold.sum())
            masked = None
            if mask_history:
                seen, seen_rows = _ragged(dev.history, dev.history_offsets, lo, hi)
                cols = column[seen]
                masked = (seen_rows[cols >= 0], cols[cols >= 0])
            if search is None:
                top, _ = exact_top_k(users, pool_vecs, k, masked)
            else:
                top, _ = search(users, k, masked)
            cand, cand_rows = _ragged(dev.candidates, dev.offsets, lo, hi)
            cand_cols = column[cand]
            rank = _ranks_in(top, cand_rows, cand_cols, len(pool))
            score = (users[cand_rows] * table[cand]).sum(dim=1)
            score = score.masked_fill(~present[cand], float("nan"))
            span = slice(int(dev.offsets[lo]), int(dev.offsets[hi]))
            ranks[span] = rank.numpy()
            scores[span] = score.numpy()
            bar.update(hi - lo)
    missing = np.isnan(scores)
    if missing.any():  # a candidate without a vector: below every other, finite (the evaluator refuses inf)
        scores[missing] = (scores[~missing].min() if (~missing).any() else 0.0) - 1.0
    return RecallOutput(ranks, scores, n, cold_users, len(pool), k, time.perf_counter() - t0)


# --- metrics and the slot table -------------------------------------------------------------------------


def recall_metrics(labels: np.ndarray, offsets: np.ndarray, ranks: np.ndarray, ks: list[int]) -> dict:
    """``{"recall": {str(k): {"recall", "clicks", "candidates"}}, "impressions_with_click", "clicks",
    "candidates"}`` from the candidate slots' ``ranks`` (1-based, 0 = not recalled; module docstring)."""
    labels = np.asarray(labels) > 0
    ranks = np.asarray(ranks)
    imp = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    clicks = np.bincount(imp[labels], minlength=len(offsets) - 1)
    with_click = clicks > 0
    out = {"recall": {}, "impressions_with_click": int(with_click.sum()), "clicks": int(labels.sum()),
           "candidates": int(len(ranks))}
    for k in ks:
        hit = (ranks >= 1) & (ranks <= k)
        found = np.bincount(imp[hit & labels], minlength=len(offsets) - 1)
        out["recall"][str(k)] = {
            "recall": float(np.mean(found[with_click] / clicks[with_click])) if with_click.any() else None,
            "clicks": float(found.sum() / labels.sum()) if labels.any() else None,
            "candidates": float(hit.mean()) if len(hit) else None,
        }
    return out


def slots_table(dev, out: RecallOutput) -> pa.Table:
    """data/recall/slots.parquet (:data:`RECALL_SLOTS`), aligned with ``dev.candidates``."""
    return pa.table({
        "impression_id": pa.array(np.repeat(dev.impression_ids, np.diff(dev.offsets)), pa.int64()),
        "news_index": pa.array(dev.candidates, pa.int32()),
        "recall_rank": pa.array(out.ranks, pa.int32()),
        "recall_score": pa.array(out.scores, pa.float32()),
    }, schema=RECALL_SLOTS)


def end_to_end_scores(rerank_scores: np.ndarray, recall_rank: np.ndarray, recall_score: np.ndarray, k: int
                      ) -> np.ndarray:
    """Flat scores whose order within every impression is: the candidates recalled within ``k``
    (1 <= recall_rank <= k) by ``rerank_scores`` descending, then all the others by
    ``recall_score`` descending.

    No impression offsets are needed: each group's scores are replaced by their dense rank over
    the whole array (an order-preserving map, so equal scores stay equal and the evaluator's tie
    handling is unchanged), and recalled candidates are lifted above every other by the number of
    distinct values of the rest. Float64 (exact for any realistic number of candidates)."""
    rerank_scores, recall_score = np.asarray(rerank_scores, np.float64), np.asarray(recall_score, np.float64)
    recall_rank = np.asarray(recall_rank)
    if not (rerank_scores.shape == recall_rank.shape == recall_score.shape) or rerank_scores.ndim != 1:
        raise ValueError(f"end_to_end_scores needs three flat arrays of one length, got {rerank_scores.shape}, "
                         f"{recall_rank.shape}, {recall_score.shape}")
    recalled = (recall_rank >= 1) & (recall_rank <= k)
    out = np.empty(len(recall_rank), np.float64)
    _, rest = np.unique(recall_score[~recalled], return_inverse=True)
    _, top = np.unique(rerank_scores[recalled], return_inverse=True)
    out[~recalled] = rest
    out[recalled] = top + (rest.max() + 1 if len(rest) else 0)
    return out
