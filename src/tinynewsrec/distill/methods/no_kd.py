"""``no_kd``: the student learns from clicks only (no teacher, no distillation).

PLM-NR trained from the raw PLM's first L layers with its click CE: the baseline every
distillation method must beat at the same size. (``finetune`` names only the teachers'
stage, ``finetune_teacher``.)
"""

from __future__ import annotations

from . import MethodInputs, StudentMethod, TrainingStep


def build_stage2(inputs: MethodInputs) -> TrainingStep:
    from ..students import Stage2Student, build_student

    params = inputs.params
    student = build_student(params.plm.name, params.student.layers, params.plm.news_dim, params.stage2.seed)
    return TrainingStep(Stage2Student(student, None, ce_weight=inputs.ce_weight), student)


METHOD = StudentMethod(
    name="no_kd",
    display="PLM-NR (no KD)",
    stage1=False,
    teachers="none",
    ce_weight=1.0,
    sections=("stage2",),
    build_stage2=build_stage2,
)
