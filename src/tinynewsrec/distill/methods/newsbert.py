"""``newsbert``: NewsBERT's teacher and student trained together, with momentum distillation.

From the raw PLM's first L layers; one fine-tuned teacher (``student.teacher``) trains with it,
and the student SHARES the teacher's attention pooling, dense layer and user encoder. Loss
(:func:`~tinynewsrec.distill.losses.newsbert_loss`): the teacher's click CE + the student's
soft CE, 0.1 CE and hidden / news / user MSE. Each step then mixes the teacher's gradient into
each matched student layer's, g^S <- (1 - beta) g^S + beta g^T (``stage2.beta``,
:func:`~tinynewsrec.distill.losses.momentum_distill_grads`), explicitly in the loop after
gradient clipping and right before ``optimizer.step()`` (``before_optimizer_step`` of
:func:`~tinynewsrec.train.loop.fit`).

Decisions where the paper and DESIGN.md are silent:

- The teacher starts fine-tuned (the original trains it from the PLM at the same time; a
  fine-tuned start is the stronger teacher and costs no extra CPU time).
- Every matched teacher layer trains, so that the momentum distillation reaches every matched
  student layer: the teacher's trainable layers are its top ``plm.trainable_layers`` or, when a
  matched layer lies lower (e.g. ``student.layer_map: uniform``: 6 -> 2 matches teacher layers
  3 and 6), every layer from the lowest matched one up. A frozen teacher layer has no gradient
  to distil, which silently skipped half of the student's tensors before. The default
  (``layer_map: last``, teacher layers 5 and 6 of MiniLM-L6 with 2 trainable) is unchanged.
- The teacher reads the shared frozen-layer cache when the cache starts at or below its lowest
  trainable layer's input, else token ids.
"""

from __future__ import annotations

import logging

from . import MethodInputs, StudentMethod, TrainingStep
from ._one_teacher import one_teacher, reads, teacher_lookup, teacher_states, validate

log = logging.getLogger("tinynewsrec")


def teacher_trainable_layers(depth: int, lowest_matched: int, trainable_layers: int) -> int:
    """How many top layers of the teacher train: ``plm.trainable_layers``, or more to reach
    down to the lowest matched teacher layer (layers are numbered 1 .. depth)."""
    return max(trainable_layers, depth - lowest_matched + 1)


def build_stage2(inputs: MethodInputs) -> TrainingStep:
    from ...models.plmnr import PLMNR
    from ..losses import layer_param_groups, momentum_distill_grads
    from ..students import NewsBERTPair, build_student

    params, p = inputs.params, inputs.params.stage2
    s = params.student
    student = build_student(params.plm.name, s.layers, params.plm.news_dim, p.seed)
    teacher_at = one_teacher(params, inputs.paths)
    trainable = teacher_trainable_layers(teacher_at.depth, teacher_at.lowest, params.plm.trainable_layers)
    teacher = PLMNR.from_pretrained(teacher_at.folder, trainable_layers=trainable)
    lookup = teacher_lookup(teacher, inputs.tokens, inputs.paths.cache, teacher_at.depth - trainable)
    module = NewsBERTPair(student, teacher, teacher_at.pairs, p.tau, inputs.ce_weight)
    student_params, teacher_groups = layer_param_groups(student.plm.encoder.layer, teacher.plm.encoder.layer,
                                                        teacher_at.pairs)

    def momentum(model) -> None:
        momentum_distill_grads(student_params, teacher_groups, p.beta)

    if inputs.accelerator.is_main_process:
        if trainable > params.plm.trainable_layers:
            log.info("newsbert: teacher_%d trains its top %d layers (from layer %d, the lowest one matched to the "
                     "student) instead of plm.trainable_layers %d, so that every matched layer passes its "
                     "gradient on to the student", teacher_at.teacher_id, trainable, teacher_at.lowest,
                     params.plm.trainable_layers)
        log.info("newsbert: a %d-layer student learns from teacher_%d (layers %s), the teacher reads %s",
                 s.layers, teacher_at.teacher_id, teacher_at.pairs, reads(lookup))
    info = {"teacher": teacher_at.teacher_id, "layer_map": [list(x) for x in teacher_at.pairs],
            "teacher_trainable_layers": trainable}
    return TrainingStep(module, student, collate_extra=teacher_states(lookup), inputs=teacher_at.files, info=info,
                        before_optimizer_step=momentum)


METHOD = StudentMethod(
    name="newsbert",
    display="NewsBERT",
    stage1=False,
    teachers="one",
    ce_weight=0.1,
    sections=("stage2",),
    validate=validate,
    build_stage2=build_stage2,
)
