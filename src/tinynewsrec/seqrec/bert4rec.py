"""BERT4Rec (Sun et al., 2019) with a PLM-initialised item table (Qu et al., 2024).

Bidirectional self-attention over the left-padded sequence: item vector + a learned position,
dropout, ``blocks`` **pre-LN** blocks (BERT's own are post-LN; pre-LN is the block SASRec uses, so
both models share it, and it trains stably whatever the scale of a copied PLM table) with a GELU
feed-forward of width 4 x hidden, padded positions zeroed after each block, a final LayerNorm.
Inputs are item ids 0..n_items plus ``n_items + 1`` = [MASK], whose vector is a separate
parameter that trains even when the item table is frozen.

Training (Cloze, :meth:`BERT4Rec.cloze`): the states at masked positions predict the items there.
Prediction: the history shifted left by one with [MASK] appended (the last ``max_len`` kept); the
state h at that last position scores every item through an untied output layer
``nn.Linear(hidden, n_items + 1)`` (weight W, bias b): ``scores_all = h @ W.T + b``.

As a :class:`~tinynewsrec.models.base.Recommender` (dot-product ``score``), the bias rides along
as one more dimension: ``encode_news(i) = [W_i ; b_i]`` and ``encode_user = [h ; 1]``, so
``<[h ; 1], [W_i ; b_i]> = h . W_i + b_i`` is the logit; ``news_dim`` = hidden + 1.

Seed settings (:data:`~tinynewsrec.seqrec.common.PAPER`): 4 heads, dropout 0.1, a frozen table.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import HistoryEncoder, ItemTable, ItemVectors, SeqRecConfig, SeqRecommender, random_items, uniform


class OutputItems(ItemVectors):
    """Item vectors ``[W_i ; b_i]`` of the untied output layer; logits = ``F.linear(states, W, b)``."""

    def __init__(self, config: SeqRecConfig):
        super().__init__()
        self.output = nn.Linear(config.hidden, config.n_items + 1)

    def vectors(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.output.weight[ids], self.output.bias[ids].unsqueeze(-1)], dim=-1)

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        return F.linear(states, self.output.weight, self.output.bias)


class MaskedHistoryEncoder(HistoryEncoder):
    """BERT4Rec's user encoder: predicts from a [MASK] appended to the history; user vector ``[h ; 1]``."""

    def last_state(self, history: torch.Tensor) -> torch.Tensor:
        mask = torch.full_like(history[:, :1], self.config.n_items + 1)
        return self.states(torch.cat([history, mask], dim=1))[:, -1]

    def vector(self, states: torch.Tensor) -> torch.Tensor:
        return torch.cat([states, torch.ones_like(states[..., :1])], dim=-1)


class BERT4Rec(SeqRecommender):
    kind = "bert4rec"

    def __init__(self, config: SeqRecConfig, table: torch.Tensor | None = None):
        super().__init__(config, table)
        self.user_encoder = MaskedHistoryEncoder(config, ItemTable(config, table), causal=False,
                                                 ffn_dim=4 * config.hidden, activation="gelu", scale=1.0,
                                                 mask_token=True)
        self.news_encoder = OutputItems(config)

    @property
    def news_dim(self) -> int:
        return self.config.hidden + 1

    @property
    def mask_id(self) -> int:
        """The [MASK] input id."""
        return self.config.n_items + 1

    @property
    def train_len(self) -> int:
        return self.config.max_len

    def cloze(self, seqs: torch.Tensor, generator: torch.Generator | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)`` of left-padded ``seqs`` [B, L]: each real position is chosen with
        probability ``mask_prob``; a chosen one becomes [MASK] (80%), a uniform item 1..n_items (10%)
        or stays (10%). Targets: the original item at chosen positions, 0 elsewhere. A sequence with
        no chosen position gets its last real item chosen, as [MASK]. Padding is never chosen."""
        real = seqs != 0
        chosen = (uniform(tuple(seqs.shape), generator, seqs.device) < self.config.mask_prob) & real
        action = uniform(tuple(seqs.shape), generator, seqs.device)
        unchosen = real.any(dim=1) & ~chosen.any(dim=1)
        last = (real * torch.arange(1, seqs.shape[1] + 1, device=seqs.device)).argmax(dim=1)
        rows = unchosen.nonzero().squeeze(1)
        chosen[rows, last[rows]] = True
        action[rows, last[rows]] = 0.0
        inputs = seqs.masked_fill(chosen & (action < 0.8), self.mask_id)
        swap = chosen & (action >= 0.8) & (action < 0.9)
        inputs = torch.where(swap, random_items(tuple(seqs.shape), self.config.n_items, generator, seqs.device),
                             inputs)
        return inputs, seqs.masked_fill(~chosen, 0)

    def training_pair(self, seqs: torch.Tensor, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cloze(seqs, generator)
