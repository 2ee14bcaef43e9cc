"""Training and distillation losses: Tiny-NewsRec stages 1 and 2, last-k layer KD, NewsBERT.

Small pure functions of tensors; the formula of each is in its docstring. Conventions:

- B samples in a batch, C = 1 + K candidates per sample, M teachers, d embedding size.
- Scores are logits over the candidates of a sample, ``[B, C]``. By the data schema
  the clicked candidate is at index 0 (``target = 0``); an explicit ``[B]`` tensor of
  indices is accepted everywhere a target is.
- Every loss is a mean over samples. Where an input has padded positions (history
  slots, tokens) a mask (``True``/1 = real, ``False``/0 = padding) removes them: a
  sample's error is the mean over its real positions, and a sample with no real
  position at all is left out of the batch mean.
- Teachers are targets, never trained by these losses: every teacher tensor is
  detached inside (the learned projections P_i still get their gradient).
- Composite losses return ``(total, parts)``: the tensor to backpropagate and a dict
  of plain floats for logging.

Design decisions where the paper and DESIGN.md are silent:

- soft CE is not multiplied by tau^2 (Hinton et al. do, to keep gradient scales equal
  across temperatures). The original Tiny-NewsRec code does not, and tau = 1 by
  default, where both agree. With tau != 1 the KD gradient is 1/tau^2 of Hinton's.
- Tiny-NewsRec's P_i maps a teacher embedding into the student's space,
  ``MSE(student, P_i teacher)``, as DESIGN.md and the original code have it
  (``nn.Linear(d_teacher, d_student)``). Last-k layer KD's W_h maps the student's hidden
  state into the teacher's space, as in the TinyBERT paper (``nn.Linear(d_student,
  d_teacher)``); with the teacher fixed this cannot shrink to a trivial zero match.
- Embedding MSEs skip padded history slots and tokens (the original code averaged
  them in).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ParamError

Target = int | Tensor
Projection = Callable[[Tensor], Tensor]

#: a pre-softmax attention score at or below this is an additive padding mask
#: (BERT adds -1e4, newer code the dtype's minimum or -inf), not a learned score
MASKED_SCORE = -1e3


# ---------------------------------------------------------------- building blocks


def _target(scores: Tensor, target: Target) -> Tensor:
    """The clicked candidate's index per sample, ``[B]`` long."""
    if isinstance(target, Tensor):
        target = target.to(device=scores.device, dtype=torch.long)
        if target.shape != scores.shape[:1]:
            raise ValueError(f"target has shape {tuple(target.shape)}, expected ({scores.shape[0]},)")
        return target
    return torch.full(scores.shape[:1], int(target), dtype=torch.long, device=scores.device)


def _stack(tensors: Tensor | Sequence[Tensor]) -> Tensor:
    """M per-teacher tensors as one ``[M, ...]`` tensor (a tensor passes through)."""
    return tensors if isinstance(tensors, Tensor) else torch.stack(list(tensors))


def _per_sample_mse(student: Tensor, teacher: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Per-sample mean squared error over real positions and features.

    ``student``, ``teacher``: ``[B, ..., d]``; ``mask``: ``[B, ...]`` or None.
    Returns the error ``[B]`` and which samples have a real position ``[B]`` (bool).
    Padded positions are excluded with ``where`` (not a multiplication), so inf or NaN
    values there change neither the loss nor the gradient.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student has shape {tuple(student.shape)} but teacher {tuple(teacher.shape)}")
    batch, dim = student.shape[0], student.shape[-1]
    if mask is None:
        err = (student - teacher).pow(2).reshape(batch, -1).mean(dim=1)
        return err, torch.ones(batch, dtype=torch.bool, device=student.device)
    mask = mask.to(device=student.device).bool()
    if mask.shape != student.shape[:-1]:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {tuple(student.shape[:-1])}")
    keep = mask.unsqueeze(-1)
    diff = torch.where(keep, student, 0.0) - torch.where(keep, teacher, 0.0)
    total = diff.pow(2).reshape(batch, -1).sum(dim=1)
    count = mask.reshape(batch, -1).sum(dim=1)
    return total / (count.clamp(min=1) * dim).to(total.dtype), count > 0


def _mean_over_samples(per_sample: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``per_sample`` [B] over ``valid`` samples (zero, still on the graph, if none)."""
    picked = torch.where(valid, per_sample, 0.0)
    return picked.sum() / valid.sum().clamp(min=1).to(picked.dtype)


def click_ce(scores: Tensor, target: Target = 0) -> Tensor:
    """Click cross-entropy of PLM-NR: one clicked news against K non-clicked ones.

    CE(s, y) = mean over samples b of ( -s[b, y_b] + log sum_c exp s[b, c] ).

    ``scores``: ``[B, 1 + K]`` logits; ``target``: index of the clicked candidate, an
    int for all samples (0 by our data schema) or a ``[B]`` tensor. Returns a scalar.
    """
    return F.cross_entropy(scores, _target(scores, target))


def teacher_weights(teacher_scores: Tensor | Sequence[Tensor], target: Target = 0) -> Tensor:
    """Per-sample weights of the M teachers: the better a teacher does on a sample, the more it counts.

    l_i[b] = CE(s^T_i[b], y_b)   (the teacher's own click loss on sample b)
    w[:, b] = softmax over i of ( -l_i[b] )

    So the weights of a sample sum to one and the teacher with the lowest loss gets
    the largest weight. ``teacher_scores``: ``[M, B, C]`` (or a list of M ``[B, C]``);
    returns ``[M, B]``. No gradient flows through the weights (they are computed from
    detached scores): they choose whom to learn from, they are not learned.
    """
    scores = _stack(teacher_scores).detach()
    m, b, c = scores.shape
    y = _target(scores[0], target)
    losses = F.cross_entropy(scores.reshape(m * b, c), y.repeat(m), reduction="none").reshape(m, b)
    return torch.softmax(-losses, dim=0)


def weighted_teacher_scores(teacher_scores: Tensor | Sequence[Tensor], weights: Tensor) -> Tensor:
    """The ensemble teacher's scores: s^T[b] = sum over i of w_i[b] * s^T_i[b].

    ``teacher_scores``: ``[M, B, C]``; ``weights``: ``[M, B]``; returns ``[B, C]``.
    """
    scores = _stack(teacher_scores)
    return (weights.unsqueeze(-1) * scores).sum(dim=0)


def soft_ce(teacher_scores: Tensor, student_scores: Tensor, tau: float = 1.0) -> Tensor:
    """Knowledge-distillation soft cross-entropy softCE(s^T / tau, s^S / tau).

    softCE = mean over samples b of ( - sum_c p_c log q_c ),
    p = softmax(s^T[b] / tau), q = softmax(s^S[b] / tau).

    ``teacher_scores``, ``student_scores``: ``[B, C]``; the teacher is detached (it is
    the target). Not multiplied by tau^2, as in the original Tiny-NewsRec code (see the
    module docstring). Its minimum over the student is the entropy of p, reached at
    s^S = s^T, where its gradient is zero.
    """
    if tau <= 0:
        raise ParamError(f"the distillation temperature tau must be > 0, got {tau!r}")
    p = torch.softmax(teacher_scores.detach() / tau, dim=-1)
    log_q = torch.log_softmax(student_scores / tau, dim=-1)
    return -(p * log_q).sum(dim=-1).mean()


def _per_teacher_mse(
    student_emb: Tensor,
    teacher_embs: Tensor | Sequence[Tensor],
    projections: Sequence[Projection] | None,
    mask: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """``MSE(student, P_i teacher_i)`` per teacher and sample: ``[M, B]``, and valid samples ``[B]``."""
    teachers = list(teacher_embs.unbind(0)) if isinstance(teacher_embs, Tensor) else list(teacher_embs)
    if projections is not None and len(projections) != len(teachers):
        raise ValueError(f"{len(projections)} projections for {len(teachers)} teachers")
    errs, valid = [], None
    for i, teacher in enumerate(teachers):
        projected = teacher.detach() if projections is None else projections[i](teacher.detach())
        err, valid = _per_sample_mse(student_emb, projected, mask)
        errs.append(err)
    return torch.stack(errs), valid


def weighted_embedding_mse(
    student_emb: Tensor,
    teacher_embs: Tensor | Sequence[Tensor],
    projections: Sequence[Projection] | None,
    weights: Tensor,
    mask: Tensor | None = None,
) -> Tensor:
    """Embedding distillation from M teachers: sum over i of w_i MSE(student emb, P_i teacher emb).

    loss = mean over samples b of sum_i w_i[b] * MSE_i[b],
    MSE_i[b] = mean over real positions and features of (e^S[b] - P_i e^T_i[b])^2.

    ``student_emb``: ``[B, ..., d_s]``; ``teacher_embs``: ``[M, B, ..., d_t]`` (or a
    list of M); ``projections``: M learned maps P_i, each ``nn.Linear(d_t, d_s)``
    (None: identity, d_t = d_s); ``weights``: ``[M, B]`` from :func:`teacher_weights`;
    ``mask``: ``[B, ...]``, padded positions (e.g. empty history slots) ignored.
    """
    errs, valid = _per_teacher_mse(student_emb, teacher_embs, projections, mask)
    return _mean_over_samples((weights.detach() * errs).sum(dim=0), valid)


def dot_scores(candidates: Tensor, query: Tensor) -> Tensor:
    """Dot-product scores <candidate_c, query>: ``[..., C, d]`` x ``[..., d]`` -> ``[..., C]``."""
    return (candidates * query.unsqueeze(-2)).sum(dim=-1)


def _weight_parts(weights: Tensor) -> dict[str, float]:
    return {f"weight_teacher_{i}": float(w) for i, w in enumerate(weights.mean(dim=1).tolist())}


# ---------------------------------------------------------------- Tiny-NewsRec


def stage1_loss(
    student_scores: Tensor,
    student_title_emb: Tensor,
    student_body_emb: Tensor,
    teacher_title_embs: Tensor | Sequence[Tensor],
    teacher_body_embs: Tensor | Sequence[Tensor],
    projections: Sequence[Projection] | None,
    tau: float = 1.0,
    target: Target = 0,
) -> tuple[Tensor, dict[str, float]]:
    """Stage 1, post-training knowledge distillation (title-body matching).

    Per teacher i:  s^T_i = <t_title, t_body>,  w = softmax_i(-CE(s^T_i, 0)),
    s^T = sum_i w_i s^T_i.
    Loss = CE(s^S, 0) + softCE(s^T / tau, s^S / tau)
         + sum_i w_i ( MSE(student title embs, P_i teacher title embs)
                     + MSE(student body emb, P_i teacher body emb) ).

    ``student_scores``: ``[B, C]``, the student's <title_c, body> for its own title
    (index 0) and C - 1 titles of other news; ``student_title_emb``: ``[B, C, d_s]``;
    ``student_body_emb``: ``[B, d_s]``; ``teacher_title_embs``: ``[M, B, C, d_t]``;
    ``teacher_body_embs``: ``[M, B, d_t]``; ``projections``: M maps d_t -> d_s.
    Parts: ``ce``, ``soft_ce``, ``emb_mse``, ``weight_teacher_{i}`` (batch mean), ``total``.
    """
    titles = _stack(teacher_title_embs).detach()
    bodies = _stack(teacher_body_embs).detach()
    t_scores = dot_scores(titles, bodies)  # [M, B, C]
    weights = teacher_weights(t_scores, target)
    ce = click_ce(student_scores, target)
    kd = soft_ce(weighted_teacher_scores(t_scores, weights), student_scores, tau)
    title_err, _ = _per_teacher_mse(student_title_emb, titles, projections, None)
    body_err, _ = _per_teacher_mse(student_body_emb, bodies, projections, None)
    emb = ((weights * (title_err + body_err)).sum(dim=0)).mean()
    total = ce + kd + emb
    parts = {"ce": ce.item(), "soft_ce": kd.item(), "emb_mse": emb.item(), **_weight_parts(weights)}
    parts["total"] = total.item()
    return total, parts


def stage2_loss(
    student_scores: Tensor,
    student_history_emb: Tensor,
    student_candidate_emb: Tensor,
    student_user_emb: Tensor,
    teacher_history_embs: Tensor | Sequence[Tensor],
    teacher_candidate_embs: Tensor | Sequence[Tensor],
    teacher_user_embs: Tensor | Sequence[Tensor],
    projections: Sequence[Projection] | None,
    history_mask: Tensor | None = None,
    tau: float = 1.0,
    ce_weight: float = 0.2,
    target: Target = 0,
) -> tuple[Tensor, dict[str, float]]:
    """Stage 2, fine-tuning knowledge distillation on news recommendation.

    Per teacher i:  u^T_i = UE_i(teacher history embs) (done by the caller, frozen),
    s^T_i = <t_cand, u^T_i>,  w = softmax_i(-CE(s^T_i, y)),  s^T = sum_i w_i s^T_i.
    Loss = softCE(s^T / tau, s^S / tau) + 0.2 CE(s^S, y)
         + sum_i w_i MSE(news embs: student vs P_i teacher)
         + sum_i w_i MSE(user emb: student vs P_i teacher).

    The news embeddings are a sample's history and candidates together (as in the
    original code); padded history slots (``history_mask`` False) are left out.
    ``student_scores``: ``[B, C]``; ``student_history_emb``: ``[B, H, d_s]``;
    ``student_candidate_emb``: ``[B, C, d_s]``; ``student_user_emb``: ``[B, d_s]``;
    teacher embeddings the same with a leading M and d_t; ``projections``: M maps
    d_t -> d_s (one per teacher, shared by news and user embeddings as in the original
    code); ``history_mask``: ``[B, H]``; ``ce_weight``: 0.2 in the paper.
    Parts: ``ce``, ``soft_ce``, ``news_mse``, ``user_mse``, ``weight_teacher_{i}``, ``total``.
    """
    t_hist = _stack(teacher_history_embs).detach()
    t_cand = _stack(teacher_candidate_embs).detach()
    t_user = _stack(teacher_user_embs).detach()
    t_scores = dot_scores(t_cand, t_user)  # [M, B, C]
    weights = teacher_weights(t_scores, target)
    ce = click_ce(student_scores, target)
    kd = soft_ce(weighted_teacher_scores(t_scores, weights), student_scores, tau)

    news_mask = None
    if history_mask is not None:
        cand_mask = torch.ones(student_candidate_emb.shape[:2], dtype=torch.bool, device=student_candidate_emb.device)
        news_mask = torch.cat([history_mask.to(cand_mask.device).bool(), cand_mask], dim=1)
    student_news = torch.cat([student_history_emb, student_candidate_emb], dim=1)
    teacher_news = torch.cat([t_hist, t_cand], dim=2)
    news = weighted_embedding_mse(student_news, teacher_news, projections, weights, news_mask)
    user = weighted_embedding_mse(student_user_emb, t_user, projections, weights)
    total = kd + ce_weight * ce + news + user
    parts = {
        "ce": ce.item(),
        "soft_ce": kd.item(),
        "news_mse": news.item(),
        "user_mse": user.item(),
        **_weight_parts(weights),
    }
    parts["total"] = total.item()
    return total, parts


# ---------------------------------------------------------------- last-k layer KD baseline


def hidden_mse(
    student_hidden: Sequence[Tensor],
    teacher_hidden: Sequence[Tensor],
    layer_map: Sequence[tuple[int, int]],
    projection: Projection | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """Hidden-state distillation: sum over pairs (j, t) of MSE(W_h h^S_j, h^T_t).

    ``student_hidden``, ``teacher_hidden``: the models' ``hidden_states`` as Hugging
    Face returns them (index 0 = embeddings, index j = output of layer j), each
    ``[N, L, d]`` for N texts of L tokens; ``layer_map``: ``(student_layer,
    teacher_layer)`` pairs from :func:`~tinynewsrec.distill.layer_map.layer_map`;
    ``projection``: W_h (as TinyBERT's), ``nn.Linear(d_s, d_t)`` (None: identity);
    ``mask``: the token attention mask ``[N, L]``, padding tokens ignored.
    Each pair is a mean over texts of the per-text MSE over real tokens. Only the mapped
    layers are read (the others may be None, e.g. below a frozen-layer cache).
    """
    total = student_hidden[layer_map[0][0]].new_zeros(()) if layer_map else torch.zeros(())
    for j, t in layer_map:
        student = student_hidden[j] if projection is None else projection(student_hidden[j])
        err, valid = _per_sample_mse(student, teacher_hidden[t].detach(), mask)
        total = total + _mean_over_samples(err, valid)
    return total


def attention_mse(
    student_attn_scores: Sequence[Tensor],
    teacher_attn_scores: Sequence[Tensor],
    layer_map: Sequence[tuple[int, int]],
    mask: Tensor | None = None,
) -> Tensor:
    """Attention distillation: sum over pairs (j, t) of MSE(A^S_j, A^T_t) on pre-softmax scores.

    A[n, h, q, k] = <Q_q, K_k> / sqrt(d_head) (+ BERT's additive mask), per layer,
    ``[N, heads, L, L]``; ``student_attn_scores[j - 1]`` is layer j's (student and
    teacher must have the same number of heads; unmapped layers may be None). Only pairs of real tokens count: with
    ``mask`` ``[N, L]``, query q and key k both real; without it, any position where a
    score is not finite or at or below :data:`MASKED_SCORE` is taken as masked (BERT's
    additive mask is -1e4, -inf or the dtype's minimum, whose squared difference would
    swamp the loss or be NaN). Each pair is a mean over texts of the per-text mean over
    heads and real (q, k) pairs.
    """
    total = student_attn_scores[layer_map[0][0] - 1].new_zeros(()) if layer_map else torch.zeros(())
    for j, t in layer_map:
        student, teacher = student_attn_scores[j - 1], teacher_attn_scores[t - 1].detach()
        if student.shape != teacher.shape:
            raise ValueError(
                f"student layer {j} attention has shape {tuple(student.shape)} but teacher layer {t} "
                f"{tuple(teacher.shape)} (attention distillation needs the same number of heads)"
            )
        if mask is not None:
            m = mask.to(device=student.device).bool()
            pairs = (m.unsqueeze(-1) & m.unsqueeze(-2)).unsqueeze(1).expand_as(student)
        else:
            pairs = (
                torch.isfinite(student)
                & torch.isfinite(teacher)
                & (student > MASKED_SCORE)
                & (teacher > MASKED_SCORE)
            )
        # scores as [N, heads * L * L, 1]: one "position" per (head, q, k)
        n = student.shape[0]
        err, valid = _per_sample_mse(
            student.reshape(n, -1, 1), teacher.reshape(n, -1, 1), pairs.reshape(n, -1)
        )
        total = total + _mean_over_samples(err, valid)
    return total


def last_layers_kd_loss(
    student_scores: Tensor,
    teacher_scores: Tensor,
    student_hidden: Sequence[Tensor],
    teacher_hidden: Sequence[Tensor],
    student_attn_scores: Sequence[Tensor],
    teacher_attn_scores: Sequence[Tensor],
    layer_map: Sequence[tuple[int, int]],
    token_mask: Tensor | None = None,
    projection: Projection | None = None,
    tau: float = 1.0,
    ce_weight: float = 0.1,
    target: Target = 0,
) -> tuple[Tensor, dict[str, float]]:
    """Last-k layer KD baseline: layer-wise distillation from one fine-tuned PLM-NR teacher.

    TinyBERT's intermediate-layer losses on the student's last k layers only: no embedding
    layer loss and one step (no general distillation before the task-specific one), so it
    is not the TinyBERT of its paper.

    Loss = sum over (j, t) of MSE(W_h h^S_j, h^T_t)        (hidden states)
         + sum over (j, t) of MSE(A^S_j, A^T_t)            (pre-softmax attention scores)
         + softCE(s^T / tau, s^S / tau) + 0.1 CE(s^S, y).

    ``layer_map`` pairs the student's last k layers with teacher layers (see
    :func:`~tinynewsrec.distill.layer_map.layer_map`); hidden states and attention
    scores come from the news encoders over the batch's N news (``token_mask``
    ``[N, L]``); scores are ``[B, C]``. The teacher is frozen (detached here).
    Parts: ``ce``, ``soft_ce``, ``hidden_mse``, ``attention_mse``, ``total``.
    """
    ce = click_ce(student_scores, target)
    kd = soft_ce(teacher_scores, student_scores, tau)
    hid = hidden_mse(student_hidden, teacher_hidden, layer_map, projection, token_mask)
    att = attention_mse(student_attn_scores, teacher_attn_scores, layer_map, token_mask)
    total = hid + att + kd + ce_weight * ce
    parts = {"ce": ce.item(), "soft_ce": kd.item(), "hidden_mse": hid.item(), "attention_mse": att.item()}
    parts["total"] = total.item()
    return total, parts


# ---------------------------------------------------------------- NewsBERT baseline


def newsbert_loss(
    student_scores: Tensor,
    teacher_scores: Tensor,
    student_hidden: Sequence[Tensor],
    teacher_hidden: Sequence[Tensor],
    layer_map: Sequence[tuple[int, int]],
    student_news_emb: Tensor,
    teacher_news_emb: Tensor,
    student_user_emb: Tensor,
    teacher_user_emb: Tensor,
    token_mask: Tensor | None = None,
    news_mask: Tensor | None = None,
    tau: float = 1.0,
    ce_weight: float = 0.1,
    target: Target = 0,
) -> tuple[Tensor, dict[str, float]]:
    """NewsBERT baseline: teacher and student trained together, sharing the pooling and user heads.

    Teacher loss  = CE(s^T, y).
    Student loss  = softCE(s^T / tau, s^S / tau) + 0.1 CE(s^S, y)
                  + sum over (j, t) of MSE(h^S_j, h^T_t)
                  + MSE(student news embs, teacher news embs) + MSE(u^S, u^T).
    Returned total = teacher loss + student loss.

    Teacher tensors are detached inside the student loss, so one backward pass of the
    total gives each teacher layer the gradient of the teacher loss only, each student
    layer the gradient of the student loss only, and the shared heads both (the
    original code ran two backward passes with the teacher frozen in between, to the
    same effect on the layers). Then, after gradient clipping and right before the
    optimiser step, the training loop applies NewsBERT's momentum distillation of
    gradients with :func:`momentum_distill_grads` (beta = 0.1).

    Shapes: scores ``[B, C]``; hidden states as in :func:`hidden_mse` (same hidden
    size: the student is the PLM's first layers, so no projection); news embeddings
    ``[B, N, d]`` or ``[N, d]`` with ``news_mask`` of their leading shape; user
    embeddings ``[B, d]``. Parts: ``teacher_ce``, ``ce``, ``soft_ce``, ``hidden_mse``,
    ``news_mse``, ``user_mse``, ``student_total``, ``total``.
    """
    teacher_ce = click_ce(teacher_scores, target)
    ce = click_ce(student_scores, target)
    kd = soft_ce(teacher_scores, student_scores, tau)
    hid = hidden_mse(student_hidden, teacher_hidden, layer_map, None, token_mask)
    news_err, news_valid = _per_sample_mse(student_news_emb, teacher_news_emb.detach(), news_mask)
    news = _mean_over_samples(news_err, news_valid)
    user_err, user_valid = _per_sample_mse(student_user_emb, teacher_user_emb.detach(), None)
    user = _mean_over_samples(user_err, user_valid)
    student_total = kd + ce_weight * ce + hid + news + user
    total = teacher_ce + student_total
    parts = {
        "teacher_ce": teacher_ce.item(),
        "ce": ce.item(),
        "soft_ce": kd.item(),
        "hidden_mse": hid.item(),
        "news_mse": news.item(),
        "user_mse": user.item(),
        "student_total": student_total.item(),
        "total": total.item(),
    }
    return total, parts


def layer_param_groups(
    student_layers: Sequence[torch.nn.Module],
    teacher_layers: Sequence[torch.nn.Module],
    layer_map: Sequence[tuple[int, int]],
) -> tuple[list[Tensor], list[list[Tensor]]]:
    """The parameters :func:`momentum_distill_grads` mixes, from a layer map.

    ``student_layers``, ``teacher_layers``: the encoders' Transformer layers in order
    (e.g. ``model.encoder.layer``; layer j of the map is ``layers[j - 1]``). Returns
    the student parameters and, for each, the same-named parameters of the teacher
    layers mapped to its layer (several when a student layer has several teachers, as
    the original code did for a one-layer student, averaging teacher layers 11 and 12).
    """
    by_student: dict[int, list[int]] = {}
    for j, t in layer_map:
        if j < 1 or t < 1:
            raise ValueError(f"momentum distillation pairs Transformer layers (>= 1), got ({j}, {t})")
        by_student.setdefault(j, []).append(t)
    student_params: list[Tensor] = []
    teacher_groups: list[list[Tensor]] = []
    for j, ts in by_student.items():
        teacher_named = [dict(teacher_layers[t - 1].named_parameters()) for t in ts]
        for name, param in student_layers[j - 1].named_parameters():
            student_params.append(param)
            teacher_groups.append([named[name] for named in teacher_named])
    return student_params, teacher_groups


@torch.no_grad()
def momentum_distill_grads(
    student_params: Sequence[Tensor],
    teacher_params: Sequence[Tensor | Sequence[Tensor]],
    beta: float = 0.1,
) -> None:
    """NewsBERT's momentum distillation: student layers also follow the teacher's gradient.

    For each student parameter and its teacher counterpart(s) (same shape):
        g^S <- (1 - beta) g^S + beta * mean over its teacher parameters of g^T.

    Works in place on ``.grad``. The training loop calls it after the backward pass of
    :func:`newsbert_loss`'s total (so ``g^T`` is the gradient of the teacher's own click
    loss and ``g^S`` that of the student loss) and after gradient clipping, right before
    ``optimizer.step()`` (``before_optimizer_step`` of
    :func:`~tinynewsrec.train.loop.fit`): the clipped gradients are mixed, and the mixed
    ones are what the optimiser applies. With gradient accumulation, only on the step
    where gradients are synchronised (``accelerator.sync_gradients``), after which every
    process holds the same averaged gradients. A student parameter without a gradient
    (frozen), or whose teachers have none (a frozen teacher layer), is left as it is: the
    NewsBERT method therefore trains every matched teacher layer (see
    :mod:`tinynewsrec.distill.methods.newsbert`). Build the two lists with
    :func:`layer_param_groups`.
    """
    if not 0.0 <= beta <= 1.0:
        raise ParamError(f"the momentum distillation beta must be between 0 and 1, got {beta!r}")
    if len(student_params) != len(teacher_params):
        raise ValueError(f"{len(student_params)} student parameters but {len(teacher_params)} teacher groups")
    for student, group in zip(student_params, teacher_params):
        if student.grad is None:
            continue
        teachers = [group] if isinstance(group, Tensor) else list(group)
        grads = [t.grad for t in teachers if t.grad is not None]
        if not grads:
            continue
        for g in grads:
            if g.shape != student.grad.shape:
                raise ValueError(
                    f"teacher gradient of shape {tuple(g.shape)} for a student parameter of shape "
                    f"{tuple(student.grad.shape)}"
                )
        teacher_grad = grads[0] if len(grads) == 1 else torch.stack(grads).mean(dim=0)
        student.grad.mul_(1.0 - beta).add_(teacher_grad.to(student.grad.dtype), alpha=beta)
