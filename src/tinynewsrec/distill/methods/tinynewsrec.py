"""``tinynewsrec``: Tiny-NewsRec's two-stage multi-teacher distillation (the default).

Stage 1 (``distill_stage1``, :func:`build_stage1`): a fresh student (the PLM's first
``student.layers`` layers + new heads) learns the post-training task, title-body matching (as
``post_train``'s ``dp``), from the M post-trained checkpoints' title and body embeddings
(``data/teacher_emb/teacher_<i>.safetensors``: ``title``, ``body``;
:func:`~tinynewsrec.distill.losses.stage1_loss`).

Stage 2 (``distill_stage2``, :func:`build_stage2`): from the stage-1 student, news
recommendation distilled from the M teachers' news embeddings (``news``) and their frozen user
encoders (both exported with the embeddings); loss
:func:`~tinynewsrec.distill.losses.stage2_loss` with 0.2 CE.

Cross-param check: stage 1 distils from the post-trained checkpoints' title-body matching, so
it needs ``post_train.method: dp``. With ``fp`` or ``none`` the checkpoints' pooling and dense
heads never trained and their title/body embeddings are random targets.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import numpy as np

from ...errors import DataError, ParamError
from . import MethodInputs, StudentMethod, TrainingStep, get_method, method_names

log = logging.getLogger("tinynewsrec")


def validate(params) -> None:
    if params.post_train.method != "dp":
        raise ParamError(
            f"params.yaml: student.method tinynewsrec needs post_train.method dp, got {params.post_train.method!r} "
            "(its stage 1 distils the post-trained checkpoints' title-body matching, whose heads only dp trains); "
            "set post_train.method: dp or choose another student.method")


class _Recorder:
    """A token lookup that remembers the news of its last ``batch`` call (the title pool of a
    title-body batch, which the teachers' title embeddings must be aligned with)."""

    def __init__(self, lookup):
        self.lookup, self.last = lookup, np.zeros(0, dtype=np.int64)

    def batch(self, news_index) -> dict:
        self.last = np.asarray(news_index, dtype=np.int64)
        return self.lookup.batch(news_index)


def build_stage1(inputs: MethodInputs) -> TrainingStep:
    import torch

    from ...models.plmnr import NewsTokens
    from ...train.distill import read_teachers
    from ...train.post_train import TitleBodyBatches, news_with_body
    from ..students import Stage1Student, build_student

    params, paths, tokens = inputs.params, inputs.paths, inputs.tokens
    s, p, ids = params.student, params.stage1, params.teacher.ids
    tables, _ = read_teachers(paths, ids, ("title", "body"), inputs.n_slots)
    body_news, skipped = news_with_body(tokens)
    if len(body_news) == 0:
        others = ", ".join(n for n in method_names() if not get_method(n).stage1)
        raise DataError("distill_stage1: no news has a body (abstract) to match titles against; "
                        f"use a student.method without stage 1 ({others})")
    all_news = tokens.column("news_index").to_numpy().astype(np.int64)
    titles = _Recorder(NewsTokens(tokens, "title_ids"))
    batches = TitleBodyBatches(body_news, all_news, titles, NewsTokens(tokens, "body_ids"), p.negatives, p.seed)

    def collate(rows):
        batch = batches(rows)
        cand_news = torch.from_numpy(titles.last)[batch["candidates"]]
        batch["teacher_titles"] = tables["title"][:, cand_news]
        batch["teacher_bodies"] = tables["body"][:, batch["news_index"]]
        return batch

    student = build_student(params.plm.name, s.layers, params.plm.news_dim, p.seed)
    module = Stage1Student(student, len(ids), tables["title"].shape[-1], p.tau)
    if inputs.accelerator.is_main_process:
        log.info("stage 1: a %d-layer student learns title-body matching from %d post-trained checkpoints "
                 "(%s news with a body, %s without skipped)", s.layers, len(ids), f"{len(body_news):,}", f"{skipped:,}")
    return TrainingStep(module, student, info={"teachers": list(ids), "stage1_params": asdict(p),
                                               "news_skipped": skipped},
                        inputs=[paths.emb_file(i) for i in ids], collate=collate, n_rows=len(body_news))


def build_stage2(inputs: MethodInputs) -> TrainingStep:
    from ...train.distill import load_stage1_student, read_teachers
    from ..students import Stage2Student

    params, paths = inputs.params, inputs.paths
    p, ids = params.stage2, params.teacher.ids
    student = load_stage1_student(params, paths)
    tables, users = read_teachers(paths, ids, ("news",), inputs.n_slots, user_encoders=True)
    tables = tables["news"]
    module = Stage2Student(student, users, tables.shape[-1], p.tau, inputs.ce_weight)

    def extra(batch):
        return {"teacher_news": tables[:, batch["news_index"]]}

    return TrainingStep(module, student, collate_extra=extra, info={"teachers": list(ids)},
                        inputs=[*(paths.emb_file(i) for i in ids), paths.stage1 / "heads.safetensors"])


METHOD = StudentMethod(
    name="tinynewsrec",
    display="Tiny-NewsRec",
    stage1=True,
    teachers="all",
    ce_weight=0.2,
    sections=("stage1", "stage2"),
    validate=validate,
    build_stage1=build_stage1,
    build_stage2=build_stage2,
)
