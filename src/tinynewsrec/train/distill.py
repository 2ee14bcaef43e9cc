"""Training the student: the method-agnostic side of ``distill_stage1`` and ``distill_stage2``.

What a student learns from is its method's business: ``student.method`` names a module of
:mod:`tinynewsrec.distill.methods` (``tinynewsrec``, ``no_kd``, ``last_layers_kd``,
``newsbert``, ...), whose builders return the training module, the extra collate entries, the
config.json info and what the loop needs (:class:`~tinynewsrec.distill.methods.TrainingStep`).
This module reads the common inputs, asks the registry, runs the shared loop and writes the
student.

``distill_stage1`` (:func:`train_stage1`): only methods that declare ``stage1=True``
(Tiny-NewsRec's post-training distillation). Other methods skip it: the stage then writes a
``models/student_stage1/config.json`` that says so (``"model": "unused"``), so a DVC
experiment that only changes ``student.method`` reruns this stage in a second.

``distill_stage2`` (:func:`train_stage2`): every method; the student learns news
recommendation on the training samples (PLM-NR's unique-news batches plus the method's
``collate_extra``).

Decisions where the design is silent (each method module lists its own):

- The student's L layers all train; its embeddings stay frozen (as every model's here).
- A student starts from the RAW PLM's first L layers (the paper's students start from the
  general PLM; the teachers' post-training reaches it through stage 1's distillation only).
- The hard-label click CE weight is ``stage2.ce_weight``, or the method's own when null.
- The learned projections P_i are fresh in each stage (the original code's stage 2 builds new
  ones) and are not saved: they are training aids, not part of the deployed student.
- Adam at ``stage{1,2}.lr``, gradient norm clipped to 1, like the teachers; the learning-rate
  schedule is ``stage{1,2}.schedule``, or the method's own when null (constant for Tiny-NewsRec,
  no_kd, last-k KD and NewsBERT, whose papers' code has none; warm-up + linear decay for
  standard KD and both TinyBERTs, as their code). A method's ``before_optimizer_step``
  (NewsBERT's momentum distillation) runs after clipping, right before the optimiser step.
- Resume points live in ``.cache/checkpoints/student_stage1`` / ``student`` with a
  fingerprint of the params and the SHA-256 of every input.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from ..data import schemas
from ..distill.methods import MethodInputs, StudentMethod, get_method
from ..errors import DataError, ParamError
from ..teacher_emb import USER_ENCODER_PREFIX, read_teacher_emb
from ..io import atomic_dir
from ..models.plmnr import PLMNR, NewsTokens, UserEncoder, collate_train
from ..params import Params
from .checkpoint import fingerprint
from .common import read_samples, save_trained
from ..io import sha256_files
from .finetune_teacher import CURVE_POINTS, CurveCheckpointer, TrainingCurve
from .loop import LoopConfig, fit

log = logging.getLogger("tinynewsrec")


@dataclass(frozen=True)
class DistillPaths:
    """Where the student stages read and write (the DVC layout, relative to the repository root)."""

    tokens: Path = Path("data/tokens/news.parquet")
    samples: Path = Path("data/samples/train.parquet")
    teacher_emb: Path = Path("data/teacher_emb")
    models: Path = Path("models")
    cache: Path = Path("data/cache/frozen/title")
    stage1: Path = Path("models/student_stage1")
    #: rosita's pruned student (the prune stage) and the teacher-free HSK store (hsk_store)
    pruned: Path = Path("models/pruned")
    hsk: Path = Path("data/hsk")
    out: Path = Path("models/student")
    stage1_metrics: Path = Path("metrics/student_stage1")
    metrics: Path = Path("metrics/student")
    checkpoints: Path = Path(".cache/checkpoints")

    def teacher(self, i: int) -> Path:
        return self.models / f"teacher_{i}"

    def emb_file(self, i: int) -> Path:
        return self.teacher_emb / f"teacher_{i}.safetensors"


@dataclass
class DistillRun:
    """A finished training: the prepared module, its student, the curve and what config.json says."""

    name: str
    module: nn.Module
    student: PLMNR
    history: list[dict]
    curve: TrainingCurve
    checkpointer: CurveCheckpointer
    info: dict = field(default_factory=dict)


# --- inputs ------------------------------------------------------------------------------------


def read_tokens(paths: DistillPaths) -> pa.Table:
    return schemas.read_tokens(paths.tokens)


def read_teachers(paths: DistillPaths, ids: list[int], keys: tuple[str, ...], n_slots: int,
                  user_encoders: bool = False) -> tuple[dict[str, torch.Tensor], list[UserEncoder]]:
    """The M teachers' exports: ``{key: [M, n_slots, d] float32}`` and, with ``user_encoders``,
    each teacher's user encoder (frozen, eval mode), all from
    ``data/teacher_emb/teacher_<i>.safetensors``."""
    out: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    users = []
    for i in ids:
        path = paths.emb_file(i)
        how = "rerun export_teacher_emb (dvc repro export_teacher_emb)"
        if not path.exists():
            raise DataError(f"{path} is missing: run the export_teacher_emb stage first (dvc repro export_teacher_emb)")
        tensors, meta = read_teacher_emb(path)
        if tensors[keys[0]].shape[0] < n_slots:
            raise DataError(f"{path} has {tensors[keys[0]].shape[0]:,} rows but the news go up to index "
                            f"{n_slots - 1:,}; {how}")
        for k in keys:
            out[k].append(tensors[k][:n_slots].float())
        if user_encoders:
            weights = {k[len(USER_ENCODER_PREFIX):]: v for k, v in tensors.items() if k.startswith(USER_ENCODER_PREFIX)}
            if not weights or "user_query_dim" not in meta:
                raise DataError(f"{path} holds no user encoder (exported by an older version); {how}")
            encoder = UserEncoder(int(meta["news_dim"]), int(meta["user_query_dim"]))
            try:
                encoder.load_state_dict(weights)
            except RuntimeError as e:
                raise DataError(f"{path}: its user encoder does not load ({e}); {how}") from None
            for p in encoder.parameters():
                p.requires_grad_(False)
            users.append(encoder.eval())
    return {k: torch.stack(v) for k, v in out.items()}, users


def need_model(folder: Path, stage: str) -> Path:
    if not (folder / "config.json").exists():
        raise DataError(f"{folder} is missing: run the {stage} stage first (dvc repro {stage})")
    return folder


# --- the shared loop ------------------------------------------------------------------------


def _train(accelerator, name: str, module: nn.Module, student: PLMNR, n_rows: int, collate, cfg: LoopConfig,
           lr: float, config_fingerprint: str, paths: DistillPaths, before_optimizer_step=None) -> DistillRun:
    """Adam on every trainable weight of ``module`` (shared ones once), ``fit`` with a resume
    point and a training curve. ``before_optimizer_step(model)``: a method's edit of the
    gradients, called after clipping, right before each optimiser step."""
    trainable = list({id(p): p for p in module.parameters() if p.requires_grad}.values())
    optimizer = torch.optim.Adam(trainable, lr=lr)
    batches = math.ceil(n_rows / (cfg.batch_size * accelerator.num_processes))
    steps = batches if cfg.max_steps_per_epoch is None else min(batches, cfg.max_steps_per_epoch)
    curve = TrainingCurve(every=max(1, math.ceil(cfg.epochs * steps / CURVE_POINTS)))
    checkpointer = CurveCheckpointer(paths.checkpoints / name, config_fingerprint, curve)
    prepared, optimizer = accelerator.prepare(module, optimizer)

    def step(model, batch):
        loss, parts = model(batch)
        curve.add(loss=loss.item(), **{k: v for k, v in parts.items() if k != "total"})
        return loss, parts

    if accelerator.is_main_process:
        log.info("%s: %d epoch(s) of %s steps at batch %d over %s rows; %s trainable weights", name, cfg.epochs,
                 f"{steps:,}", cfg.batch_size, f"{n_rows:,}", f"{sum(p.numel() for p in trainable):,}")
    result = fit(accelerator, prepared, optimizer, n_rows, collate, step, cfg, checkpointer=checkpointer,
                 on_epoch_end=curve.flush, before_optimizer_step=before_optimizer_step)
    return DistillRun(name, prepared, student, result["history"], curve, checkpointer)


def save_student(run: DistillRun, folder: Path, metrics_dir: Path, accelerator, **info) -> None:
    """Write the student (PLM-NR checkpoint; config.json says how it was made) and its curves
    (dvclive, ``metrics_dir``) with :func:`~tinynewsrec.train.common.save_trained`."""
    save_trained(run.student, folder, metrics_dir, run.history, run.curve, run.checkpointer, accelerator,
                 prepared=run.module, **info)


def _method(params: Params) -> StudentMethod:
    return get_method(params.student.method)


def ce_weight(params: Params) -> float:
    """The hard-label click CE weight: ``stage2.ce_weight``, or the method's own when null."""
    return _method(params).ce_weight if params.stage2.ce_weight is None else params.stage2.ce_weight


def schedule(params: Params, stage_params) -> str:
    """The learning-rate schedule of a student stage: ``stage{1,2}.schedule``, or the method's own when null."""
    return _method(params).schedule if stage_params.schedule is None else stage_params.schedule


def load_stage1_student(params: Params, paths: DistillPaths) -> PLMNR:
    """The student ``distill_stage1`` wrote (a method's stage 2 starts from it), all its layers trainable."""
    folder = need_model(paths.stage1, "distill_stage1")
    meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if meta.get("model") != "plmnr" or meta.get("num_layers") != params.student.layers:
        raise DataError(f"{folder} holds no {params.student.layers}-layer stage-1 student "
                        f"({meta.get('reason') or meta.get('num_layers')}); rerun it (dvc repro distill_stage1)")
    return PLMNR.from_pretrained(folder, trainable_layers=params.student.layers)


def _inputs(params: Params, accelerator, paths: DistillPaths) -> MethodInputs:
    tokens = read_tokens(paths)
    n_slots = int(tokens.column("news_index").to_numpy().max()) + 1
    return MethodInputs(params, accelerator, paths, tokens, n_slots, ce_weight(params))


# --- stage 1 --------------------------------------------------------------------------------


def stage1_used(params: Params) -> bool:
    """Whether ``student.method`` has a first distillation stage (the registry says)."""
    return _method(params).stage1


def write_stage1_unused(params: Params, paths: DistillPaths) -> None:
    """What ``distill_stage1`` writes for a method that has no stage 1: a config.json saying so."""
    reason = f"student.method {params.student.method} has no first distillation stage"
    meta = {"model": "unused", "method": params.student.method, "reason": reason}
    with atomic_dir(paths.stage1) as tmp:
        (tmp / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    with atomic_dir(paths.stage1_metrics) as tmp:
        (tmp / "metrics.json").write_text(json.dumps({"used": False}) + "\n", encoding="utf-8")
    log.info("distill_stage1: %s; nothing to train", reason)


def train_stage1(params: Params, accelerator, paths: DistillPaths = DistillPaths()) -> DistillRun:
    """``distill_stage1`` of ``student.method`` (its ``build_stage1``), e.g. Tiny-NewsRec's
    title-body matching distilled from the M post-trained checkpoints."""
    s, p, ids = params.student, params.stage1, params.teacher.ids
    method = _method(params)
    if not method.stage1:
        raise ParamError(f"params.yaml: student.method {s.method} has no first distillation stage")
    step = method.build_stage1(_inputs(params, accelerator, paths))
    own = asdict(params.method) if params.method is not None else None
    fp = fingerprint("distill_stage1/1", s.method, asdict(p), own, s.layers, params.plm.name, ids,
                     accelerator.num_processes, sha256_files([paths.tokens, *step.inputs]))
    cfg = LoopConfig(epochs=p.epochs, batch_size=p.batch_size, seed=p.seed, max_steps_per_epoch=p.max_steps_per_epoch,
                     name="student_stage1", schedule=schedule(params, p), warmup=p.warmup)
    run = _train(accelerator, "student_stage1", step.module, step.student, step.n_rows, step.collate, cfg, p.lr, fp,
                 paths, step.before_optimizer_step)
    run.info = {"stage": "distill_stage1", "method": s.method, "layers": s.layers, "schedule": cfg.schedule,
                **step.info, **(step.report() if step.report else {})}
    return run


# --- stage 2 --------------------------------------------------------------------------------


def train_stage2(params: Params, accelerator, paths: DistillPaths = DistillPaths()) -> DistillRun:
    """``distill_stage2``: the student's training on clicks, by ``student.method`` (its ``build_stage2``)."""
    s, p, ids = params.student, params.stage2, params.teacher.ids
    method = _method(params)
    table = read_samples(paths.samples)
    inputs = _inputs(params, accelerator, paths)
    news_tokens = NewsTokens(inputs.tokens, "title_ids")
    step = method.build_stage2(inputs)
    extra = step.collate_extra

    def collate(rows):
        batch = collate_train(table.take(np.asarray(rows, dtype=np.int64)), news_tokens)
        if extra is not None:
            batch.update(extra(batch))
        return batch

    # version 2: a NewsBERT teacher may now train more layers, so older resume points do not fit
    own = asdict(params.method) if params.method is not None else None
    fp = fingerprint("distill_stage2/2", s.method, asdict(s), asdict(p), own, params.plm.name,
                     params.plm.trainable_layers, ids, accelerator.num_processes,
                     sha256_files([paths.samples, paths.tokens, *step.inputs]))
    cfg = LoopConfig(epochs=p.epochs, batch_size=p.batch_size, seed=p.seed, max_steps_per_epoch=p.max_steps_per_epoch,
                     name="student", schedule=schedule(params, p), warmup=p.warmup)
    run = _train(accelerator, "student", step.module, step.student, table.num_rows, step.collate or collate, cfg, p.lr,
                 fp, paths, step.before_optimizer_step)
    run.info = {"stage": "distill_stage2", "method": s.method, "layers": s.layers, "stage2_params": asdict(p),
                "ce_weight": inputs.ce_weight, "schedule": cfg.schedule,
                "method_params": own, **step.info, **(step.report() if step.report else {})}
    return run
