"""``hsk``: hidden-state-knowledge distillation compressed by depth, length and width, then
prediction distillation ("Marginal Utility Diminishes", Liu et al., ACL 2021; code
llyx97/Marginal-Utility-Diminishes), for a student that is the PLM's first L layers.

Stage 1 (``distill_stage1``): the student's hidden states learn ``student.teacher``'s,
compressed as params.yaml's ``hsk:`` section says (``keep_layers`` / ``layer_scheme``,
``keep_tokens`` / ``token_scheme``, ``keep_hidden`` / ``hidden_scheme``, or the 3-D ``config``
string), teacher-free from the ``hsk_store`` stage's store by default. Stage 2
(``distill_stage2``): soft CE of the click scores against the teacher's, T = 1, no hard label.
What both stages share, and every decision where the paper is silent, is in
:mod:`tinynewsrec.distill.methods._hsk`.

The student's embeddings stay frozen (as every PLM-prefix student here), so a pair matching
state 0 (the embedding output) adds a constant to the loss and trains nothing; the pruned
student of ``rosita`` trains its (factorised) embeddings and learns from it.
"""

from __future__ import annotations

from . import MethodInputs, StudentMethod, TrainingStep
from ._hsk import HSKParams, validate


def build_stage1(inputs: MethodInputs) -> TrainingStep:
    from ..students import build_student
    from ._hsk import build_stage1 as hsk_stage1

    params = inputs.params
    student = build_student(params.plm.name, params.student.layers, params.plm.news_dim, params.stage1.seed)
    return hsk_stage1(inputs, student, "hsk")


def build_stage2(inputs: MethodInputs) -> TrainingStep:
    from ...train.distill import load_stage1_student
    from ._hsk import build_stage2 as hsk_stage2

    return hsk_stage2(inputs, load_stage1_student(inputs.params, inputs.paths), "hsk")


METHOD = StudentMethod(
    name="hsk",
    display="HSK distillation",
    stage1=True,
    teachers="one",
    ce_weight=0.0,
    sections=("stage1", "stage2"),
    params=HSKParams,
    schedule="linear",
    validate=validate,
    build_stage1=build_stage1,
    build_stage2=build_stage2,
    extra={"hsk_store": True},
)
