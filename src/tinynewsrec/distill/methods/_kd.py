"""What standard KD, Simplified TinyBERT and the two-step TinyBERT share (Chen et al., ECIR 2021;
Jiao et al., 2020), adapted to PLM-NR. Not a method (the name starts with ``_``).

Adaptation, where the originals classify one text:

- **Logits** are the student's click scores over a sample's 1 clicked + K non-clicked
  candidates; the **teacher's** come from its exported news embeddings and its frozen user
  encoder (``data/teacher_emb/teacher_<i>.safetensors``): computed once by
  ``export_teacher_emb``, never by a teacher forward pass during training. ``teachers: one``
  learns from ``student.teacher``; ``teachers: ensemble`` from all M teachers, their scores
  mixed per sample with Tiny-NewsRec's weights (softmax over teachers of minus each teacher's
  click CE on the sample, :func:`~tinynewsrec.distill.losses.teacher_weights`).
- **Hidden states and attention** are the news encoders' over each distinct news of the batch
  (each news once), from ``student.teacher`` (the ensemble option is for the prediction losses
  only: the M teachers' states would be M times the memory and compute).
- **Layer maps** (:func:`~tinynewsrec.distill.layer_map.tinybert_maps`): student state i
  (0 = embeddings) <- teacher state round(i T / S), student layer j's attention <- teacher
  layer round(j T / S), halves up; with T = k S these are TinyBERT's i k and (0-based) i k + k - 1.
- **Attention** is the pre-softmax score. The original adds BERT's padding mask and zeroes
  entries at or below -100 in both before an MSE over the whole padded (128-token) tensor;
  here padded keys AND queries are left out and the MSE is a mean over real token pairs (the
  same minimiser; a loss that does not depend on how far a batch is padded). Hidden-state
  MSEs are over real tokens likewise.
- ``fit_dense`` (a learned ``Linear(d_student, d_teacher)``) maps the student's states when the
  widths differ; here both are the same PLM's, so it is absent (as in the original when equal).
- The student starts from the raw PLM's first L layers like every student here (the
  originals start from a general-distilled TinyBERT, which has no MiniLM counterpart).

**Teacher states computed once** (:class:`TeacherStates`): the teacher is frozen, so its states
for a news never change during training. With ``cache_teacher: true`` (default) they are
computed the first time a news appears in a batch and kept in memory (``plm.cache_dtype``), so
each distinct news of the training samples costs one teacher pass per run instead of one per
batch it appears in; the memory is reserved for the distinct news of the training samples and
refused (the stage runs the teacher on every batch instead, and says so) when that exceeds
``teacher_cache_gb``. ``benchmarks/bench_kd_cache.py`` measures both ways. Under several
processes (``accelerate launch``) each process keeps its own copy for the news of its batches;
the teacher runs on the accelerator, the kept states live in host memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ...errors import DataError, ParamError
from ...params import above, at_least, choice

log = logging.getLogger("tinynewsrec")

TEACHERS = ("one", "ensemble")


def validate(params) -> None:
    """``student.teacher`` is one of ``teacher.ids``; these methods read their temperature and
    loss weights from their own section, so ``stage2.tau`` and ``stage2.ce_weight`` stay at
    their defaults (a value there would be silently ignored)."""
    s, ids, p = params.student, params.teacher.ids, params.stage2
    own = s.method
    if s.teacher not in ids:
        raise ParamError(f"params.yaml: student.teacher must be one of teacher.ids {ids}, got {s.teacher!r} "
                         f"(student.method {own} learns from that teacher)")
    if p.ce_weight is not None:
        raise ParamError(f"params.yaml: stage2.ce_weight must be null for student.method {own}, got {p.ce_weight!r}; "
                         f"its loss weights are in its own section ({own}.*_weight)")
    if p.tau != 1.0:
        raise ParamError(f"params.yaml: stage2.tau must stay 1.0 for student.method {own}, got {p.tau!r}; "
                         f"set {own}.temperature instead")


@dataclass(frozen=True)
class IntermediateKDParams:
    """The section of a method with intermediate-layer losses (``simplified_tinybert``; ``tinybert``
    changes the hard-label default): loss weights, temperature, teachers, the teacher-state cache."""

    attention_weight: float = at_least(0.0, 1.0)
    hidden_weight: float = at_least(0.0, 1.0)
    soft_weight: float = at_least(0.0, 1.0)
    hard_weight: float = at_least(0.0, 1.0)
    temperature: float = above(0.0, 1.0)
    #: the soft targets' teachers: one (student.teacher) or ensemble (all M, Tiny-NewsRec's weights)
    teachers: str = choice(*TEACHERS, default="one")
    #: the teacher's hidden states and attention computed once per news (true) or on every batch
    cache_teacher: bool = True
    #: more than this and the cache is refused (the teacher runs on every batch)
    teacher_cache_gb: float = above(0.0, 4.0)


# --- the teachers' click scores -----------------------------------------------------------------


def teacher_ids(params) -> list[int]:
    """Whose exported embeddings give the soft targets: ``student.teacher``, or all M (ensemble)."""
    return list(params.teacher.ids) if params.method.teachers == "ensemble" else [params.student.teacher]


def teacher_scorers(inputs):
    """The prediction-layer teachers: ``(news tables [M, n_slots, d], frozen user encoders, ids,
    collate_extra)``; the extra entry gives each batch ``teacher_news``, the tables' rows of its news."""
    from ...train.distill import read_teachers

    ids = teacher_ids(inputs.params)
    tables, users = read_teachers(inputs.paths, ids, ("news",), inputs.n_slots, user_encoders=True)
    tables = tables["news"]

    def extra(batch: dict) -> dict:
        return {"teacher_news": tables[:, batch["news_index"]]}

    return tables, users, ids, extra


# --- the teacher's per-news states, computed once -------------------------------------------------


def state_bytes(hidden_states: int, attention_layers: int, title_len: int, hidden: int, heads: int,
                itemsize: int) -> int:
    """Bytes the cache keeps per news: the kept hidden states [T, H] and attention scores [heads, T, T]."""
    return itemsize * title_len * (hidden_states * hidden + attention_layers * heads * title_len)


class TeacherStates:
    """The frozen teacher's hidden states (``states``, 0 = embeddings) and pre-softmax attention
    scores (``layers``, 1-based) of a batch's news, as lists indexed like
    :func:`~tinynewsrec.distill.students.encoder_states` returns them (None where not kept).

    ``pool``: every news the run can meet (the training samples' news). With ``cached``, a news
    is run through the teacher the first time it is asked for and kept (``dtype``, full
    ``title_len`` width, so any later padding of it is a slice); otherwise every batch runs the
    teacher. ``computed`` counts the news the teacher ran on.
    """

    def __init__(self, teacher, tokens, pool: np.ndarray, states: list[int], layers: list[int], title_len: int,
                 cached: bool = True, dtype=None):
        import torch

        self.teacher, self.tokens = teacher, tokens
        self.states, self.layers = sorted(set(states)), sorted(set(layers))
        self.title_len, self.cached = title_len, cached
        self.depth = teacher.plm.config.num_hidden_layers
        self.computed = 0
        self.pool = np.unique(np.asarray(pool, dtype=np.int64))
        cfg = teacher.plm.config
        if cached:
            dtype = dtype or torch.float16
            n, t = len(self.pool), title_len
            # torch.empty reserves without touching: memory grows only with the news actually met
            self.hidden = {s: torch.empty((n, t, cfg.hidden_size), dtype=dtype) for s in self.states}
            self.attention = {a: torch.empty((n, cfg.num_attention_heads, t, t), dtype=dtype) for a in self.layers}
            self.filled = np.zeros(n, dtype=bool)

    def _run(self, news_index: np.ndarray):
        """The teacher on these news: their padded tokens, hidden states and attention scores."""
        import torch

        from ..students import encoder_states

        news = self.tokens.batch(news_index)
        device = next(self.teacher.parameters()).device  # the accelerator's: the teacher runs where the student does
        with torch.no_grad():
            _, hidden, attention = encoder_states(self.teacher.news_encoder, {k: v.to(device) for k, v in news.items()},
                                                  self.layers)
        self.computed += len(news_index)
        return news, hidden, attention

    def batch(self, news_index) -> dict:
        """``{"hidden": [...], "attention": [...]}`` for ``news_index`` (the batch's distinct news),
        padded to the longest of them, as ``NewsTokens.batch`` pads the student's input."""
        idx = np.asarray(news_index, dtype=np.int64)
        if not self.cached:
            _, hidden, attention = self._run(idx)
            return {"hidden": hidden, "attention": attention}
        pos = np.searchsorted(self.pool, idx)
        if ((pos >= len(self.pool)) | (self.pool[np.minimum(pos, len(self.pool) - 1)] != idx)).any():
            raise DataError("a training batch holds a news outside the training samples; rerun the split stage")
        missing = ~self.filled[pos]
        if missing.any():
            self._fill(idx[missing], pos[missing])
        width = self.tokens.batch(idx)["attention_mask"].shape[1]
        hidden: list = [None] * (self.depth + 1)
        attention: list = [None] * self.depth
        rows = torch_index(pos)
        for s in self.states:
            hidden[s] = self.hidden[s][rows, :width].float()
        for a in self.layers:
            attention[a - 1] = self.attention[a][rows, :, :width, :width].float()
        return {"hidden": hidden, "attention": attention}

    def _fill(self, news_index: np.ndarray, pos: np.ndarray) -> None:
        import torch.nn.functional as F

        _, hidden, attention = self._run(news_index)
        rows = torch_index(pos)
        for s in self.states:
            h = hidden[s]
            h = F.pad(h, (0, 0, 0, self.title_len - h.shape[1]))
            self.hidden[s][rows] = h.to(device="cpu", dtype=self.hidden[s].dtype)
        for a in self.layers:
            att = attention[a - 1]
            pad = self.title_len - att.shape[-1]
            self.attention[a][rows] = F.pad(att, (0, pad, 0, pad)).to(device="cpu", dtype=self.attention[a].dtype)
        self.filled[pos] = True

    @property
    def kept_bytes(self) -> int:
        """Bytes of the states kept so far (news met x bytes per news)."""
        if not self.cached:
            return 0
        per = sum(t[0].numel() * t.element_size() for t in [*self.hidden.values(), *self.attention.values()])
        return int(self.filled.sum()) * per


def torch_index(pos: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(pos, dtype=np.int64))


def training_news(samples) -> np.ndarray:
    """Every news of the training samples (histories and candidates), distinct, sorted."""
    from ...models.cache import ragged_parts

    h, _ = ragged_parts(samples.column("history"))
    c, _ = ragged_parts(samples.column("candidates"))
    every = np.concatenate([np.asarray(h, dtype=np.int64), np.asarray(c, dtype=np.int64)])
    return np.unique(every[every > 0])


def teacher_states(inputs, samples, at, hidden_pairs, attention_pairs):
    """``student.teacher`` (``at``, a :class:`~tinynewsrec.distill.methods._one_teacher.OneTeacher`)
    loaded frozen and its :class:`TeacherStates` for the matched states and layers; plus what
    config.json records about them and a report of the cache's use after training."""
    import torch

    from ...models.plmnr import NewsTokens, PLMNR

    params, own = inputs.params, inputs.params.method
    teacher = PLMNR.from_pretrained(at.folder, trainable_layers=0)
    for p in teacher.parameters():
        p.requires_grad_(False)
    teacher.eval().to(inputs.accelerator.device)  # the kept states live in host memory, one copy per process
    tokens = NewsTokens(inputs.tokens, "title_ids", max_len=params.plm.title_len)
    pool = training_news(samples)
    cfg = teacher.plm.config
    dtype = torch.float16 if params.plm.cache_dtype == "float16" else torch.float32
    per_news = state_bytes(len({t for _, t in hidden_pairs}), len({t for _, t in attention_pairs}),
                           params.plm.title_len, cfg.hidden_size, cfg.num_attention_heads, dtype.itemsize)
    need = per_news * len(pool)
    cached = own.cache_teacher
    if cached and need > own.teacher_cache_gb * 2**30:
        log.info("%s: the teacher's states of %s news would take %.2f GB, more than %s.teacher_cache_gb (%s); "
                 "the teacher runs on every batch instead", params.student.method, f"{len(pool):,}", need / 2**30,
                 params.student.method, own.teacher_cache_gb)
        cached = False
    states = TeacherStates(teacher, tokens, pool, [t for _, t in hidden_pairs], [t for _, t in attention_pairs],
                           params.plm.title_len, cached=cached, dtype=dtype)
    if inputs.accelerator.is_main_process:
        how = (f"computed once per news and kept ({params.plm.cache_dtype}, up to {need / 2**20:,.0f} MiB for "
               f"{len(pool):,} news)" if cached else "computed on every batch")
        log.info("%s: teacher_%d's hidden states %s and attention of layers %s, %s", params.student.method,
                 at.teacher_id, [t for _, t in hidden_pairs], [t for _, t in attention_pairs], how)
    info = {"teacher": at.teacher_id, "hidden_map": [list(x) for x in hidden_pairs],
            "attention_map": [list(x) for x in attention_pairs], "teacher_cache": cached,
            "teacher_cache_mib_max": round(need / 2**20, 1)}

    def report() -> dict:
        return {"teacher_news_computed": states.computed, "teacher_cache_mib": round(states.kept_bytes / 2**20, 1)}

    return states, info, report


# --- the training module -------------------------------------------------------------------------


@dataclass(frozen=True)
class Weights:
    """Loss weights: attention MSE, hidden-state MSE, soft CE, hard-label CE."""

    attention: float = 0.0
    hidden: float = 0.0
    soft: float = 0.0
    hard: float = 0.0

    @property
    def intermediate(self) -> bool:
        return self.attention > 0 or self.hidden > 0

    @property
    def prediction(self) -> bool:
        return self.soft > 0 or self.hard > 0


def build_module(student, weights: Weights, temperature: float = 1.0, user_encoders=None, teacher_dim: int = 0,
                 hidden_pairs=(), attention_pairs=(), teacher_hidden: int | None = None):
    """The :class:`~tinynewsrec.distill.students.KDStudent` for these weights."""
    from ..students import KDStudent

    return KDStudent(student, weights.attention, weights.hidden, weights.soft, weights.hard, temperature,
                     user_encoders=user_encoders, hidden_pairs=hidden_pairs, attention_pairs=attention_pairs,
                     teacher_hidden=teacher_hidden)


def stage_weights(weights: Weights, method_name: str) -> Weights:
    if not (weights.intermediate or weights.prediction):
        raise ParamError(f"params.yaml: every loss weight of {method_name} is 0, so its student would learn nothing")
    return weights
