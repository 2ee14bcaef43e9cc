"""``standard_kd``: Hinton-style knowledge distillation, as Simplified TinyBERT's ``standard`` mode.

loss = alpha * softCE(softmax(s^T / T), log_softmax(s^S / T)) + (1 - alpha) * CE(s^S, y),
alpha 0.5, T = 1 (the original's ``task_distill_simplified.py``); no intermediate losses.

Adapted to PLM-NR (:mod:`tinynewsrec.distill.methods._kd`): the logits are the click scores
over a sample's 1 + K candidates; the teacher's (``student.teacher``, or with ``teachers:
ensemble`` all M mixed per sample with Tiny-NewsRec's weights) come from its exported news
embeddings and frozen user encoder, so no teacher runs during training. One step, from the raw
PLM's first ``student.layers`` layers; warm-up + linear decay (``stage2.warmup``, 0.1) unless
``stage2.schedule`` says otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from . import MethodInputs, StudentMethod, TrainingStep
from ._kd import TEACHERS, Weights, build_module, teacher_scorers, validate
from ...params import above, between, choice

log = logging.getLogger("tinynewsrec")


@dataclass(frozen=True)
class StandardKDParams:
    """``standard_kd``: the weight of the soft loss and the temperature."""

    #: soft-loss weight; the hard-label CE gets 1 - alpha
    alpha: float = between(0.0, 1.0, 0.5)
    temperature: float = above(0.0, 1.0)
    #: one: student.teacher; ensemble: all teacher.ids, mixed per sample (Tiny-NewsRec's weights)
    teachers: str = choice(*TEACHERS, default="one")


def build_stage2(inputs: MethodInputs) -> TrainingStep:
    from ..students import build_student

    params, own = inputs.params, inputs.params.method
    student = build_student(params.plm.name, params.student.layers, params.plm.news_dim, params.stage2.seed)
    tables, users, ids, extra = teacher_scorers(inputs)
    weights = Weights(soft=own.alpha, hard=1.0 - own.alpha)
    module = build_module(student, weights, own.temperature, user_encoders=users, teacher_dim=tables.shape[-1])
    if inputs.accelerator.is_main_process:
        log.info("standard_kd: a %d-layer student learns %.2f x soft CE (T = %s) from teacher(s) %s + %.2f x click CE",
                 params.student.layers, own.alpha, own.temperature, ids, 1.0 - own.alpha)
    return TrainingStep(module, student, collate_extra=extra, inputs=[inputs.paths.emb_file(i) for i in ids],
                        info={"teachers": ids, "weights": vars(weights) | {}})


METHOD = StudentMethod(
    name="standard_kd",
    display="Standard KD",
    stage1=False,
    teachers="one",
    ce_weight=0.5,
    sections=("stage2",),
    params=StandardKDParams,
    schedule="linear",
    validate=validate,
    build_stage2=build_stage2,
)
