"""The student models: a PLM-NR whose PLM is the first L layers of the teachers' PLM, and
the training modules that wrap it with what each method learns from.

Every wrapper's ``forward(batch)`` returns ``(loss, parts)``: the loss is computed inside
``forward`` so that a ``DistributedDataParallel`` wrapper (``accelerate launch``) sees every
trained weight, the learned projections P_i included, in its forward pass.

- :class:`Stage1Student` - Tiny-NewsRec stage 1 (title-body matching, M teachers' title and
  body embeddings, :func:`~tinynewsrec.distill.losses.stage1_loss`);
- :class:`Stage2Student` - Tiny-NewsRec stage 2 (M teachers' news embeddings and frozen user
  encoders, :func:`~tinynewsrec.distill.losses.stage2_loss`), or with no teacher at all the
  ``no_kd`` baseline (click CE only);
- :class:`LastLayersKDStudent` - one frozen teacher; hidden states and pre-softmax attention
  scores of the last k matched layers (:func:`~tinynewsrec.distill.losses.last_layers_kd_loss`);
- :class:`NewsBERTPair` - teacher and student trained together, sharing the pooling, dense
  and user heads (:func:`~tinynewsrec.distill.losses.newsbert_loss`; the training loop adds
  the momentum distillation of gradients after clipping, right before the optimiser step).

Each method module of :mod:`tinynewsrec.distill.methods` builds one of these.

Batches are PLM-NR's unique-news batches (:func:`~tinynewsrec.models.plmnr.collate_train`):
the student reads ``news_tokens`` (token ids: all its layers train, only its embeddings are
frozen); a teacher that runs reads ``teacher_states`` (the shared frozen-layer cache, or token
ids when the matched layers lie below it); precomputed teacher embeddings come as
``teacher_news`` ``[M, U, d_t]`` aligned with the batch's distinct news.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import DataError
from ..models.plm import KeepFrozenInEval, load_plm, run_layers
from ..models.plmnr import PLMNR, NewsEncoder, PLMNRConfig, UserEncoder, click_scores
from .losses import click_ce, dot_scores, last_layers_kd_loss, newsbert_loss, stage1_loss, stage2_loss


def build_student(plm_name: str, layers: int, news_dim: int, seed: int) -> PLMNR:
    """A fresh student: the PLM's first ``layers`` layers (all trainable, embeddings frozen)
    and new heads initialised with ``seed``."""
    plm = load_plm(plm_name, num_layers=layers, trainable_layers=layers, layers_key="student.layers")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PLMNR(plm, PLMNRConfig(news_dim=news_dim))


def _accuracy(scores: Tensor) -> float:
    """Share of samples whose click (candidate 0) scores highest."""
    return (scores.detach().argmax(dim=-1) == 0).float().mean().item()


def _projections(num: int, d_teacher: int, d_student: int) -> nn.ModuleList:
    """M learned maps P_i: teacher space -> student space (``nn.Linear``, default init as the original code)."""
    return nn.ModuleList(nn.Linear(d_teacher, d_student) for _ in range(num))


def _freeze(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


# --- a news encoder's per-layer states ------------------------------------------------------


def attention_scores(layer, hidden: Tensor) -> Tensor:
    """Pre-softmax attention scores of a BERT layer on its input ``hidden`` [N, T, H]:
    ``Q K^T / sqrt(d_head)`` per head, [N, heads, T, T], without the padding mask (the
    distillation loss masks padded tokens itself)."""
    attn = layer.attention.self
    n, t, _ = hidden.shape
    size = attn.attention_head_size
    q = attn.query(hidden).view(n, t, -1, size).transpose(1, 2)
    k = attn.key(hidden).view(n, t, -1, size).transpose(1, 2)
    return torch.matmul(q, k.transpose(-1, -2)) * size**-0.5


def encoder_states(
    news_encoder: NewsEncoder, news: dict, attention_layers: Sequence[int] = ()
) -> tuple[Tensor, list[Tensor | None], list[Tensor | None]]:
    """Run ``news_encoder`` keeping each layer's output (what layer-wise distillation matches).

    ``news``: ``{"input_ids", "attention_mask"}`` or cached ``{"hidden_states",
    "attention_mask", "start_layer"}``. Returns ``(news embeddings [N, d], hidden, attention)``
    where ``hidden[j]`` is the output of layer j (0 = embeddings; None below a cache's start)
    and ``attention[j - 1]`` layer j's pre-softmax scores for j in ``attention_layers`` (None
    otherwise). The frozen bottom runs without autograd, as in :class:`NewsEncoder`.
    """
    plm = news_encoder.plm
    layers = plm.encoder.layer
    depth, frozen = len(layers), news_encoder.num_frozen_layers
    mask = news["attention_mask"]
    hidden: list[Tensor | None] = [None] * (depth + 1)
    attention: list[Tensor | None] = [None] * depth
    if "input_ids" in news:
        with torch.no_grad() if frozen >= 0 else contextlib.nullcontext():
            h = plm.embeddings(input_ids=news["input_ids"])
        start = 0
    else:
        h, start = news["hidden_states"].to(dtype=next(news_encoder.dense.parameters()).dtype), int(news["start_layer"])
        if start > frozen:
            raise DataError(f"cached states start after layer {start}, but layer {frozen + 1} of this model trains")
    hidden[start] = h
    wanted = set(attention_layers)
    for i in range(start, depth):
        with torch.no_grad() if i < frozen else contextlib.nullcontext():
            if i + 1 in wanted:
                attention[i] = attention_scores(layers[i], h)
            h = run_layers(plm, h, mask, i, i + 1)
        hidden[i + 1] = h
    return news_encoder.dense(news_encoder.pooling(h, mask)), hidden, attention


def _check_available(states: list, pairs: Sequence[int], what: str) -> None:
    missing = [t for t in pairs if states[t] is None]
    if missing:
        raise DataError(f"the teacher's {what} of layer(s) {missing} are not computed (below its frozen-layer cache)")


# --- Tiny-NewsRec ----------------------------------------------------------------------------


class Stage1Student(nn.Module):
    """Stage 1: the student's news encoder on title-body matching, distilled from M post-trained
    teachers' title and body embeddings. Batch: a title-body batch (``titles``, ``bodies``,
    ``candidates`` as :class:`~tinynewsrec.train.post_train.TitleBodyBatches` builds it) plus
    ``teacher_titles`` ``[M, B, C, d_t]`` and ``teacher_bodies`` ``[M, B, d_t]``."""

    def __init__(self, student: PLMNR, num_teachers: int, teacher_dim: int, tau: float = 1.0):
        super().__init__()
        self.student = student
        self.projections = _projections(num_teachers, teacher_dim, student.config.news_dim)
        self.tau = tau

    def forward(self, batch: dict) -> tuple[Tensor, dict[str, float]]:
        titles = self.student.news_encoder(batch["titles"])  # each distinct title once
        bodies = self.student.news_encoder(batch["bodies"])
        cand = titles[batch["candidates"]]
        scores = dot_scores(cand, bodies)
        loss, parts = stage1_loss(scores, cand, bodies, batch["teacher_titles"], batch["teacher_bodies"],
                                  self.projections, self.tau)
        return loss, {**parts, "accuracy": _accuracy(scores)}


class Stage2Student(KeepFrozenInEval):
    """Stage 2 (``user_encoders`` given: the M teachers' frozen user encoders) or the
    ``no_kd`` baseline (``user_encoders=None``: click CE only, no teacher).

    Batch: a unique-news batch with ``news_tokens`` and, for stage 2, ``teacher_news``
    ``[M, U, d_t]`` (teacher i's embedding of each distinct news of the batch)."""

    def __init__(self, student: PLMNR, user_encoders: Sequence[UserEncoder] | None = None, teacher_dim: int = 0,
                 tau: float = 1.0, ce_weight: float = 0.2):
        super().__init__()
        self.student = student
        self.distill = user_encoders is not None
        if self.distill:
            self.teacher_users = nn.ModuleList(_freeze(u) for u in user_encoders)
            self.projections = _projections(len(user_encoders), teacher_dim, student.config.news_dim)
        self.tau, self.ce_weight = tau, ce_weight

    def frozen_modules(self) -> list[nn.Module]:
        return [self.teacher_users] if self.distill else []

    def forward(self, batch: dict) -> tuple[Tensor, dict[str, float]]:
        vecs = self.student.news_encoder(batch["news_tokens"])
        hist, cand, mask = vecs[batch["history"]], vecs[batch["candidates"]], batch["history_mask"]
        users = self.student.user_encoder(hist, mask)
        scores = click_scores(users, cand)
        if not self.distill:
            return click_ce(scores), {"accuracy": _accuracy(scores)}
        teacher = batch["teacher_news"]
        t_hist, t_cand = teacher[:, batch["history"]], teacher[:, batch["candidates"]]
        with torch.no_grad():
            t_user = torch.stack([ue(t_hist[i], mask) for i, ue in enumerate(self.teacher_users)])
        loss, parts = stage2_loss(scores, hist, cand, users, t_hist, t_cand, t_user, self.projections,
                                  history_mask=mask, tau=self.tau, ce_weight=self.ce_weight)
        return loss, {**parts, "accuracy": _accuracy(scores)}


# --- baselines ---------------------------------------------------------------------------------


def _scores(model: PLMNR, vecs: Tensor, batch: dict) -> tuple[Tensor, Tensor]:
    users = model.user_encoder(vecs[batch["history"]], batch["history_mask"])
    return click_scores(users, vecs[batch["candidates"]]), users


class LastLayersKDStudent(KeepFrozenInEval):
    """Last-k layer KD: the student's matched layers learn the frozen teacher's hidden states
    and pre-softmax attention scores (TinyBERT's intermediate-layer losses, without its
    embedding-layer loss and its general distillation step), and its click scores the
    teacher's (KD CE + ``ce_weight`` CE). ``layer_map``: ``(student_layer, teacher_layer)`` pairs. Batch: ``news_tokens`` for
    the student, ``teacher_states`` (cache or tokens) for the teacher, same news, same padding."""

    def __init__(self, student: PLMNR, teacher: PLMNR, layer_map: Sequence[tuple[int, int]], tau: float = 1.0,
                 ce_weight: float = 0.1):
        super().__init__()
        self.student, self.teacher = student, _freeze(teacher)
        self.layer_map = [tuple(p) for p in layer_map]
        d_s, d_t = student.plm.config.hidden_size, teacher.plm.config.hidden_size
        self.projection = None if d_s == d_t else nn.Linear(d_s, d_t)  # TinyBERT's W_h
        self.tau, self.ce_weight = tau, ce_weight

    def frozen_modules(self) -> list[nn.Module]:
        return [self.teacher]

    def forward(self, batch: dict) -> tuple[Tensor, dict[str, float]]:
        s_layers = [j for j, _ in self.layer_map]
        t_layers = [t for _, t in self.layer_map]
        s_vecs, s_hidden, s_attn = encoder_states(self.student.news_encoder, batch["news_tokens"], s_layers)
        with torch.no_grad():
            t_vecs, t_hidden, t_attn = encoder_states(self.teacher.news_encoder, batch["teacher_states"], t_layers)
            t_scores, _ = _scores(self.teacher, t_vecs, batch)
        _check_available(t_hidden, t_layers, "hidden states")
        _check_available(t_attn, [t - 1 for t in t_layers], "attention scores")
        s_scores, _ = _scores(self.student, s_vecs, batch)
        loss, parts = last_layers_kd_loss(s_scores, t_scores, s_hidden, t_hidden, s_attn, t_attn, self.layer_map,
                                    token_mask=batch["news_tokens"]["attention_mask"], projection=self.projection,
                                    tau=self.tau, ce_weight=self.ce_weight)
        return loss, {**parts, "accuracy": _accuracy(s_scores)}


class NewsBERTPair(nn.Module):
    """NewsBERT: teacher (top layers trainable) and student trained together; the student
    SHARES the teacher's attention pooling, dense layer and user encoder (the same modules).
    Batch: ``news_tokens`` (student) and ``teacher_states`` (teacher), same news and padding.
    The loop applies the momentum distillation of gradients (see
    :func:`~tinynewsrec.distill.losses.momentum_distill_grads`) after gradient clipping, right
    before each optimiser step."""

    def __init__(self, student: PLMNR, teacher: PLMNR, layer_map: Sequence[tuple[int, int]], tau: float = 1.0,
                 ce_weight: float = 0.1):
        super().__init__()
        if student.plm.config.hidden_size != teacher.plm.config.hidden_size:
            raise DataError(f"NewsBERT shares heads, so the student's hidden size ({student.plm.config.hidden_size}) "
                            f"must be the teacher's ({teacher.plm.config.hidden_size})")
        student.config = teacher.config  # the shared heads' sizes
        student.news_encoder.pooling = teacher.news_encoder.pooling
        student.news_encoder.dense = teacher.news_encoder.dense
        student.user_encoder = teacher.user_encoder
        self.student, self.teacher = student, teacher
        self.layer_map = [tuple(p) for p in layer_map]
        self.tau, self.ce_weight = tau, ce_weight

    def forward(self, batch: dict) -> tuple[Tensor, dict[str, float]]:
        s_vecs, s_hidden, _ = encoder_states(self.student.news_encoder, batch["news_tokens"])
        t_vecs, t_hidden, _ = encoder_states(self.teacher.news_encoder, batch["teacher_states"])
        _check_available(t_hidden, [t for _, t in self.layer_map], "hidden states")
        s_scores, s_users = _scores(self.student, s_vecs, batch)
        t_scores, t_users = _scores(self.teacher, t_vecs, batch)
        loss, parts = newsbert_loss(s_scores, t_scores, s_hidden, t_hidden, self.layer_map, s_vecs, t_vecs, s_users,
                                    t_users, token_mask=batch["news_tokens"]["attention_mask"], tau=self.tau,
                                    ce_weight=self.ce_weight)
        return loss, {**parts, "accuracy": _accuracy(s_scores), "teacher_accuracy": _accuracy(t_scores)}


class KDStudent(KeepFrozenInEval):
    """Standard KD, Simplified TinyBERT and both steps of TinyBERT (methods ``standard_kd``,
    ``simplified_tinybert``, ``tinybert``; :mod:`tinynewsrec.distill.methods._kd`).

    loss = w_att sum_(j,t) MSE(A^S_j, A^T_t) + w_hid sum_(i,t) MSE(fit(h^S_i), h^T_t)
         + w_soft softCE(s^T / T, s^S / T) + w_hard CE(s^S, y)

    over the batch's distinct news (hidden states and pre-softmax attention, real tokens only)
    and its samples' click scores. A weight of 0 skips its term; with both intermediate weights 0
    the teacher's states are not read, with both prediction weights 0 the scores are not computed
    (TinyBERT's step 1). Batch: ``news_tokens``; ``teacher_states`` (``{"hidden", "attention"}``
    lists, :class:`~tinynewsrec.distill.methods._kd.TeacherStates`) for the intermediate terms;
    ``teacher_news`` ``[M, U, d]`` (exported embeddings) for the soft term, scored by the M frozen
    ``user_encoders``; with M > 1 the teachers' scores are mixed per sample with Tiny-NewsRec's
    weights (:func:`~tinynewsrec.distill.losses.teacher_weights`).
    """

    def __init__(self, student: PLMNR, w_attention: float, w_hidden: float, w_soft: float, w_hard: float,
                 temperature: float = 1.0, user_encoders: Sequence[UserEncoder] | None = None,
                 hidden_pairs: Sequence[tuple[int, int]] = (), attention_pairs: Sequence[tuple[int, int]] = (),
                 teacher_hidden: int | None = None):
        super().__init__()
        self.student = student
        self.w = {"attention": w_attention, "hidden": w_hidden, "soft": w_soft, "hard": w_hard}
        self.temperature = temperature
        self.hidden_pairs = [tuple(p) for p in hidden_pairs]
        self.attention_pairs = [tuple(p) for p in attention_pairs]
        self.intermediate = w_attention > 0 or w_hidden > 0
        self.prediction = w_soft > 0 or w_hard > 0
        self.teacher_users = nn.ModuleList(_freeze(u) for u in (user_encoders or []))
        if w_soft > 0 and not user_encoders:
            raise ValueError("the soft-label loss needs the teachers' user encoders")
        d_s = student.plm.config.hidden_size
        # Simplified TinyBERT's fit_dense, only when the widths differ
        self.fit_dense = nn.Linear(d_s, teacher_hidden) if self.intermediate and teacher_hidden not in (None, d_s) \
            else None

    def frozen_modules(self) -> list[nn.Module]:
        return [self.teacher_users]

    def teacher_scores(self, batch: dict) -> Tensor:
        """The teachers' click scores [B, C] (mixed per sample when there are several)."""
        from .losses import teacher_weights, weighted_teacher_scores

        teacher, mask = batch["teacher_news"], batch["history_mask"]
        with torch.no_grad():
            scores = torch.stack([click_scores(ue(teacher[i][batch["history"]], mask), teacher[i][batch["candidates"]])
                                  for i, ue in enumerate(self.teacher_users)])
            if len(self.teacher_users) == 1:
                return scores[0]
            return weighted_teacher_scores(scores, teacher_weights(scores))

    def forward(self, batch: dict) -> tuple[Tensor, dict[str, float]]:
        from .losses import attention_mse, hidden_mse, soft_ce

        tokens = batch["news_tokens"]
        parts: dict[str, float] = {}
        total = None

        def add(name: str, value: Tensor) -> None:
            nonlocal total
            parts[name] = value.item()
            term = self.w[name.split("_")[0]] * value
            total = term if total is None else total + term

        if self.intermediate:
            vecs, s_hidden, s_attn = encoder_states(self.student.news_encoder, tokens,
                                                    [j for j, _ in self.attention_pairs])
            t = batch["teacher_states"]
            mask = tokens["attention_mask"]
            if self.w["attention"] > 0:
                add("attention_mse", attention_mse(s_attn, t["attention"], self.attention_pairs, mask))
            if self.w["hidden"] > 0:
                add("hidden_mse", hidden_mse(s_hidden, t["hidden"], self.hidden_pairs, self.fit_dense, mask))
        else:
            vecs = self.student.news_encoder(tokens)
        if self.prediction:
            scores, _ = _scores(self.student, vecs, batch)
            if self.w["soft"] > 0:
                add("soft_ce", soft_ce(self.teacher_scores(batch), scores, self.temperature))
            if self.w["hard"] > 0:
                add("hard_ce", click_ce(scores))
            parts["accuracy"] = _accuracy(scores)
        parts["total"] = total.item()
        return total, parts


class HSKStudent(nn.Module):
    """Hidden-state-knowledge distillation (methods ``hsk``, ``rosita``; stage 1):

    loss = sum over pairs (s, t) of MSE(h^S_s, compressed h^T_t), over the kept entries only
    (:func:`~tinynewsrec.distill.hsk.hsk_loss`; ``dims`` the static hidden dims, None when the
    batch's ``hsk`` carries a per-entry ``keep`` mask). Batch: ``news_tokens`` and ``hsk``
    (:func:`~tinynewsrec.distill.hsk.compress`'s dict of those news, from the store or the
    teacher online). The student's heads are not used (its news vectors are not scored here).
    """

    def __init__(self, student: PLMNR, pairs: Sequence[tuple[int, int]], dims: Tensor | None = None):
        super().__init__()
        self.student = student
        self.pairs = [tuple(p) for p in pairs]
        self.dims = dims

    def forward(self, batch: dict) -> tuple[Tensor, dict[str, float]]:
        from .hsk import hsk_loss

        _, states, _ = encoder_states(self.student.news_encoder, batch["news_tokens"])
        loss = hsk_loss(states, batch["hsk"], self.pairs, self.dims)
        return loss, {"hsk_mse": loss.item(), "total": loss.item()}
