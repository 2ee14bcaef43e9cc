"""``rosita``: ROSITA (Liu et al., AAAI 2021): the teacher pruned in every dimension, then
hidden-state-knowledge distillation, then prediction distillation.

- ``prune`` stage (:mod:`tinynewsrec.train.prune`): first-order Taylor importance of every head
  and FFN neuron of ``student.teacher`` from its click loss over ``importance_batches``
  training batches (weights never updated), then the bottom ``student.layers`` layers, the
  ``keep_heads`` best heads and the ``ffn_dim`` best FFN neurons of each, and the word
  embedding factorised by SVD to rank ``embedding_rank`` (null: kept whole):
  ``models/pruned`` (:class:`~tinynewsrec.models.pruned.PrunedPLMNR`, kind ``pruned_plmnr``).
- ``distill_stage1``: HSK distillation of the pruned student from the unpruned teacher, with
  the same compression keys as ``hsk`` (in this ``rosita:`` section), teacher-free by default.
  Every weight of the pruned model trains, its factorised embedding included (as ROSITA);
  its pooling, dense and user heads (copied from the teacher) wait for stage 2.
- ``distill_stage2``: soft CE of the click scores against the teacher's, T = 1, no hard label.

The defaults scale ROSITA's BERT-base model (2 of 12 heads, FFN 768 of 3072, embedding rank 128
of hidden 768) to MiniLM-L6 (12 heads, FFN 1536, hidden 384): 2 heads, FFN 384, rank 64, with
``student.layers`` layers (2 by default, like Tiny-NewsRec-2).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import DataError, ParamError
from ...params import at_least
from . import MethodInputs, StudentMethod, TrainingStep
from ._hsk import HSKParams
from ._hsk import validate as hsk_validate


@dataclass(frozen=True)
class RositaParams(HSKParams):
    """``rosita``: the pruning (heads kept per layer, FFN neurons kept per layer, embedding
    rank, batches of the importance pass), then :class:`~tinynewsrec.distill.methods._hsk.HSKParams`."""

    keep_heads: int = at_least(1, 2)
    ffn_dim: int = at_least(1, 384)
    #: null: the word embedding is not factorised
    embedding_rank: int | None = at_least(1, 64)
    #: training batches (of teacher.batch_size samples) whose click-loss gradients score the weights
    importance_batches: int = at_least(1, 8)


def validate(params) -> None:
    hsk_validate(params)
    if params.student.layers < 1:
        raise ParamError("params.yaml: student.layers must be at least 1 for rosita")


def load_pruned(folder, what: str, stage: str):
    """The pruned student in ``folder`` (written by ``stage``), every weight trainable."""
    import json

    from ...models.pruned import PrunedPLMNR

    try:
        kind = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model")
    except (OSError, ValueError):
        kind = None
    if kind != PrunedPLMNR.kind:
        raise DataError(f"{folder} holds no pruned student ({what}); rerun it (dvc repro {stage})")
    return PrunedPLMNR.from_pretrained(folder, trainable_layers=None)


def build_stage1(inputs: MethodInputs) -> TrainingStep:
    from ...io import checkpoint_files
    from ._hsk import build_stage1 as hsk_stage1

    student = load_pruned(inputs.paths.pruned, "the prune stage's output", "prune")
    step = hsk_stage1(inputs, student, "rosita")
    step.inputs.extend(checkpoint_files(inputs.paths.pruned))
    step.info["pruning"] = student.pruning
    return step


def build_stage2(inputs: MethodInputs) -> TrainingStep:
    from ._hsk import build_stage2 as hsk_stage2

    student = load_pruned(inputs.paths.stage1, "rosita's stage-1 student", "distill_stage1")
    return hsk_stage2(inputs, student, "rosita")


METHOD = StudentMethod(
    name="rosita",
    display="ROSITA",
    stage1=True,
    teachers="one",
    ce_weight=0.0,
    sections=("stage1", "stage2"),
    params=RositaParams,
    schedule="linear",
    validate=validate,
    build_stage1=build_stage1,
    build_stage2=build_stage2,
    extra={"hsk_store": True, "prune": True},
)
