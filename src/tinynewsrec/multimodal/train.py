"""Training the multimodal rows (the train_multimodal stage): a two-tower model or the re-ranker on
the frozen text / image vector tables.

Data: data/samples/train.parquet (``history`` = the user's last ``data.history_len`` clicks, oldest
first; ``candidates`` = [the click, K non-clicks of the same impression], so the target is index 0),
of which a sample keeps the last ``multimodal.history_len`` clicks. Each step gathers the DISTINCT
news of its batch once, looks up their rows of the frozen tables (:class:`NewsTables`) and runs
the model's news encoder on them; only the fusion, user encoder and Transformer weights train
(the tables are plain tensors, not parameters).

Losses (logits [B, 1 + K], column 0 = the click):

- two-tower: CE(s, 0) = -log softmax(s)_0 (PLM-NR's);
- re-ranker, ``reranker.objective``: ``pointwise`` = mean over the B x (1 + K) pairs of
  BCE(sigmoid(s_bj), y_bj) with y = [1, 0, ..., 0] (the original's click / no-click loss);
  ``listwise`` = CE(s, 0) over the 1 + K logits, each still scored with the history alone.

Every row runs :func:`tinynewsrec.train.loop.fit` (Accelerate) with AdamW at ``multimodal.lr``, the
same batches (``multimodal.seed``) and, per model kind, the same initial weights where the modality
allows (``torch.manual_seed(multimodal.seed)`` right before the model is built), so the rows of
one model differ only in what their news encoder sees.

Cost, per epoch: the mean loss, the median seconds per training step (wall time from one step's
start to the next one's: the forward, backward and optimizer step plus the next batch's
collate; the last step of an epoch is not counted) and the process's peak RSS so far
(``ru_maxrss``).
"""

from __future__ import annotations

import logging
import resource
import time

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

from ..errors import DataError
from .fusion import NewsEncoderConfig
from .reranker import Reranker, RerankerConfig
from .two_tower import MultimodalNR, MultimodalNRConfig

log = logging.getLogger("tinynewsrec")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class NewsTables:
    """The frozen vector tables a news encoder reads, by news_index: ``text`` [n, Dt], ``image``
    [n, Di] and ``image_present`` [n] bool (any of them None when the modality does not read it)."""

    def __init__(self, text: torch.Tensor | None = None, image: torch.Tensor | None = None,
                 image_present: torch.Tensor | None = None):
        sizes = {len(t) for t in (text, image, image_present) if t is not None}
        if len(sizes) > 1:
            raise DataError(f"the text and image tables have different numbers of rows ({sorted(sizes)}); "
                            "rerun the stage that wrote the stale one")
        self.text, self.image, self.image_present = text, image, image_present

    def lookup(self, news_index: torch.Tensor) -> dict:
        """The news dict :class:`~tinynewsrec.multimodal.fusion.MultimodalNewsEncoder` reads."""
        out = {}
        if self.text is not None:
            out["text"] = self.text[news_index]
        if self.image is not None:
            out["image"] = self.image[news_index]
            if self.image_present is not None:
                out["image_present"] = self.image_present[news_index]
        return out


def news_config(modality: str, fusion: str, text_dim: int, image_dim: int, dim: int) -> NewsEncoderConfig:
    return NewsEncoderConfig(modality=modality, fusion=fusion, text_dim=text_dim, image_dim=image_dim, dim=dim)


def build_model(model: str, news: NewsEncoderConfig, mm, seed: int):
    """A new ``two_tower`` (:class:`MultimodalNR`) or ``reranker`` (:class:`Reranker`, sized by
    ``mm.reranker``) with ``torch.manual_seed(seed)`` right before it is built."""
    torch.manual_seed(seed)
    if model == "two_tower":
        return MultimodalNR(MultimodalNRConfig(news=news))
    if model == "reranker":
        r = mm.reranker
        return Reranker(RerankerConfig(news=news, layers=r.layers, heads=r.heads, ffn=r.ffn, dropout=r.dropout,
                                       history_len=mm.multimodal.history_len))
    raise ValueError(f"unknown multimodal model {model!r}")


def collate(histories: list, candidates: list, rows: list[int], tables: NewsTables, history_len: int) -> dict:
    """The unique-news batch of samples ``rows`` (:class:`~tinynewsrec.multimodal.fusion.MultimodalRecommender`):
    histories keep their last ``history_len`` clicks, left-aligned and zero-padded (the models
    place them themselves); candidates are [click, non-clicks] as stored."""
    hist = [np.asarray(histories[i][-history_len:], dtype=np.int64) for i in rows]
    cand = [np.asarray(candidates[i], dtype=np.int64) for i in rows]
    if len({len(c) for c in cand}) > 1:
        raise DataError("training samples with different numbers of candidates: rerun split")
    width = max(1, max(len(h) for h in hist))
    h = np.zeros((len(rows), width), dtype=np.int64)
    for r, x in enumerate(hist):
        h[r, : len(x)] = x
    c = np.stack(cand)
    ids, inverse = np.unique(np.concatenate([h.ravel(), c.ravel()]), return_inverse=True)
    inverse = torch.from_numpy(inverse.astype(np.int64))
    return {
        "news": tables.lookup(torch.from_numpy(ids)),
        "history": inverse[: h.size].view(h.shape),
        "history_mask": torch.from_numpy(h > 0),
        "candidates": inverse[h.size :].view(c.shape),
    }


def click_loss(logits: torch.Tensor, objective: str) -> torch.Tensor:
    """The loss of logits [B, 1 + K] whose column 0 is the click (module docstring)."""
    if objective == "pointwise":
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(logits, labels)
    if objective == "listwise":
        return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))
    raise ValueError(f"unknown objective {objective!r}")


def batch_to(batch: dict, device) -> dict:
    out = {k: v.to(device) for k, v in batch.items() if k != "news"}
    out["news"] = {k: v.to(device) for k, v in batch["news"].items()}
    return out


class StepClock:
    """Wall time between consecutive training steps, per epoch (module docstring)."""

    def __init__(self):
        self.last: float | None = None
        self.steps = 0  # steps started this epoch
        self.epoch: list[float] = []
        self.per_epoch: list[list[float]] = []

    def tick(self) -> None:
        now = time.perf_counter()
        if self.last is not None:
            self.epoch.append(now - self.last)
        self.last = now
        self.steps += 1

    def end_epoch(self) -> tuple[int, list[float]]:
        """(steps, seconds between consecutive steps) of the epoch that ended."""
        done, steps = self.epoch, self.steps
        self.epoch, self.last, self.steps = [], None, 0
        self.per_epoch.append(done)
        return steps, done


def fit_multimodal(model, samples: pa.Table, tables: NewsTables, mm, objective: str, accelerator, name: str) -> dict:
    """Train ``model`` (module docstring); returns ``{"curve": [{"epoch", "loss", "s_per_step",
    "steps", "peak_rss_mib"}, ...], "s_per_step": median over all epochs, "steps": optimizer steps}``."""
    from ..train.loop import LoopConfig, fit

    p = mm.multimodal
    cfg = LoopConfig(epochs=p.epochs, batch_size=p.batch_size, seed=p.seed,
                     max_steps_per_epoch=p.max_steps_per_epoch, name=name)
    optimizer = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=p.lr)
    prepared, optimizer = accelerator.prepare(model, optimizer)
    histories, candidates = samples.column("history").to_pylist(), samples.column("candidates").to_pylist()
    clock = StepClock()
    curve: list[dict] = []

    def collate_rows(rows: list[int]) -> dict:
        return collate(histories, candidates, rows, tables, p.history_len)

    def step(m, batch):
        clock.tick()
        return click_loss(m(batch_to(batch, accelerator.device)), objective), {}

    def epoch_end(epoch: int) -> None:
        steps, times = clock.end_epoch()
        curve.append({"epoch": epoch, "steps": steps,
                      "s_per_step": round(float(np.median(times)), 5) if times else None,
                      "peak_rss_mib": round(peak_rss_mib(), 1)})

    result = fit(accelerator, prepared, optimizer, samples.num_rows, collate_rows, step, cfg, on_epoch_end=epoch_end)
    for point, h in zip(curve, result["history"]):
        point["loss"] = h["loss"]
    every = [t for times in clock.per_epoch for t in times]
    return {"curve": curve, "s_per_step": round(float(np.median(every)), 5) if every else None,
            "steps": sum(point["steps"] for point in curve)}


def row_key(argv: list[str], mm) -> tuple[str, str]:
    """``(model, modality)`` of ``train_multimodal@<model>-<modality>`` (split on the first ``-``:
    ``text_image`` holds an underscore, no dash), each checked against the params' matrix."""
    from ..errors import ParamError
    from ..stage import stage_key

    p = mm.multimodal
    usage = (f"usage: python stages/train_multimodal.py <model>-<modality>, with model one of multimodal.models "
             f"({', '.join(p.models)}) and modality one of multimodal.modalities ({', '.join(p.modalities)})")
    model, _, modality = stage_key(argv, usage).partition("-")
    if model not in p.models:
        raise ParamError(f"{usage}; model {model!r} is not in multimodal.models")
    if modality not in p.modalities:
        raise ParamError(f"{usage}; modality {modality!r} is not in multimodal.modalities")
    return model, modality
