"""PLM-NR (Wu et al. 2021): a pre-trained language model as the news encoder of a recommender.

- news encoder: PLM over the title tokens -> attention pooling over the token states
  (padding masked; not the [CLS] vector) -> dense to ``news_dim``;
- user encoder: attention pooling over the embeddings of the user's last clicked news
  (history padding masked);
- click score: dot product of user and candidate news embeddings; loss: cross-entropy
  over 1 clicked + K non-clicked candidates of one impression (target index 0, since
  ``candidates[0]`` is the click in data/samples/train.parquet).

Unique-news batching: a batch holds the DISTINCT news of all its histories and candidates
once (``news_tokens``, padded to the longest title of the batch) and ``history`` /
``candidates`` as indices into them, so each distinct news is encoded once per step and
then gathered. With a frozen-layer cache (:mod:`.cache`) the batch holds the cached token
states instead (``news_states``) and only the PLM's trainable top layers run.

Batch layout (what :func:`collate_train` builds)::

    news_index     long [U]          global news_index of the distinct news
    news_tokens    {"input_ids": long [U, T], "attention_mask": long [U, T]}
      or news_states {"hidden_states": float [U, T, H], "attention_mask": long [U, T], "start_layer": int}
    history        long [B, Lh]      indices into the U news (padding: any index, masked)
    history_mask   bool [B, Lh]      True = a clicked news
    candidates     long [B, C]       indices into the U news; column 0 = the click in training
    candidate_mask bool [B, C]       True = a real candidate (all True for train samples)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError
from .base import Recommender
from .buckets import MAX_BUCKETS, bucketed, length_buckets
from .cache import gather_padded, pad_ranges, ragged_parts
from .plm import KeepFrozenInEval, frozen_bottom, load_plm, num_frozen_layers, quiet_transformers, run_layers


@dataclass
class PLMNRConfig:
    news_dim: int = 256  # size of a news (and user) embedding
    news_query_dim: int = 200  # hidden size of the news encoder's attention pooling
    user_query_dim: int = 200  # hidden size of the user encoder's attention pooling


class AttentionPooling(nn.Module):
    """Additive attention: a_i = softmax_i(w2^T tanh(W1 h_i + b1) + b2) over unmasked i;
    output sum_i a_i h_i. Masked positions get weight exactly 0; a row with nothing
    unmasked gives the zero vector (not NaN)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(dim, hidden)  # W1, b1
        self.query = nn.Linear(hidden, 1)  # w2, b2

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, N, D], mask [B, N] (True/1 = keep) -> [B, D]."""
        mask = mask.bool()
        logits = self.query(torch.tanh(self.proj(x))).squeeze(-1)
        logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
        weights = torch.softmax(logits, dim=-1) * mask  # all-masked row: uniform * 0 = 0
        x = x.masked_fill(~mask.unsqueeze(-1), 0.0)  # padded values cannot leak in (not even inf/NaN)
        return torch.bmm(weights.unsqueeze(1), x).squeeze(1)


class NewsEncoder(KeepFrozenInEval):
    """PLM over title tokens -> attention pooling of token states -> dense to news_dim.

    The PLM's frozen bottom (embeddings + leading layers with no trainable weight, counted
    when the encoder is built) runs without autograd and always in eval mode, so it is the
    same function with or without a frozen-layer cache and in train and eval mode.
    """

    def __init__(self, plm, news_dim: int = 256, query_dim: int = 200):
        super().__init__()
        self.plm = plm
        hidden = plm.config.hidden_size
        self.pooling = AttentionPooling(hidden, query_dim)
        self.dense = nn.Linear(hidden, news_dim)
        self.num_frozen_layers = num_frozen_layers(plm)  # -1: the embeddings train

    def frozen_modules(self) -> list[nn.Module]:
        return frozen_bottom(self.plm, self.num_frozen_layers)

    def token_states(self, news: dict) -> torch.Tensor:
        """Last-layer token states [U, T, H] of ``news_tokens`` (input_ids) or ``news_states``
        (cached hidden_states after ``start_layer`` layers)."""
        mask = news["attention_mask"]
        k = self.num_frozen_layers
        if "input_ids" in news:
            if k >= 0:
                with torch.no_grad():
                    h = run_layers(self.plm, self.plm.embeddings(input_ids=news["input_ids"]), mask, 0, k)
                start = k
            else:
                h, start = self.plm.embeddings(input_ids=news["input_ids"]), 0
        else:
            h, start = news["hidden_states"], int(news["start_layer"])
            if start > k:
                what = "the PLM's embeddings train" if k < 0 else f"only its first {k} layers are frozen"
                raise DataError(
                    f"the frozen-layer cache holds states after {start} PLM layers, but {what} in this model; "
                    "rebuild the cache with fewer frozen layers (or train fewer layers)"
                )
            h = h.to(dtype=next(self.dense.parameters()).dtype)
            if start < k:
                with torch.no_grad():
                    h = run_layers(self.plm, h, mask, start, k)
                start = k
        return run_layers(self.plm, h, mask, start)

    #: length buckets per training batch (:mod:`.buckets`; 1 = one padded batch)
    length_buckets: int = MAX_BUCKETS

    def forward(self, news: dict) -> torch.Tensor:
        """news: {"input_ids", "attention_mask"} or {"hidden_states", "attention_mask", "start_layer"}
        -> news embeddings [U, news_dim].

        In training (train mode with autograd on) the news run in up to ``length_buckets``
        buckets of similar length, each trimmed to its longest title (the same vectors with
        less padding: :mod:`.buckets`); otherwise as one padded batch."""
        if not (self.training and torch.is_grad_enabled()) or self.length_buckets <= 1:
            return self._encode(news)
        mask = news["attention_mask"]
        positions = torch.arange(1, mask.shape[1] + 1, device=mask.device)
        buckets = length_buckets((mask.bool() * positions).amax(1), self.length_buckets)  # last real token + 1
        if len(buckets) == 1:
            return self._encode(news)
        trim = lambda v, rows, width: v[rows, :width] if torch.is_tensor(v) and v.dim() >= 2 else v  # noqa: E731
        return bucketed(buckets, [self._encode({k: trim(v, rows, width) for k, v in news.items()})
                                  for rows, width in buckets])

    def _encode(self, news: dict) -> torch.Tensor:
        return self.dense(self.pooling(self.token_states(news), news["attention_mask"]))


class UserEncoder(nn.Module):
    """Attention pooling over the user's clicked news embeddings (history padding masked).

    A user with an empty history (a cold user; MIND has them) gets a learned vector
    ``empty_user`` (initialised to zeros, so it scores every candidate 0 until trained;
    training turns it into a popularity-like preference).
    """

    def __init__(self, news_dim: int = 256, query_dim: int = 200):
        super().__init__()
        self.pooling = AttentionPooling(news_dim, query_dim)
        self.empty_user = nn.Parameter(torch.zeros(news_dim))

    def forward(self, history: torch.Tensor, history_mask: torch.Tensor) -> torch.Tensor:
        """history [B, Lh, D] clicked news embeddings, history_mask [B, Lh] -> users [B, D]."""
        users = self.pooling(history, history_mask)
        empty = ~history_mask.bool().any(dim=1, keepdim=True)
        return torch.where(empty, self.empty_user.to(users.dtype), users)


def click_scores(users: torch.Tensor, candidates: torch.Tensor, candidate_mask: torch.Tensor | None = None):
    """s = <u, n_c>: users [B, D], candidates [B, C, D] -> [B, C]; padded candidates get the
    dtype's lowest value (zero probability in a softmax)."""
    scores = torch.einsum("bd,bcd->bc", users, candidates)
    if candidate_mask is not None:
        scores = scores.masked_fill(~candidate_mask.bool(), torch.finfo(scores.dtype).min)
    return scores


def click_loss(scores: torch.Tensor) -> torch.Tensor:
    """CE(s, 0) = -log softmax(s)_0, averaged over the batch: the click is candidate 0."""
    return F.cross_entropy(scores, torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device))


class PLMNR(Recommender):
    """PLM-NR: news encoder + user encoder + dot-product click scores (a :class:`Recommender`
    of kind ``plmnr``: teachers, post-trained checkpoints and students alike)."""

    kind = "plmnr"

    def __init__(self, plm, config: PLMNRConfig | None = None):
        super().__init__()
        self.config = config or PLMNRConfig()
        self.news_encoder = NewsEncoder(plm, self.config.news_dim, self.config.news_query_dim)
        self.user_encoder = UserEncoder(self.config.news_dim, self.config.user_query_dim)

    @property
    def plm(self):
        return self.news_encoder.plm

    @property
    def news_dim(self) -> int:
        return self.config.news_dim

    def forward(self, batch: dict) -> torch.Tensor:
        """Click scores [B, C] of a unique-news batch (see the module docstring).
        Train with ``click_loss(model(batch))`` (calling forward keeps DDP's hooks)."""
        news = batch["news_tokens"] if "news_tokens" in batch else batch["news_states"]
        vecs = self.news_encoder(news)  # each distinct news encoded once
        users = self.user_encoder(vecs[batch["history"]], batch["history_mask"])
        return click_scores(users, vecs[batch["candidates"]], batch.get("candidate_mask"))

    def loss(self, batch: dict) -> torch.Tensor:
        """``click_loss(self(batch))``."""
        return click_loss(self(batch))

    def save_pretrained(self, folder: str | os.PathLike, state_dict: dict[str, torch.Tensor] | None = None,
                        **extra) -> None:
        """Write a checkpoint into ``folder`` (use ``io.atomic_dir`` around it): ``plm/`` in
        Hugging Face format, ``heads.safetensors``, and ``config.json`` (PLMNRConfig + ``extra``).
        ``state_dict``: this model's full weights when they had to be gathered from several
        processes (FSDP / ZeRO-3: :func:`~tinynewsrec.train.loop.full_state_dict`)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        state = self.state_dict() if state_dict is None else state_dict
        prefix = "news_encoder.plm."
        plm_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        with quiet_transformers():
            self.plm.save_pretrained(folder / "plm", state_dict=plm_state)
        heads = {k: v.detach().cpu().contiguous() for k, v in state.items() if not k.startswith(prefix)}
        save_file(heads, str(folder / "heads.safetensors"))
        meta = {"model": "plmnr", "plmnr": asdict(self.config), "num_layers": len(self.plm.encoder.layer), **extra}
        (folder / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, trainable_layers: int = 0) -> "PLMNR":
        """Load a checkpoint written by :meth:`save_pretrained` (PLM frozen except its last
        ``trainable_layers``; heads trainable)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            heads = load_file(str(folder / "heads.safetensors"))
        except (OSError, ValueError, SafetensorError) as e:
            text = " ".join(str(e).split())
            raise DataError(
                f"{folder}: not a readable PLM-NR checkpoint ({type(e).__name__}: {text}); rerun the stage that wrote it"
            ) from None
        if not isinstance(meta, dict):
            raise DataError(f"{folder}/config.json: not a PLM-NR checkpoint config; rerun the stage that wrote it")
        if meta.get("model") != "plmnr":
            raise DataError(f"{folder}/config.json: model is {meta.get('model')!r}, expected 'plmnr'")
        model = cls(load_plm(str(folder / "plm"), trainable_layers=trainable_layers), PLMNRConfig(**meta["plmnr"]))
        missing, unexpected = model.load_state_dict(heads, strict=False)
        missing = [k for k in missing if not k.startswith("news_encoder.plm.")]
        if missing or unexpected:
            raise DataError(f"{folder}/heads.safetensors: missing {missing} / unexpected {unexpected} weights")
        return model


# --- unique-news batching -----------------------------------------------------------------


class NewsTokens:
    """Title token ids by global news_index (from data/tokens/news.parquet), padded per batch.

    ``NewsTokens(table)`` with columns ``news_index`` and ``title_ids`` (or any ``column``);
    ``NewsTokens.from_lists(lists)`` where ``lists[i]`` are the ids of news_index i.
    ``batch(news_index)`` gives ``{"input_ids", "attention_mask"}`` padded to the longest.
    """

    def __init__(self, table: pa.Table, column: str = "title_ids", max_len: int | None = None):
        for col in ("news_index", column):
            if col not in table.column_names:
                raise DataError(f"token table has no column {col!r} (columns: {', '.join(table.column_names)})")
        keys = table.column("news_index").to_numpy().astype(np.int64)
        if len(keys) and (keys.min() < 1 or len(np.unique(keys)) != len(keys)):
            raise DataError("token table: news_index must be unique and >= 1 (0 is padding); rerun the split stage")
        values, row_offsets = ragged_parts(table.column(column))
        lengths = np.diff(row_offsets)
        num = int(keys.max()) + 1 if len(keys) else 1
        key_lengths = np.zeros(num, dtype=np.int64)
        key_lengths[keys] = lengths
        self.offsets = np.zeros(num + 1, dtype=np.int64)
        np.cumsum(key_lengths, out=self.offsets[1:])
        self.values = np.zeros(int(self.offsets[-1]), dtype=np.int32)
        # scatter each row's tokens to its key's slot (vectorised)
        dest = np.repeat(self.offsets[keys] - row_offsets[:-1], lengths) + np.arange(len(values))
        self.values[dest] = values
        self.max_len = max_len

    @classmethod
    def from_lists(cls, lists, max_len: int | None = None) -> "NewsTokens":
        """``lists[i]``: token ids of news_index i (``lists[0]``, the padding, is ignored)."""
        arr = pa.array(lists[1:], type=pa.list_(pa.int32()))
        keys = pa.array(np.arange(1, len(arr) + 1, dtype=np.int32))
        return cls(pa.table({"news_index": keys, "title_ids": arr}), max_len=max_len)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def batch(self, news_index) -> dict:
        idx = np.asarray(news_index, dtype=np.int64)
        if idx.size and (idx.min() < 1 or idx.max() >= len(self)):
            bad = int(idx[(idx < 1) | (idx >= len(self))][0])
            raise DataError(
                f"news_index {bad} has no title tokens (known news: 1..{len(self) - 1}); is data/tokens up to date?"
            )
        ids, mask = gather_padded(self.values, self.offsets, idx, self.max_len)
        return {"input_ids": torch.from_numpy(ids.astype(np.int64)), "attention_mask": torch.from_numpy(mask).long()}


def _ragged(samples, column: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(samples, (pa.Table, pa.RecordBatch)):
        return ragged_parts(samples.column(column))
    return ragged_parts([s[column] for s in samples])


def collate_train(samples, tokens_lookup, history_len: int | None = None) -> dict:
    """Build a unique-news batch (module docstring) from rows of data/samples/train.parquet.

    ``samples``: a pyarrow Table/RecordBatch of rows (e.g. ``table.take(indices)``) or a list
    of mappings with ``history`` and ``candidates`` (lists of global news_index; 0 = padding).
    ``tokens_lookup``: a :class:`NewsTokens` (gives ``news_tokens``) or a
    :class:`~tinynewsrec.models.cache.FrozenCache` (gives ``news_states``). The last
    ``history_len`` clicks are kept (all if None); histories and candidates are padded to the
    longest in the batch. Works for dev impressions too (their labels are not read).
    """
    h_vals, h_off = _ragged(samples, "history")
    c_vals, c_off = _ragged(samples, "candidates")
    h_end = h_off[1:]
    h_start = h_off[:-1] if history_len is None else np.maximum(h_off[:-1], h_end - history_len)
    history, history_mask = pad_ranges(h_vals.astype(np.int64), h_start, h_end - h_start)  # most recent clicks
    candidates, candidate_mask = gather_padded(c_vals.astype(np.int64), c_off, np.arange(len(c_off) - 1))
    history_mask &= history > 0  # index 0 is padding wherever it appears
    if (candidate_mask & (candidates <= 0)).any():
        raise DataError("a sample has candidate news_index 0 (padding) or negative; rerun the split stage")
    every = np.concatenate([history[history_mask], candidates[candidate_mask]])
    news_index, inverse = np.unique(every, return_inverse=True)
    hist_local = np.zeros_like(history)
    hist_local[history_mask] = inverse[: int(history_mask.sum())]
    cand_local = np.zeros_like(candidates)
    cand_local[candidate_mask] = inverse[int(history_mask.sum()) :]
    batch = {
        "news_index": torch.from_numpy(news_index),
        "history": torch.from_numpy(hist_local),
        "history_mask": torch.from_numpy(history_mask),
        "candidates": torch.from_numpy(cand_local),
        "candidate_mask": torch.from_numpy(candidate_mask),
    }
    news = tokens_lookup.batch(news_index)
    batch["news_tokens" if "input_ids" in news else "news_states"] = news
    return batch
