"""The Transformer re-ranker (kind ``reranker``): DL_News_Rec's re-ranker, done correctly.

One sample is ONE (user, candidate) pair: the fused vectors of the user's last ``history_len``
clicks, oldest first, with the candidate's vector appended at the end::

    [h_1, h_2, ..., h_n, c]      right-aligned: c is always the last position, padding (if any) first

- input = news vector + a sinusoidal position counted from the END (the candidate is position 0,
  the latest click 1, ...), so a sample's positions do not depend on how much padding precedes it;
- ``layers`` pre-LN Transformer encoder layers (``nn.TransformerEncoderLayer(norm_first=True)``,
  GELU feed-forward of width ``ffn``) and a final LayerNorm; every sample has its own key-padding
  mask (``src_key_padding_mask`` [B, L + 1]), in training and in evaluation alike;
- mean pooling over the sample's non-padding tokens (its clicks and the candidate);
- head: Linear -> GELU -> Linear -> one click logit.

A candidate never sees the other candidates of its impression: each is scored in a sequence of
its own, so its score is the same whatever else was shown with it.

The seed code's bugs not reproduced: its attention mask was the LAST sample's padding mask applied
to the whole batch (every other sample attended to padding or lost real clicks) and evaluation
ran with no mask at all; its evaluator fed ``argsort`` where ranks were expected. Here the mask
is built per sample from ``mask`` in :meth:`Reranker.encode_user`, padded slots are zeroed as
well (so not even a NaN in a padded slot can reach a real token), and evaluation is
:func:`tinynewsrec.evaluate.score_impressions` + ``rank_and_score``, as for every other row.

The :class:`~tinynewsrec.models.base.Recommender` interface: ``news_encoder`` is the
:class:`~tinynewsrec.multimodal.fusion.MultimodalNewsEncoder`; ``encode_user(history [B, L, D],
mask [B, L])`` returns the user STATE, not a pooled vector (the candidate attends to the history,
so nothing can be pooled before the candidate is known): the last ``history_len`` clicks
right-aligned, with their mask as one more channel, ``[B, W, D + 1]``; ``score(users, candidates
[B, C, D])`` builds the B x C sequences ``chunk`` at a time (bounded memory) and returns the
logits [B, C].

Sizes: the original ran 4 layers, 8 heads, FFN 1024, d_model 256, a history of 50
(:data:`ORIGINAL`); the CPU default (params.yaml ``reranker``) is 2 layers, 4 heads, FFN 512,
d_model = ``multimodal.dim`` = 128, a history of 50.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .fusion import MultimodalNewsEncoder, MultimodalRecommender, NewsEncoderConfig

#: DL_News_Rec's re-ranker settings
ORIGINAL = {"layers": 4, "heads": 8, "ffn": 1024, "dim": 256, "history_len": 50}


@dataclass(frozen=True)
class RerankerConfig:
    news: NewsEncoderConfig = field(default_factory=NewsEncoderConfig)  # d_model = news.dim
    layers: int = 2
    heads: int = 4
    ffn: int = 512
    dropout: float = 0.1
    history_len: int = 50  # clicks a sample keeps (the most recent)
    chunk: int = 1024  # (user, candidate) sequences per Transformer pass in score()

    def __post_init__(self) -> None:
        for key in ("layers", "heads", "ffn", "history_len", "chunk"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ValueError(f"{key} must be an integer >= 1, got {getattr(self, key)!r}")
        if self.news.dim % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide the news vector width ({self.news.dim})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")


def sinusoidal(n: int, dim: int) -> torch.Tensor:
    """``[n, dim]``: PE[p, 2k] = sin(p / 10000^(2k/dim)), PE[p, 2k + 1] = cos(...) (Vaswani et al.)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(n, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe


class HistoryState(nn.Module):
    """``user_encoder``: history [B, L, D] + mask [B, L] -> state [B, W, D + 1]: each row's last
    ``history_len`` real clicks (in their order) right-aligned into W = min(longest, history_len)
    slots, padded slots zeroed, the mask as the last channel. No weights."""

    def __init__(self, history_len: int):
        super().__init__()
        self.history_len = history_len

    def forward(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.bool()
        n = mask.sum(dim=1)
        width = max(1, min(int(n.max()) if n.numel() else 0, self.history_len))
        slot = width - n[:, None] + torch.cumsum(mask, dim=1) - 1  # target slot of each real click
        keep = mask & (slot >= 0)  # older clicks beyond history_len fall off
        rows = torch.arange(len(history), device=history.device)[:, None].expand_as(mask)
        out = history.new_zeros(len(history), width, history.shape[-1] + 1)
        out[rows[keep], slot[keep]] = torch.cat([history[keep], history.new_ones(int(keep.sum()), 1)], dim=-1)
        return out


class Reranker(MultimodalRecommender):
    kind = "reranker"
    config_class = RerankerConfig

    def __init__(self, config: RerankerConfig, text_encoder: nn.Module | None = None):
        super().__init__()
        self.config = config
        d = config.news.dim
        self.user_encoder = HistoryState(config.history_len)
        self.register_buffer("positions", sinusoidal(config.history_len + 1, d), persistent=False)
        self.dropout = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(d, config.heads, config.ffn, config.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 1))
        # the news encoder last: under one seed the Transformer's initial weights are the same whatever it reads
        self.news_encoder = MultimodalNewsEncoder(config.news, text_encoder)

    def logits(self, seqs: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Click logits [S] of S right-aligned sequences [S, T, D] (the candidate last) whose real
        tokens are ``keep`` [S, T]."""
        t = seqs.shape[1]
        x = seqs.masked_fill(~keep[..., None], 0.0) + self.positions[:t].flip(0)  # position = distance to the end
        x = self.encoder(self.dropout(x), src_key_padding_mask=~keep)
        x = x.masked_fill(~keep[..., None], 0.0)
        pooled = x.sum(dim=1) / keep.sum(dim=1, keepdim=True).to(x.dtype)  # mean over the sample's own tokens
        return self.head(pooled).squeeze(-1)

    def score(self, users: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Logits [B, C]: candidate c of row b scored in the sequence [history_b; c] alone."""
        b, c, d = candidates.shape
        history, hist_keep = users[..., :d], users[..., d] > 0.5
        w = history.shape[1]
        out = []
        flat = torch.arange(b * c, device=candidates.device)
        for lo in range(0, b * c, self.config.chunk):
            idx = flat[lo : lo + self.config.chunk]
            row = idx // c
            seqs = torch.cat([history[row], candidates.reshape(b * c, 1, d)[idx]], dim=1)
            keep = torch.cat([hist_keep[row], hist_keep.new_ones(len(idx), 1)], dim=1)
            out.append(self.logits(seqs, keep))
        return torch.cat(out).view(b, c) if out else candidates.new_zeros(b, c)
