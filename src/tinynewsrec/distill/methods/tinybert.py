"""``tinybert``: TinyBERT's task-specific distillation in its two steps (Jiao et al., 2020;
huawei-noah/TinyBERT ``task_distill.py``), adapted to PLM-NR.

Step 1, intermediate-layer distillation (``distill_stage1``): sum attention MSE + sum
hidden-state MSE (embedding output included) from ``student.teacher``, with TinyBERT's layer
maps (:func:`~tinynewsrec.distill.layer_map.tinybert_maps`), on the click-training samples'
news, with ``stage1``'s budget (epochs, batch size, lr, steps, seed); the scores are not
trained, so the student's pooling, dense and user heads stay frozen in this step.

Step 2, prediction-layer distillation (``distill_stage2``): from the step-1 student, soft CE
of the click scores only (T = 1; no hard label, as the original: ``hard_weight: 0``), with
``stage2``'s budget.

Both steps: warm-up + linear decay (``stage{1,2}.warmup``, 0.1). What differs from
``simplified_tinybert`` is exactly the recipe Chen et al. compare: two steps, no hard label.
The earlier ``tinybert`` of this project (the student's last k layers, no embedding layer, one
step) is ``last_layers_kd``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from . import MethodInputs, StudentMethod, TrainingStep
from ._kd import IntermediateKDParams, Weights, build_module, stage_weights, teacher_scorers, teacher_states, validate
from ._one_teacher import one_teacher
from ...params import at_least

log = logging.getLogger("tinynewsrec")


@dataclass(frozen=True)
class TinyBERTParams(IntermediateKDParams):
    """``tinybert``: step 1's attention and hidden weights, step 2's soft weight and hard-label
    weight (0 in the original: no hard label), the temperature, step 2's teachers, the cache."""

    hard_weight: float = at_least(0.0, 0.0)


def build_stage1(inputs: MethodInputs) -> TrainingStep:
    import numpy as np

    from ...models.plmnr import NewsTokens, collate_train
    from ...train.common import read_samples
    from ..layer_map import tinybert_maps
    from ..students import build_student

    params, own = inputs.params, inputs.params.method
    student = build_student(params.plm.name, params.student.layers, params.plm.news_dim, params.stage1.seed)
    for head in (student.news_encoder.pooling, student.news_encoder.dense, student.user_encoder):
        head.requires_grad_(False)  # step 1 trains no score: the heads wait for step 2
    weights = stage_weights(Weights(attention=own.attention_weight, hidden=own.hidden_weight), "tinybert step 1")
    samples = read_samples(inputs.paths.samples)
    at = one_teacher(params, inputs.paths)
    hidden_pairs, attention_pairs = tinybert_maps(at.depth, params.student.layers)
    states, info, report = teacher_states(inputs, samples, at, hidden_pairs, attention_pairs)
    module = build_module(student, weights, hidden_pairs=hidden_pairs, attention_pairs=attention_pairs,
                          teacher_hidden=states.teacher.plm.config.hidden_size)
    news_tokens = NewsTokens(inputs.tokens, "title_ids")

    def collate(rows):
        batch = collate_train(samples.take(np.asarray(rows, dtype=np.int64)), news_tokens)
        batch["teacher_states"] = states.batch(batch["news_index"].numpy())
        return batch

    if inputs.accelerator.is_main_process:
        log.info("tinybert step 1: a %d-layer student learns teacher_%d's hidden states %s and attention %s",
                 params.student.layers, at.teacher_id, [t for _, t in hidden_pairs], [t for _, t in attention_pairs])
    return TrainingStep(module, student, inputs=[inputs.paths.samples, *at.files], collate=collate,
                        n_rows=samples.num_rows, info={**info, "weights": vars(weights) | {}}, report=report)


def build_stage2(inputs: MethodInputs) -> TrainingStep:
    from ...io import checkpoint_files
    from ...train.distill import load_stage1_student

    params, own = inputs.params, inputs.params.method
    student = load_stage1_student(params, inputs.paths)
    weights = stage_weights(Weights(soft=own.soft_weight, hard=own.hard_weight), "tinybert step 2")
    tables, users, ids, extra = teacher_scorers(inputs)
    module = build_module(student, weights, own.temperature, user_encoders=users, teacher_dim=tables.shape[-1])
    if inputs.accelerator.is_main_process:
        log.info("tinybert step 2: the step-1 student learns the click scores of teacher(s) %s (soft CE, T = %s)",
                 ids, own.temperature)
    return TrainingStep(module, student, collate_extra=extra,
                        inputs=[*(inputs.paths.emb_file(i) for i in ids), *checkpoint_files(inputs.paths.stage1)],
                        info={"teachers": ids, "weights": vars(weights) | {}})


METHOD = StudentMethod(
    name="tinybert",
    display="TinyBERT (2-step)",
    stage1=True,
    teachers="one",
    ce_weight=0.0,
    sections=("stage1", "stage2"),
    params=TinyBERTParams,
    schedule="linear",
    validate=validate,
    build_stage1=build_stage1,
    build_stage2=build_stage2,
)
