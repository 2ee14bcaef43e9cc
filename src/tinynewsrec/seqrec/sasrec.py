"""SASRec (Kang & McAuley, 2018) with a PLM-initialised item table (Qu et al., 2024).

Causal self-attention over the left-padded history: item vector x sqrt(hidden) + a learned
position, dropout, ``blocks`` pre-LN blocks (a point-wise feed-forward hidden -> hidden -> hidden
with ReLU, as the original), padded positions zeroed after each block, a final LayerNorm.
Training: the state at position t predicts item t + 1 (inputs ``seqs[:, :-1]``, targets
``seqs[:, 1:]``); the user vector is the state at the last position. Output scores are tied to
the item table: ``h @ table.all().T``, so the table is both ``news_encoder`` (the owner of the
weights) and the user encoder's input (the same weights: saved once).

Seed settings (:data:`~tinynewsrec.seqrec.common.PAPER`): 1 head, dropout 0.5, a trainable table.
"""

from __future__ import annotations

import torch

from .common import HistoryEncoder, ItemTable, ItemVectors, SeqRecConfig, SeqRecommender


class TiedItems(ItemVectors):
    """Item vectors = the rows of the item table; logits of states = ``states @ table.all().T``."""

    def __init__(self, items: ItemTable):
        super().__init__()
        self.items = items

    def vectors(self, ids: torch.Tensor) -> torch.Tensor:
        return self.items(ids)

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        return states @ self.items.all().T


class SASRec(SeqRecommender):
    kind = "sasrec"

    def __init__(self, config: SeqRecConfig, table: torch.Tensor | None = None):
        super().__init__(config, table)
        items = ItemTable(config, table)
        self.news_encoder = TiedItems(items)
        self.user_encoder = HistoryEncoder(config, items, causal=True, ffn_dim=config.hidden, activation="relu",
                                           scale=config.hidden ** 0.5)

    @property
    def train_len(self) -> int:
        return self.config.max_len + 1

    def training_pair(self, seqs: torch.Tensor, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Next-item pairs; a target whose input is padding (a user's first item) is not trained,
        as in the original (nothing precedes it to predict it from)."""
        inputs = seqs[:, :-1]
        return inputs, seqs[:, 1:].masked_fill(inputs == 0, 0)
