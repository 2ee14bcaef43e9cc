"""What a recommender costs to deploy: parameters, size on disk, news encoding throughput,
user-scoring latency (DESIGN "Evaluation", efficiency).

Tiny-NewsRec's point is that a distilled student keeps the teachers' accuracy at a fraction
of their cost, so the costs are measured the same way for every model, in one process, one
after the other, so that their ratios mean something:

- **parameters**: all weights of the recommender (PLM with its embeddings, attention
  pooling, dense layer, user encoder) and those of its news encoder alone;
- **size on disk**: the model folder as saved (``plm/``, ``heads.safetensors``,
  ``config.json``), in MB of 2**20 bytes;
- **news encoding throughput** (news/s): the news encoder run on the SAME news, in
  batches of the SAME size (``eval.bench_batch``), every batch padded to the SAME fixed
  length (``plm.title_len``), from token ids through the WHOLE PLM: a deployed encoder
  has no frozen-layer cache for a news it has never seen. Batches are built before the
  clock starts; one batch warms up before each timed pass;
- **user-scoring latency** (ms per impression): given the news embeddings (computed
  offline, as in serving), the time to compute one impression's user vector from its
  history and the dot-product scores of its candidates, one impression per call (a
  request), averaged over the first :data:`BENCH_IMPRESSIONS` dev impressions.

:func:`measure_models` times the models round-robin (every round times each model once)
and keeps each model's best round, as ``timeit`` keeps the best repeat: other work on the
machine only ever slows a pass down, and a slow phase of the machine hits every model
alike instead of whichever model happened to be measured then.

Timing claims about the code itself (e.g. evaluation speed at MIND-large scale) live in
``benchmarks/``, which can reuse these functions.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .models.cache import gather_padded

#: dev impressions whose user-scoring time is averaged (the first ones of data/samples/dev.parquet)
BENCH_IMPRESSIONS = 200
#: timed passes; the best is reported
REPEATS = 3


def count_parameters(module: nn.Module) -> int:
    """Number of weights of ``module`` (trainable or not; shared tensors counted once)."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


def folder_size_mb(folder: str | os.PathLike) -> float:
    """Total size of the files under ``folder`` in MB (2**20 bytes)."""
    folder = Path(folder)
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def bench_batches(tokens, news_index, num_news: int, batch_size: int, pad_len: int) -> list[dict]:
    """Fixed-length token batches for the throughput measurement.

    ``tokens``: a :class:`~tinynewsrec.models.plmnr.NewsTokens` (title token ids by news_index).
    The first ``num_news`` of ``news_index`` (cycled if there are fewer) in batches of
    ``batch_size``; every batch is exactly ``pad_len`` tokens wide (titles are already cut to
    ``plm.title_len`` by the split stage; a longer one would be cut here). Build them once and
    pass the same list to :func:`news_throughput` for every model.
    """
    news_index = np.asarray(news_index, dtype=np.int64)
    if len(news_index) == 0:
        raise ValueError("bench_batches needs at least one news")
    chosen = news_index[np.arange(num_news) % len(news_index)]
    batches = []
    for lo in range(0, num_news, batch_size):
        rows = chosen[lo : lo + batch_size]
        ids, mask = gather_padded(tokens.values, tokens.offsets, rows, max_len=pad_len)
        fixed_ids = np.zeros((len(rows), pad_len), dtype=np.int64)
        fixed_mask = np.zeros((len(rows), pad_len), dtype=np.int64)
        fixed_ids[:, : ids.shape[1]] = ids
        fixed_mask[:, : mask.shape[1]] = mask
        batches.append({"input_ids": torch.from_numpy(fixed_ids), "attention_mask": torch.from_numpy(fixed_mask)})
    return batches


@torch.inference_mode()
def news_throughput(news_encoder: nn.Module, batches: list[dict], repeats: int = REPEATS) -> float:
    """News per second of ``news_encoder`` over ``batches`` (token ids, the whole PLM)."""
    device = next(news_encoder.parameters()).device
    was_training = news_encoder.training
    news_encoder.eval()
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
    n = sum(len(b["input_ids"]) for b in batches)
    try:
        best = float("inf")
        for _ in range(repeats):
            news_encoder(batches[0])  # warm-up (allocations, kernel selection, caches)
            _sync(device)
            start = time.perf_counter()
            for b in batches:
                news_encoder(b)
            _sync(device)
            best = min(best, time.perf_counter() - start)
    finally:
        news_encoder.train(was_training)
    return n / best


@torch.inference_mode()
def user_latency_ms(
    user_encoder: nn.Module,
    news_vecs: torch.Tensor,
    history: list[np.ndarray],
    candidates: list[np.ndarray],
    repeats: int = REPEATS,
) -> float:
    """Milliseconds per impression to compute its user vector and candidate scores.

    ``news_vecs`` [n_slots, D]: news embeddings by news_index (precomputed). ``history[i]`` /
    ``candidates[i]``: news indices of impression i. One impression per call.
    """
    if not history:
        raise ValueError("user_latency_ms needs at least one impression")
    device = news_vecs.device
    was_training = user_encoder.training
    user_encoder.eval()
    requests = []
    for h, c in zip(history, candidates):
        h = np.asarray(h, dtype=np.int64)
        mask = h > 0
        if not mask.any():  # a cold user: one masked slot, the user encoder gives its empty-history vector
            h, mask = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=bool)
        requests.append((
            torch.from_numpy(h).reshape(1, -1).to(device),
            torch.from_numpy(mask).reshape(1, -1).to(device),
            torch.from_numpy(np.asarray(c, dtype=np.int64)).to(device),
        ))

    def one(h, mask, c):
        user = user_encoder(news_vecs[h], mask)  # [1, D]
        return news_vecs[c] @ user[0]  # [C]

    try:
        best = float("inf")
        for _ in range(repeats):
            one(*requests[0])  # warm-up
            _sync(device)
            start = time.perf_counter()
            for r in requests:
                one(*r)
            _sync(device)
            best = min(best, time.perf_counter() - start)
    finally:
        user_encoder.train(was_training)
    return 1000.0 * best / len(requests)


def latency_inputs(history: list, candidates: list) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Compact the bench impressions' news: ``(news_index, history, candidates)`` where
    ``news_index`` [K] are the distinct news they refer to and the returned lists index a
    table whose row 0 is padding and row ``k + 1`` is ``news_index[k]``. Take
    ``vecs[news_index]`` of each model (:func:`compact_table`) instead of keeping whole tables."""
    every = np.concatenate([np.asarray(x, dtype=np.int64) for x in (*history, *candidates)] or [np.zeros(0, np.int64)])
    news_index = np.unique(every[every > 0])

    def local(ids):
        ids = np.asarray(ids, dtype=np.int64)
        return np.where(ids > 0, np.searchsorted(news_index, ids) + 1, 0)

    return news_index, [local(h) for h in history], [local(c) for c in candidates]


def compact_table(news_vecs: torch.Tensor, news_index: np.ndarray) -> torch.Tensor:
    """Rows ``news_index`` of ``news_vecs`` after a zero padding row (see :func:`latency_inputs`)."""
    rows = news_vecs[torch.from_numpy(news_index).to(news_vecs.device)]
    return torch.cat([torch.zeros_like(rows[:1]), rows]) if len(rows) else torch.zeros(1, news_vecs.shape[1])


def static_costs(model: nn.Module, folder: str | os.PathLike) -> dict:
    """What needs no clock: ``params``, ``news_encoder_params``, ``size_mb``."""
    return {
        "params": count_parameters(model),
        "news_encoder_params": count_parameters(model.news_encoder),
        "size_mb": round(folder_size_mb(folder), 3),
    }


def measure_models(
    models: dict[str, tuple[nn.Module, str | os.PathLike, torch.Tensor]],
    batches: list[dict],
    history: list[np.ndarray],
    candidates: list[np.ndarray],
    rounds: int = REPEATS,
    progress: bool = True,
) -> dict[str, dict]:
    """Efficiency rows ``{name: {params, news_encoder_params, size_mb, news_per_s,
    user_latency_ms}}`` of PLM-NR models, timed round-robin (module docstring).

    ``models[name] = (model, folder it was loaded from, news embeddings)``: the embeddings
    are indexed like ``history`` / ``candidates`` (whole tables, or :func:`compact_table`
    with :func:`latency_inputs`). ``batches``: :func:`bench_batches`, the same for all.
    """
    from tqdm.auto import tqdm

    rows = {name: static_costs(model, folder) for name, (model, folder, _) in models.items()}
    speed = dict.fromkeys(models, 0.0)
    latency = dict.fromkeys(models, float("inf"))
    with tqdm(total=rounds * len(models), desc="measuring efficiency", unit="model", disable=not progress) as bar:
        for _ in range(rounds):
            for name, (model, _, vecs) in models.items():
                speed[name] = max(speed[name], news_throughput(model.news_encoder, batches, repeats=1))
                latency[name] = min(latency[name], user_latency_ms(model.user_encoder, vecs, history, candidates, 1))
                bar.update(1)
    for name, row in rows.items():
        row["news_per_s"] = round(speed[name], 2)
        row["user_latency_ms"] = round(latency[name], 4)
    return rows


def measure_model(
    model: nn.Module,
    folder: str | os.PathLike,
    batches: list[dict],
    news_vecs: torch.Tensor,
    history: list[np.ndarray],
    candidates: list[np.ndarray],
    repeats: int = REPEATS,
) -> dict:
    """The efficiency row of one PLM-NR ``model`` (saved in ``folder``), best of ``repeats``."""
    return measure_models({"model": (model, folder, news_vecs)}, batches, history, candidates, repeats, False)["model"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
