"""``last_layers_kd``: the student's last k layers learn one frozen teacher's hidden states and
pre-softmax attention scores.

From the raw PLM's first L layers; one fine-tuned teacher (``student.teacher``) runs frozen on
each batch's news; its layers are matched to the student's last ``student.distill_layers``
layers by ``student.layer_map``. Loss
(:func:`~tinynewsrec.distill.losses.last_layers_kd_loss`): hidden-state MSE + attention-score
MSE of the matched layers + soft CE of the click scores + 0.1 CE.

These are TinyBERT's intermediate-layer losses, but this is NOT the TinyBERT of its paper: no
embedding-layer loss and a single task-specific step (no general distillation first). The
original Tiny-NewsRec code's "TinyBERT" baseline does the same; the name says what it is.

The teacher reads the shared frozen-layer cache when it starts at or below the layer below the
lowest matched one (whose input the first matched attention needs), else token ids.
"""

from __future__ import annotations

import logging

from . import MethodInputs, StudentMethod, TrainingStep
from ._one_teacher import one_teacher, reads, teacher_lookup, teacher_states, validate

log = logging.getLogger("tinynewsrec")


def build_stage2(inputs: MethodInputs) -> TrainingStep:
    from ...models.plmnr import PLMNR
    from ..students import LastLayersKDStudent, build_student

    params, p = inputs.params, inputs.params.stage2
    s = params.student
    student = build_student(params.plm.name, s.layers, params.plm.news_dim, p.seed)
    teacher_at = one_teacher(params, inputs.paths)
    teacher = PLMNR.from_pretrained(teacher_at.folder, trainable_layers=0)
    lookup = teacher_lookup(teacher, inputs.tokens, inputs.paths.cache, teacher_at.lowest - 1)
    module = LastLayersKDStudent(student, teacher, teacher_at.pairs, p.tau, inputs.ce_weight)
    if inputs.accelerator.is_main_process:
        log.info("last_layers_kd: a %d-layer student learns from teacher_%d (layers %s), the teacher reads %s",
                 s.layers, teacher_at.teacher_id, teacher_at.pairs, reads(lookup))
    return TrainingStep(module, student, collate_extra=teacher_states(lookup), inputs=teacher_at.files,
                        info={"teacher": teacher_at.teacher_id, "layer_map": [list(x) for x in teacher_at.pairs]})


METHOD = StudentMethod(
    name="last_layers_kd",
    display="Last-k layer KD",
    stage1=False,
    teachers="one",
    ce_weight=0.1,
    sections=("stage2",),
    validate=validate,
    build_stage2=build_stage2,
)
