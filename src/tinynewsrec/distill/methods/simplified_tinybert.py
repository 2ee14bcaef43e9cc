"""``simplified_tinybert``: Simplified TinyBERT (Chen et al., ECIR 2021), one step.

loss = sum attention MSE + sum hidden-state MSE + softCE(s^T / T, s^S / T) + CE(s^S, y),
all weights 1, T = 1, trained in ONE step (``task_distill_simplified.py``). Hidden states
include the embedding output: student state i <- teacher state round(i T / S); student layer
j's pre-softmax attention <- teacher layer round(j T / S)
(:func:`~tinynewsrec.distill.layer_map.tinybert_maps`). Adapted to PLM-NR as
:mod:`tinynewsrec.distill.methods._kd` says: news-encoder states over each distinct news of the
batch from ``student.teacher``, click-score logits from the exported teacher embeddings
(``teachers: ensemble`` mixes the M teachers' scores per sample). The teacher's states are
computed once per news (``cache_teacher``). Warm-up + linear decay (``stage2.warmup``, 0.1).
"""

from __future__ import annotations

import logging

from . import MethodInputs, StudentMethod, TrainingStep
from ._kd import IntermediateKDParams, Weights, build_module, stage_weights, teacher_scorers, teacher_states, validate
from ._one_teacher import one_teacher

log = logging.getLogger("tinynewsrec")


#: ``simplified_tinybert``: all four weights 1, T 1, one teacher, the teacher-state cache on
SimplifiedTinyBERTParams = IntermediateKDParams


def weights_of(own) -> Weights:
    return Weights(attention=own.attention_weight, hidden=own.hidden_weight, soft=own.soft_weight,
                   hard=own.hard_weight)


def build_stage2(inputs: MethodInputs) -> TrainingStep:
    from ...train.common import read_samples
    from ..layer_map import tinybert_maps
    from ..students import build_student

    params, own = inputs.params, inputs.params.method
    student = build_student(params.plm.name, params.student.layers, params.plm.news_dim, params.stage2.seed)
    weights = stage_weights(weights_of(own), "simplified_tinybert")
    samples = read_samples(inputs.paths.samples)
    at = one_teacher(params, inputs.paths)
    hidden_pairs, attention_pairs = tinybert_maps(at.depth, params.student.layers)
    states, info, report = teacher_states(inputs, samples, at, hidden_pairs, attention_pairs)
    tables, users, ids, scorer_extra = teacher_scorers(inputs)
    module = build_module(student, weights, own.temperature, user_encoders=users, teacher_dim=tables.shape[-1],
                          hidden_pairs=hidden_pairs, attention_pairs=attention_pairs,
                          teacher_hidden=states.teacher.plm.config.hidden_size)

    def extra(batch):
        return {"teacher_states": states.batch(batch["news_index"].numpy()), **scorer_extra(batch)}

    return TrainingStep(module, student, collate_extra=extra,
                        inputs=[*at.files, *(inputs.paths.emb_file(i) for i in ids)],
                        info={**info, "teachers": ids, "weights": vars(weights) | {}}, report=report)


METHOD = StudentMethod(
    name="simplified_tinybert",
    display="Simplified TinyBERT",
    stage1=False,
    teachers="one",
    ce_weight=1.0,
    sections=("stage2",),
    params=SimplifiedTinyBERTParams,
    schedule="linear",
    validate=validate,
    build_stage2=build_stage2,
)
