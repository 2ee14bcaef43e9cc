"""Training the student: Tiny-NewsRec's two distillation stages and the baselines.

``distill_stage1`` (:func:`train_stage1`, ``student.method: tinynewsrec`` only): a fresh
student (the PLM's first ``student.layers`` layers + new heads) learns the post-training task
(title-body matching, as ``post_train``'s ``dp``) from the M post-trained checkpoints' title
and body embeddings (``data/teacher_emb/teacher_<i>.safetensors``: ``title``, ``body``).
Other methods skip it: the stage then writes a ``models/student_stage1/config.json`` that
says so (``"model": "unused"``), so a DVC experiment that only changes ``student.method``
reruns this stage in a second.

``distill_stage2`` (:func:`train_stage2`): the student learns news recommendation on the
training samples:

- ``tinynewsrec``: from the stage-1 student; the M teachers' news embeddings (``news``) and
  their user encoders (both exported with the embeddings; the encoders run frozen); stage-2 loss;
- ``finetune``: from the raw PLM's first L layers, click CE only (no teacher);
- ``tinybert``: from the raw PLM's first L layers; one frozen teacher
  (``student.teacher``, default the last of ``teacher.ids``) run on each batch's news, its
  hidden states and attention scores matched layer by layer (``student.layer_map``,
  ``student.distill_layers``), KD CE and 0.1 CE;
- ``newsbert``: from the raw PLM's first L layers; the same teacher trained together with
  the student (its top ``plm.trainable_layers`` layers), sharing pooling, dense and user
  heads; momentum distillation of gradients with ``stage2.beta``.

Decisions where the design is silent:

- The student's L layers all train; its embeddings stay frozen (as every model's here).
- A student starts from the RAW PLM's first L layers (the paper's students start from the
  general PLM; the teachers' post-training reaches it through stage 1's distillation only).
- Teachers of TinyBERT / NewsBERT run from the shared frozen-layer cache
  (``data/cache/frozen/title``) when the matched layers lie above it (the default ``last``
  map with 2 layers: teacher layers 5 and 6 of MiniLM-L6), else from token ids.
- NewsBERT starts from a fine-tuned teacher (the original trains its teacher from the PLM at
  the same time; a fine-tuned start is the stronger teacher and costs no extra CPU time), and
  the momentum distillation is applied after gradient clipping, just before the optimiser step.
- The learned projections P_i are fresh in each stage (the original code's stage 2 builds new
  ones) and are not saved: they are training aids, not part of the deployed student.
- Adam at ``stage{1,2}.lr``, no schedule, gradient norm clipped to 1, like the teachers.
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
import pyarrow.parquet as pq
import torch
from torch import nn

from ..data import schemas
from ..distill.layer_map import layer_map
from ..distill.losses import layer_param_groups, momentum_distill_grads
from ..distill.students import NewsBERTPair, Stage1Student, Stage2Student, TinyBERTStudent, build_student
from ..errors import DataError, ParamError
from ..teacher_emb import USER_ENCODER_PREFIX, read_teacher_emb
from ..io import atomic_dir
from ..models.cache import FrozenCache
from ..models.plmnr import PLMNR, NewsTokens, UserEncoder, collate_train
from ..params import Params
from .checkpoint import fingerprint
from .finetune import CURVE_POINTS, CurveCheckpointer, TrainingCurve, sha256_files
from .loop import LoopConfig, fit
from .post_train import TitleBodyBatches, news_with_body

log = logging.getLogger("tinynewsrec")

#: the hard-label CE weight of each method when ``stage2.ce_weight`` is null (DESIGN.md)
CE_WEIGHTS = {"tinynewsrec": 0.2, "tinybert": 0.1, "newsbert": 0.1, "finetune": 1.0}


@dataclass(frozen=True)
class DistillPaths:
    """Where the student stages read and write (the DVC layout, relative to the repository root)."""

    tokens: Path = Path("data/tokens/news.parquet")
    samples: Path = Path("data/samples/train.parquet")
    teacher_emb: Path = Path("data/teacher_emb")
    models: Path = Path("models")
    cache: Path = Path("data/cache/frozen/title")
    stage1: Path = Path("models/student_stage1")
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
    if not paths.tokens.exists():
        raise DataError(f"{paths.tokens} is missing: run the split stage first (dvc repro split)")
    return pq.read_table(paths.tokens, schema=schemas.TOKENS)


def read_samples(paths: DistillPaths) -> pa.Table:
    if not paths.samples.exists():
        raise DataError(f"{paths.samples} is missing: run the split stage first (dvc repro split)")
    table = pq.read_table(paths.samples, columns=["history", "candidates"])
    if table.num_rows == 0:
        raise DataError(f"{paths.samples} has no training samples; check the data params and rerun split")
    return table


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


class _Recorder:
    """A token lookup that remembers the news of its last ``batch`` call (the title pool of a
    title-body batch, which the teachers' title embeddings must be aligned with)."""

    def __init__(self, lookup):
        self.lookup, self.last = lookup, np.zeros(0, dtype=np.int64)

    def batch(self, news_index) -> dict:
        self.last = np.asarray(news_index, dtype=np.int64)
        return self.lookup.batch(news_index)


# --- the shared loop ------------------------------------------------------------------------


def _train(accelerator, name: str, module: nn.Module, student: PLMNR, n_rows: int, collate, cfg: LoopConfig,
           lr: float, config_fingerprint: str, paths: DistillPaths, momentum: tuple | None = None) -> DistillRun:
    """Adam on every trainable weight of ``module`` (shared ones once), ``fit`` with a resume
    point and a training curve. ``momentum``: ``(student_params, teacher_groups, beta)`` of
    NewsBERT's momentum distillation, applied just before each optimiser step."""
    trainable = list({id(p): p for p in module.parameters() if p.requires_grad}.values())
    optimizer = torch.optim.Adam(trainable, lr=lr)
    batches = math.ceil(n_rows / (cfg.batch_size * accelerator.num_processes))
    steps = batches if cfg.max_steps_per_epoch is None else min(batches, cfg.max_steps_per_epoch)
    curve = TrainingCurve(every=max(1, math.ceil(cfg.epochs * steps / CURVE_POINTS)))
    checkpointer = CurveCheckpointer(paths.checkpoints / name, config_fingerprint, curve)
    prepared, optimizer = accelerator.prepare(module, optimizer)
    hook = None
    if momentum is not None:
        student_params, teacher_groups, beta = momentum
        inner = getattr(optimizer, "optimizer", optimizer)
        hook = inner.register_step_pre_hook(
            lambda *_: momentum_distill_grads(student_params, teacher_groups, beta))

    def step(model, batch):
        loss, parts = model(batch)
        curve.add(loss=loss.item(), **{k: v for k, v in parts.items() if k != "total"})
        return loss, parts

    if accelerator.is_main_process:
        log.info("%s: %d epoch(s) of %s steps at batch %d over %s rows; %s trainable weights", name, cfg.epochs,
                 f"{steps:,}", cfg.batch_size, f"{n_rows:,}", f"{sum(p.numel() for p in trainable):,}")
    try:
        result = fit(accelerator, prepared, optimizer, n_rows, collate, step, cfg, checkpointer=checkpointer,
                     on_epoch_end=curve.flush)
    finally:
        if hook is not None:
            hook.remove()
    return DistillRun(name, prepared, student, result["history"], curve, checkpointer)


def save_student(run: DistillRun, folder: Path, metrics_dir: Path, accelerator, **info) -> None:
    """Write the student (PLM-NR checkpoint; config.json says how it was made) and its curves
    (dvclive, ``metrics_dir``), atomically, on the main process; then drop the resume point."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        last = run.history[-1] if run.history else {}
        extra = {**info, "epochs": len(run.history), "steps": run.curve.step, "train_loss": last.get("loss"),
                 "train_accuracy": last.get("accuracy")}
        with atomic_dir(folder) as tmp:
            run.student.save_pretrained(tmp, **extra)
        summary = {"train": {k: v for k, v in last.items() if k != "epoch"}, "epochs": len(run.history),
                   "steps": run.curve.step}
        run.curve.write(metrics_dir, summary)
        run.checkpointer.clear()
        log.info("wrote %s (final train loss %.4f)", folder, last.get("loss", math.nan))
    accelerator.wait_for_everyone()


# --- stage 1 --------------------------------------------------------------------------------


def stage1_used(params: Params) -> bool:
    return params.student.method == "tinynewsrec"


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
    """Tiny-NewsRec stage 1: title-body matching distilled from the M post-trained checkpoints."""
    s, p, ids = params.student, params.stage1, params.teacher.ids
    tokens = read_tokens(paths)
    n_slots = int(tokens.column("news_index").to_numpy().max()) + 1
    tables, _ = read_teachers(paths, ids, ("title", "body"), n_slots)
    body_news, skipped = news_with_body(tokens)
    if len(body_news) == 0:
        raise DataError("distill_stage1: no news has a body (abstract) to match titles against; "
                        "use student.method finetune, tinybert or newsbert")
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
    fp = fingerprint("distill_stage1/1", asdict(p), s.layers, params.plm.name, ids, accelerator.num_processes,
                     sha256_files([paths.tokens, *(paths.emb_file(i) for i in ids)]))
    cfg = LoopConfig(epochs=p.epochs, batch_size=p.batch_size, seed=p.seed, max_steps_per_epoch=p.max_steps_per_epoch,
                     name="student_stage1")
    if accelerator.is_main_process:
        log.info("stage 1: a %d-layer student learns title-body matching from %d post-trained checkpoints "
                 "(%s news with a body, %s without skipped)", s.layers, len(ids), f"{len(body_news):,}", f"{skipped:,}")
    run = _train(accelerator, "student_stage1", module, student, len(body_news), collate, cfg, p.lr, fp, paths)
    run.info = {"stage": "distill_stage1", "method": s.method, "layers": s.layers, "teachers": list(ids),
                "stage1_params": asdict(p), "news_skipped": skipped}
    return run


# --- stage 2 --------------------------------------------------------------------------------


def _stage1_student(params: Params, paths: DistillPaths) -> PLMNR:
    folder = need_model(paths.stage1, "distill_stage1")
    meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if meta.get("model") != "plmnr" or meta.get("num_layers") != params.student.layers:
        raise DataError(f"{folder} holds no {params.student.layers}-layer stage-1 student "
                        f"({meta.get('reason') or meta.get('num_layers')}); rerun it (dvc repro distill_stage1)")
    return PLMNR.from_pretrained(folder, trainable_layers=params.student.layers)


def _teacher_lookup(teacher: PLMNR, tokens: pa.Table, cache_dir: Path, lowest_needed: int):
    """The teacher's input: the frozen-layer cache if it fits the teacher and starts at or below
    layer ``lowest_needed`` (the lowest layer whose input must be computed), else token ids."""
    if (cache_dir / "cache.json").exists():
        cache = FrozenCache(cache_dir)
        if cache.num_frozen_layers <= lowest_needed:
            try:
                cache.check_model(teacher.plm)
                return cache
            except DataError as e:
                log.info("the teacher cannot use the frozen-layer cache (%s); it runs from token ids", e)
    return NewsTokens(tokens, "title_ids")


def train_stage2(params: Params, accelerator, paths: DistillPaths = DistillPaths()) -> DistillRun:
    """The student's training on clicks, by ``student.method`` (module docstring)."""
    s, p, ids = params.student, params.stage2, params.teacher.ids
    method = s.method
    ce_weight = CE_WEIGHTS[method] if p.ce_weight is None else p.ce_weight
    table = read_samples(paths)
    tokens = read_tokens(paths)
    n_slots = int(tokens.column("news_index").to_numpy().max()) + 1
    news_tokens = NewsTokens(tokens, "title_ids")
    inputs = [paths.samples, paths.tokens]
    info = {"stage": "distill_stage2", "method": method, "layers": s.layers, "stage2_params": asdict(p),
            "ce_weight": ce_weight}
    extra = None  # what collate adds for the teachers
    momentum = None

    if method == "tinynewsrec":
        student = _stage1_student(params, paths)
        tables, users = read_teachers(paths, ids, ("news",), n_slots, user_encoders=True)
        tables = tables["news"]
        module = Stage2Student(student, users, tables.shape[-1], p.tau, ce_weight)
        inputs += [*(paths.emb_file(i) for i in ids), paths.stage1 / "heads.safetensors"]
        info["teachers"] = list(ids)

        def extra(batch):
            return {"teacher_news": tables[:, batch["news_index"]]}
    else:
        student = build_student(params.plm.name, s.layers, params.plm.news_dim, p.seed)
    if method == "finetune":
        module = Stage2Student(student, None, ce_weight=ce_weight)
    elif method in ("tinybert", "newsbert"):
        tid = s.teacher_id(ids)
        folder = need_model(paths.teacher(tid), "finetune_teacher")
        trainable = 0 if method == "tinybert" else params.plm.trainable_layers
        teacher = PLMNR.from_pretrained(folder, trainable_layers=trainable)
        depth = len(teacher.plm.encoder.layer)
        if s.layers > depth:
            raise ParamError(f"params.yaml: student.layers is {s.layers}, more than the teacher's {depth} layers")
        pairs = layer_map(depth, s.layers, k=s.distill_layers, strategy=s.layer_map)
        lowest = min(t for _, t in pairs) - (1 if method == "tinybert" else 0)
        lookup = _teacher_lookup(teacher, tokens, paths.cache, lowest)
        if method == "tinybert":
            module = TinyBERTStudent(student, teacher, pairs, p.tau, ce_weight)
        else:
            module = NewsBERTPair(student, teacher, pairs, p.tau, ce_weight)
            momentum = (*layer_param_groups(student.plm.encoder.layer, teacher.plm.encoder.layer, pairs), p.beta)
        inputs += [folder / "heads.safetensors", *sorted((folder / "plm").glob("*.safetensors"))]
        info.update(teacher=tid, layer_map=[list(x) for x in pairs])
        if accelerator.is_main_process:
            log.info("%s: a %d-layer student learns from teacher_%d (layers %s), the teacher reads %s", method,
                     s.layers, tid, pairs, "the frozen-layer cache" if isinstance(lookup, FrozenCache) else "token ids")

        def extra(batch):
            return {"teacher_states": lookup.batch(batch["news_index"].numpy())}

    def collate(rows):
        batch = collate_train(table.take(np.asarray(rows, dtype=np.int64)), news_tokens)
        if extra is not None:
            batch.update(extra(batch))
        return batch

    fp = fingerprint("distill_stage2/1", method, asdict(s), asdict(p), params.plm.name, params.plm.trainable_layers,
                     ids, accelerator.num_processes, sha256_files(inputs))
    cfg = LoopConfig(epochs=p.epochs, batch_size=p.batch_size, seed=p.seed, max_steps_per_epoch=p.max_steps_per_epoch,
                     name="student")
    run = _train(accelerator, "student", module, student, table.num_rows, collate, cfg, p.lr, fp, paths, momentum)
    run.info = info
    return run
