"""What SASRec and BERT4Rec share: the config, the item table a PLM table enters, the Transformer
history encoder, and the :class:`SeqRecommender` base (scores, losses, save / load).

Item ids are 1..n_items; 0 is padding. Histories are **left-padded** (:func:`pad_left`), so a user's
latest item is the last column. Learned positions are counted from the right end of the
``max_len`` window, so a history's scores do not depend on how much padding precedes it.

The PLM table enters the item table (:class:`ItemTable`) in one of three ways (``entry``):
``random`` (no PLM: the ID-only baseline), ``copy`` (same width as the model) or ``project`` (a
learned linear map from the PLM's width, as UniSRec). ``table`` says whether the copied rows train.

A model is two modules, as every :class:`~tinynewsrec.models.base.Recommender`:

- ``news_encoder`` (:class:`ItemVectors`): item id -> item vector; ``logits(states)`` scores every
  item id 0..n_items for a batch of Transformer states;
- ``user_encoder`` (:class:`HistoryEncoder`): history ids -> the Transformer state at the last
  position -> the user vector; ``<user vector, item vector>`` is the item's logit.

Seed-code bugs not reproduced: padded target positions never enter a loss (the seed code trained
them to predict item 0), and column 0 (padding) is left out of the softmax; ``scores_all`` still
has a column 0, which the caller masks.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError
from ..models.base import Recommender, read_config
from ..models.buckets import MAX_BUCKETS, length_buckets

#: each model's own settings in the seed code (``seqrec.heads / dropout / table: null`` picks these)
PAPER = {"sasrec": {"heads": 1, "dropout": 0.5, "table": "trainable"},
         "bert4rec": {"heads": 4, "dropout": 0.1, "table": "frozen"}}


@dataclass(frozen=True)
class SeqRecConfig:
    """One sequential recommender. ``heads``, ``dropout``, ``table`` = None: the model's :data:`PAPER`
    setting; ``table_dim`` = None: ``hidden`` (required to be ``hidden`` for random / copy)."""

    model: str  # sasrec | bert4rec
    n_items: int  # real items, ids 1..n_items (0 = padding)
    hidden: int
    blocks: int = 2
    heads: int | None = None
    dropout: float | None = None
    max_len: int = 50
    table: str | None = None  # frozen | trainable (a random table always trains)
    entry: str = "random"  # random | copy | project
    table_dim: int | None = None  # width of the PLM table given to the model
    loss: str = "ce"  # ce: softmax over items 1..n_items; bce: one sampled negative per position
    mask_prob: float = 0.15  # BERT4Rec's Cloze masking rate
    init: str = "random"  # name of the init table's source (metadata only)

    def __post_init__(self) -> None:
        if self.model not in PAPER:
            raise ValueError(f"model must be one of {', '.join(PAPER)}, got {self.model!r}")
        for key, value in PAPER[self.model].items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
        if self.table_dim is None:
            object.__setattr__(self, "table_dim", self.hidden)
        for key, value, known in (("table", self.table, ("frozen", "trainable")),
                                  ("entry", self.entry, ("random", "copy", "project")),
                                  ("loss", self.loss, ("ce", "bce"))):
            if value not in known:
                raise ValueError(f"{key} must be one of {', '.join(known)}, got {value!r}")
        for key in ("n_items", "hidden", "blocks", "heads", "max_len", "table_dim"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ValueError(f"{key} must be an integer >= 1, got {getattr(self, key)!r}")
        if self.hidden % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide hidden ({self.hidden})")
        if self.entry != "project" and self.table_dim != self.hidden:
            raise ValueError(f"entry {self.entry} needs table_dim == hidden ({self.hidden}), got {self.table_dim}; "
                             "use entry project for a table of another width")
        if not (0.0 <= self.dropout < 1.0 and 0.0 < self.mask_prob < 1.0):
            raise ValueError(f"dropout must be in [0, 1) and mask_prob in (0, 1), got {self.dropout}, {self.mask_prob}")


class ItemTable(nn.Module):
    """Item id -> vector [..., hidden]; row 0 (padding) is always the zero vector.

    - ``random``: normal(0, 0.02), always trainable whatever ``config.table`` says (a frozen random
      table learns nothing, so the ID baseline would be no baseline);
    - ``copy``: the given ``[n_items + 1, hidden]`` rows exactly, trainable iff ``table: trainable``;
    - ``project``: the given ``[n_items + 1, table_dim]`` rows (trainable iff ``table: trainable``),
      then a learned ``nn.Linear(table_dim, hidden)``.

    ``table`` None with copy / project (loading a checkpoint): a zero table of the right shape that
    ``load_state_dict`` fills. Row 0 is zeroed in :meth:`forward`, not only at init, so neither an
    optimizer step (weight decay) nor the projection's bias can make padding a non-zero input."""

    def __init__(self, config: SeqRecConfig, table: torch.Tensor | None = None):
        super().__init__()
        rows = config.n_items + 1
        self.proj: nn.Linear | None = None
        if config.entry == "random":
            if table is not None:
                raise ValueError("entry random takes no init table; use entry copy or project for a PLM table")
            self.embedding = nn.Embedding(rows, config.hidden, padding_idx=0)
            nn.init.normal_(self.embedding.weight, 0.0, 0.02)
            with torch.no_grad():
                self.embedding.weight[0].zero_()
            return
        shape = (rows, config.hidden if config.entry == "copy" else config.table_dim)
        if table is None:
            table = torch.zeros(shape)
        if tuple(table.shape) != shape:
            hint = "use entry project for a table of another width" if config.entry == "copy" else "check table_dim"
            raise ValueError(f"entry {config.entry} needs an init table of shape {list(shape)} "
                             f"(n_items + 1 rows), got {list(table.shape)}; {hint}")
        self.embedding = nn.Embedding.from_pretrained(table.detach().float().clone(),
                                                      freeze=config.table == "frozen", padding_idx=0)
        if config.entry == "project":
            self.proj = nn.Linear(config.table_dim, config.hidden)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids)
        if self.proj is not None:
            x = self.proj(x)
        return torch.where((ids != 0).unsqueeze(-1), x, 0.0)

    def all(self) -> torch.Tensor:
        """Every item's vector ``[n_items + 1, hidden]`` (row 0 zeros)."""
        return self(torch.arange(self.embedding.num_embeddings, device=self.embedding.weight.device))


def pad_left(seqs: list[list[int]] | list[np.ndarray], length: int) -> torch.LongTensor:
    """``[B, length]``: each sequence's last ``length`` items, left-padded with 0."""
    out = torch.zeros(len(seqs), length, dtype=torch.long)
    for row, seq in enumerate(seqs):
        seq = np.asarray(seq, dtype=np.int64)
        tail = seq[max(len(seq) - length, 0):]
        out[row, length - len(tail):] = torch.from_numpy(tail)
    return out


def random_items(shape: tuple[int, ...], n_items: int, generator: torch.Generator | None,
                 device: torch.device) -> torch.Tensor:
    """Uniform item ids in 1..n_items, drawn with ``generator`` (on its own device) and moved to ``device``."""
    where = generator.device if generator is not None else device
    return torch.randint(1, n_items + 1, shape, generator=generator, device=where).to(device)


def uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """U(0, 1) draws made as :func:`random_items` makes its ids."""
    where = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=where).to(device)


class Block(nn.Module):
    """A pre-LN Transformer block: ``x + Attn(LN(x))``, then ``x + FFN(LN(x))``, FFN =
    Linear -> activation -> dropout -> Linear -> dropout (SASRec's point-wise feed-forward)."""

    def __init__(self, hidden: int, heads: int, dropout: float, ffn_dim: int, activation: str):
        super().__init__()
        self.attn_norm = nn.LayerNorm(hidden)
        self.attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.ffn_norm = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn_dim), {"relu": nn.ReLU, "gelu": nn.GELU}[activation](),
                                 nn.Dropout(dropout), nn.Linear(ffn_dim, hidden), nn.Dropout(dropout))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        y = self.attn_norm(x)
        x = x + self.dropout(self.attn(y, y, y, attn_mask=blocked, need_weights=False)[0])
        return x + self.ffn(self.ffn_norm(x))


def blocked_keys(keep: torch.Tensor, causal: bool) -> torch.Tensor:
    """``[B, L, L]`` bool, True = query i may NOT attend to key j: padded keys (and, if ``causal``,
    later keys). Every position may attend to itself: a padded query (whose output is zeroed
    anyway) would otherwise see no key at all, and nn.MultiheadAttention returns NaN for it. Real
    queries only ever see real keys, the key-padding mask folded into one mask."""
    length = keep.shape[1]
    allowed = keep[:, None, :].expand(-1, length, -1)
    if causal:
        allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=keep.device).tril()
    return ~(allowed | torch.eye(length, dtype=torch.bool, device=keep.device))


class HistoryEncoder(nn.Module):
    """``user_encoder``: item ids [B, L] -> Transformer states [B, L, hidden] -> the user vector.

    Input = item vector x ``scale`` + learned position (counted from the window's right end), then
    dropout, ``blocks`` pre-LN blocks and a final LayerNorm; padded positions are zeroed after the
    embedding, after each block and at the end (SASRec's timeline mask). ``mask_token``: one more
    trainable input vector for id ``n_items + 1`` (BERT4Rec's [MASK]; trains even when the table is
    frozen). Subclasses change :meth:`last_state` (which input predicts) and :meth:`vector`."""

    def __init__(self, config: SeqRecConfig, items: ItemTable, *, causal: bool, ffn_dim: int, activation: str,
                 scale: float, mask_token: bool = False):
        super().__init__()
        self.config, self.causal, self.scale = config, causal, scale
        self.items = items
        self.mask_embedding = nn.Parameter(torch.randn(config.hidden) * 0.02) if mask_token else None
        self.positions = nn.Embedding(config.max_len, config.hidden)
        nn.init.normal_(self.positions.weight, 0.0, 0.02)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config.hidden, config.heads, config.dropout, ffn_dim, activation)
                                    for _ in range(config.blocks))
        self.norm = nn.LayerNorm(config.hidden)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        n_items = self.config.n_items
        x = self.items(ids.clamp(max=n_items))
        if self.mask_embedding is not None:
            x = torch.where((ids == n_items + 1).unsqueeze(-1), self.mask_embedding, x)
        return x

    def states(self, inputs: torch.Tensor) -> torch.Tensor:
        """Transformer states ``[B, L, hidden]`` of left-padded ids (the last ``max_len`` are kept)."""
        inputs = inputs[:, -self.config.max_len:]
        keep = inputs != 0
        zero_pad = keep.unsqueeze(-1).to(self.positions.weight.dtype)
        x = self.embed(inputs) * self.scale + self.positions.weight[self.config.max_len - inputs.shape[1]:]
        x = self.dropout(x) * zero_pad
        blocked = blocked_keys(keep, self.causal).repeat_interleave(self.config.heads, dim=0)
        for block in self.blocks:
            x = block(x, blocked) * zero_pad
        return self.norm(x) * zero_pad

    def last_state(self, history: torch.Tensor) -> torch.Tensor:
        """``[B, hidden]``: the state that predicts each user's next item (SASRec: the last position)."""
        return self.states(history)[:, -1]

    def vector(self, states: torch.Tensor) -> torch.Tensor:
        """User vectors ``[..., news_dim]`` of states: their dot product with an item vector is its logit."""
        return states

    def forward(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, news_dim]`` of left-padded history ids; ids where ``mask`` is False count as padding."""
        return self.vector(self.last_state(history.masked_fill(~mask, 0)))


class ItemVectors(nn.Module):
    """``news_encoder``: ``{"item_ids": [N]}`` -> item vectors ``[N, news_dim]``."""

    def vectors(self, ids: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def logits(self, states: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``[..., n_items + 1]``: every item id's logit for states ``[..., hidden]``."""
        raise NotImplementedError

    def forward(self, news: dict) -> torch.Tensor:
        return self.vectors(news["item_ids"])


class SeqRecommender(Recommender):
    """Base of SASRec and BERT4Rec. A subclass builds ``news_encoder`` (an :class:`ItemVectors`) and
    ``user_encoder`` (a :class:`HistoryEncoder`) and says how a training sequence becomes inputs and
    targets (:meth:`training_pair`, :attr:`train_len`)."""

    #: length buckets per training batch (:meth:`_trained_states`; 1 = one padded batch)
    length_buckets: int = MAX_BUCKETS

    def __init__(self, config: SeqRecConfig, table: torch.Tensor | None = None):
        super().__init__()
        if config.model != self.kind:
            raise ValueError(f"{type(self).__name__} needs a config with model {self.kind!r}, got {config.model!r}")
        self.config = config

    @property
    def news_dim(self) -> int:
        return self.config.hidden

    @property
    def train_len(self) -> int:  # pragma: no cover - abstract
        """Width of the ``seqs`` :meth:`train_loss` takes."""
        raise NotImplementedError

    def training_pair(self, seqs: torch.Tensor, generator: torch.Generator | None
                      ) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        """``(inputs [B, L], targets [B, L])``; target 0 = the position is not trained."""
        raise NotImplementedError

    def scores_all(self, history: torch.Tensor) -> torch.Tensor:
        """``[B, n_items + 1]``: every item id's score after each left-padded history (column 0 = padding,
        for the caller to mask); equal to ``score(encode_user(h, h != 0)[:, None] ...)`` column by column."""
        return self.news_encoder.logits(self.user_encoder.last_state(history))

    def train_loss(self, seqs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean loss over the positions with a target (left-padded ``seqs`` ``[B, train_len]``).

        ``ce``: ``-log softmax(logits[1:])[target]`` (padding is no class); ``bce``: with one uniform
        negative item n per position, ``softplus(-s_target) + softplus(s_n)`` (-log sigmoid of each; the
        negative may rarely be the target itself). A batch with no target gives a zero loss."""
        if seqs.dim() != 2 or seqs.shape[1] != self.train_len:
            raise ValueError(f"{self.kind} trains on left-padded sequences [B, {self.train_len}], "
                             f"got {list(seqs.shape)}")
        inputs, targets = self.training_pair(seqs, generator)
        states, targets = self._trained_states(inputs, targets)
        if not len(targets):
            return states.sum() * 0.0
        if self.config.loss == "ce":
            return F.cross_entropy(self.news_encoder.logits(states)[:, 1:], targets - 1)
        users = self.user_encoder.vector(states)
        negatives = random_items(tuple(targets.shape), self.config.n_items, generator, targets.device)
        positive = (users * self.news_encoder.vectors(targets)).sum(-1)
        negative = (users * self.news_encoder.vectors(negatives)).sum(-1)
        return (F.softplus(-positive) + F.softplus(negative)).mean()

    def _trained_states(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The states ``[N, hidden]`` of the N positions with a target, and those targets ``[N]``.

        In training (train mode, autograd on) the users run in up to ``length_buckets`` buckets
        of similar history length, each trimmed to its longest history (the same states with
        less padding, see :mod:`~tinynewsrec.models.buckets`): histories are left-padded, so a
        bucket keeps its last columns, and a trimmed column is padding in every row of the
        bucket, whose targets are 0 (never trained). The loss is a mean over positions, so the
        order of the N positions does not change it."""
        if not (self.training and torch.is_grad_enabled()) or self.length_buckets <= 1:
            states, trained = self.user_encoder.states(inputs), targets != 0
            return states[trained], targets[trained]
        width = inputs.shape[1]
        real = inputs != 0
        first = torch.where(real.any(1), real.int().argmax(1), width)  # the first real column of each row
        parts, kept = [], []
        for rows, length in length_buckets(width - first, self.length_buckets):
            sub, target = inputs[rows, width - length:], targets[rows, width - length:]
            trained = target != 0
            parts.append(self.user_encoder.states(sub)[trained])
            kept.append(target[trained])
        return torch.cat(parts), torch.cat(kept)

    def forward(self, seqs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """:meth:`train_loss`, so that a wrapper that calls the module (DDP) trains it."""
        return self.train_loss(seqs, generator)

    def _aliases(self) -> dict[str, str]:
        """Second names of tied weights -> their first name (SASRec's table is input and output)."""
        first: dict[int, str] = {}
        aliases: dict[str, str] = {}
        for name, p in self.named_parameters(remove_duplicate=False):
            if id(p) in first:
                aliases[name] = first[id(p)]
            else:
                first[id(p)] = name
        return aliases

    def save_pretrained(self, folder: str | os.PathLike, **extra: Any) -> None:
        """Write ``config.json`` (``{"model", "seqrec": config, **extra}``) and ``model.safetensors``
        (tied weights once) into ``folder`` (the caller makes it atomic)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        aliases = self._aliases()
        weights = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if k not in aliases}
        save_file(weights, str(folder / "model.safetensors"))
        meta = {"model": self.kind, "seqrec": asdict(self.config), **extra}
        (folder / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> "SeqRecommender":
        """Load a folder written by :meth:`save_pretrained` (a one-line DataError if it is not one)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        meta = read_config(folder)
        if meta["model"] != cls.kind:
            raise DataError(f"{folder}/config.json: model is {meta['model']!r}, expected {cls.kind!r}")
        try:
            model = cls(SeqRecConfig(**meta["seqrec"]))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{folder}/config.json: not a {cls.kind} config ({e}); "
                            "rerun the stage that wrote it") from None
        try:
            weights = load_file(str(Path(folder) / "model.safetensors"))
            weights.update({alias: weights[name] for alias, name in model._aliases().items() if name in weights})
            model.load_state_dict(weights, strict=True)
        except (OSError, RuntimeError, SafetensorError) as e:
            text = " ".join(str(e).split())
            raise DataError(f"{folder}: not a readable {cls.kind} checkpoint ({type(e).__name__}: {text}); "
                            "rerun the stage that wrote it") from None
        return model
