"""Training and ranking for the sequential recommenders (the train_seqrec and evaluate_seqrec stages).

A row = one model (``sasrec`` | ``bert4rec``) started from one item table (``seqrec.inits``).
Training runs :func:`tinynewsrec.train.loop.fit` (Accelerate: one process or many) over the
users' training sequences, for at most ``seqrec.epochs`` epochs; after each epoch the users'
validation targets are ranked against all items (full ranking, history masked as
``seqrec.mask_history`` says) and training stops once validation NDCG@10 has not improved for
``seqrec.patience`` epochs; the weights of the best epoch are kept (early stopping, as the seed
code, whose patience is 10).

Every row uses the same data, the same seed rule, the same optimizer (Adam, ``seqrec.lr``),
the same batch size and the same stopping rule, so rows differ only in model and table.
"""

from __future__ import annotations

import copy
import logging
import math
import time

import numpy as np
import torch

from ..errors import ParamError
from ..params import SeqrecParams
from .common import PAPER, SeqRecConfig, pad_left
from .metrics import full_ranks, ranking_metrics, sample_negatives, sampled_ranks

log = logging.getLogger("tinynewsrec")

#: the metric early stopping watches
WATCH = "NDCG@10"


def seqrec_config(p: SeqrecParams, model: str, init: str, n_items: int, table_width: int) -> SeqRecConfig:
    """The model config of row ``model``-``init``: ``null`` params take the model's own setting
    (:data:`~tinynewsrec.seqrec.common.PAPER`); how the table enters follows ``seqrec.entry``."""
    own = PAPER[model]
    heads = p.heads if p.heads is not None else own["heads"]
    if p.hidden % heads:
        raise ParamError(f"params.yaml: seqrec.heads ({heads}, {model}'s own when null) must divide "
                         f"seqrec.hidden ({p.hidden})")
    if init == "random":
        # a random table is the ID-only baseline: frozen it would learn nothing, so it always trains
        entry, table = "copy", "trainable"
    else:
        entry = p.entry if p.entry != "auto" else ("copy" if table_width == p.hidden else "project")
        if entry == "copy" and table_width != p.hidden:
            raise ParamError(f"params.yaml: seqrec.entry copy needs seqrec.hidden = the {init} table's width "
                             f"({table_width}), got {p.hidden}; set seqrec.entry project (or auto)")
        table = p.table or own["table"]
    return SeqRecConfig(
        model=model, n_items=n_items, hidden=p.hidden, blocks=p.blocks, heads=heads,
        dropout=p.dropout if p.dropout is not None else own["dropout"], max_len=p.max_len, table=table,
        entry=entry, table_dim=table_width, loss=p.loss, mask_prob=p.mask_prob, init=init,
    )


def build_model(config: SeqRecConfig, table: torch.Tensor | None = None):
    """A new SASRec or BERT4Rec for ``config``, its item table from ``table``."""
    if config.model == "sasrec":
        from .sasrec import SASRec as cls
    else:
        from .bert4rec import BERT4Rec as cls
    return cls(config, table)


@torch.inference_mode()
def rank_targets(model, histories: list, targets: np.ndarray, *, mask_history: bool, batch_size: int = 256,
                 negatives: np.ndarray | None = None, progress=None) -> dict[str, np.ndarray]:
    """1-based ranks of each user's target: ``full`` (all items) and, with ``negatives``
    [U, S], ``sampled``. ``histories[u]``: the user's items before the target, oldest first."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    full, sampled = [], []
    try:
        for lo in range(0, len(targets), batch_size):
            hist = [histories[u] for u in range(lo, min(lo + batch_size, len(targets)))]
            seqs = pad_left(hist, model.config.max_len).to(device)
            target = torch.as_tensor(targets[lo : lo + batch_size], dtype=torch.long, device=device)
            scores = model.scores_all(seqs)
            # every earlier item is masked, also those beyond the model's max_len window
            seen = pad_left(hist, max(1, max(map(len, hist)))).to(device) if mask_history else None
            full.append(full_ranks(scores, target, seen).cpu())
            if negatives is not None:
                neg = torch.as_tensor(negatives[lo : lo + batch_size], dtype=torch.long, device=device)
                sampled.append(sampled_ranks(scores, target, neg).cpu())
            if progress is not None:
                progress.update(len(hist))
    finally:
        model.train(was_training)
    out = {"full": torch.cat(full).numpy() if full else np.zeros(0, dtype=np.int64)}
    if negatives is not None:
        out["sampled"] = torch.cat(sampled).numpy() if sampled else np.zeros(0, dtype=np.int64)
    return out


def shard_ranks(model, histories: list, targets: np.ndarray, accelerator, *, mask_history: bool) -> np.ndarray:
    """Full-ranking ranks of all users, each process ranking its share (then gathered)."""
    n, world, me = len(targets), accelerator.num_processes, accelerator.process_index
    mine = np.arange(me, n, world)
    ranks = rank_targets(model, [histories[u] for u in mine], targets[mine], mask_history=mask_history)["full"]
    if world == 1:
        return ranks
    per = math.ceil(n / world)
    padded = torch.full((per,), -1, dtype=torch.long, device=accelerator.device)
    padded[: len(ranks)] = torch.as_tensor(ranks, device=accelerator.device)
    gathered = accelerator.gather(padded).view(world, per).cpu().numpy()
    out = np.empty(n, dtype=np.int64)
    for rank in range(world):
        share = np.arange(rank, n, world)
        out[share] = gathered[rank, : len(share)]
    return out


class EarlyStopping:
    """After each epoch: rank the validation users, remember the best weights, say when to stop."""

    def __init__(self, model, histories, targets, p: SeqrecParams, accelerator, name: str):
        self.model, self.histories, self.targets = model, histories, targets
        self.p, self.accelerator, self.name = p, accelerator, name
        self.best, self.best_epoch, self.best_state = -math.inf, 0, None
        self.curve: list[dict] = []
        self._t0 = time.perf_counter()

    def __call__(self, epoch: int) -> bool:
        train_s = time.perf_counter() - self._t0
        t = time.perf_counter()
        ranks = shard_ranks(self.accelerator.unwrap_model(self.model), self.histories, self.targets,
                            self.accelerator, mask_history=self.p.mask_history)
        value = ranking_metrics(ranks, [10])[WATCH]
        if value > self.best:
            self.best, self.best_epoch = value, epoch
            self.best_state = copy.deepcopy(self.accelerator.unwrap_model(self.model).state_dict())
        self.curve.append({"epoch": epoch, f"valid_{WATCH}": value, "train_s": round(train_s, 3),
                           "valid_s": round(time.perf_counter() - t, 3)})
        if self.accelerator.is_main_process:
            log.info("%s: epoch %d, validation %s %.4f (best %.4f at epoch %d)", self.name, epoch, WATCH, value,
                     self.best, self.best_epoch)
        self._t0 = time.perf_counter()
        return epoch - self.best_epoch >= self.p.patience


def fit_seqrec(model, train_seqs: list, valid_histories: list, valid_targets: np.ndarray, p: SeqrecParams,
               accelerator, name: str) -> tuple[dict, EarlyStopping]:
    """Train ``model`` with early stopping; returns fit's result and the stopper (best epoch,
    curve); the model holds the best epoch's weights afterwards."""
    from ..train.loop import LoopConfig, fit

    seed = p.seed
    cfg = LoopConfig(epochs=p.epochs, batch_size=p.batch_size, seed=seed, name=name, grad_clip=None, log_every=50)
    optimizer = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=p.lr)
    prepared, optimizer = accelerator.prepare(model, optimizer)
    # the Cloze masks and BCE negatives: one stream per process, seeded like the loop
    generator = torch.Generator(device=accelerator.device).manual_seed(seed * 1_000 + 7 + accelerator.process_index)
    train_len = model.train_len

    def collate(rows: list[int]) -> torch.Tensor:
        return pad_left([train_seqs[i] for i in rows], train_len)

    def step(m, batch):
        inner = accelerator.unwrap_model(m)
        if m is inner:
            return inner.train_loss(batch, generator), {}
        return m(batch, generator), {}  # through the wrapper (DDP): forward = train_loss

    stopper = EarlyStopping(prepared, valid_histories, valid_targets, p, accelerator, name)
    result = fit(accelerator, prepared, optimizer, len(train_seqs), collate, step, cfg, on_epoch_end=stopper)
    if stopper.best_state is not None:
        accelerator.unwrap_model(prepared).load_state_dict(stopper.best_state)
    return result, stopper


def evaluate_split(model, histories: list, targets: np.ndarray, p: SeqrecParams, *, cold: np.ndarray,
                   n_items: int, progress=None) -> tuple[dict, np.ndarray]:
    """Metrics of one split: ``full`` (and ``sampled`` when ``seqrec.sampled`` > 0), each overall
    and on ``cold`` users (bool [U]: the target never occurs in the training sequences); and
    the full-ranking ranks per user (for paired comparisons between rows)."""
    negatives = None
    if p.sampled:
        rng = np.random.default_rng(p.seed)
        negatives = sample_negatives(n_items, histories, targets, p.sampled, rng)
    ranks = rank_targets(model, histories, targets, mask_history=p.mask_history, negatives=negatives,
                         progress=progress)
    out = {}
    for how, r in ranks.items():
        key = how if how == "full" else f"sampled{p.sampled}"
        out[key] = ranking_metrics(r, p.ks)
        out[f"{key}_cold"] = ranking_metrics(r[cold], p.ks)
    return out, ranks["full"]
