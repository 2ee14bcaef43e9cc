"""Teacher fine-tuning: each post-trained checkpoint ``step_i`` is fine-tuned as PLM-NR -> teacher i.

Tiny-NewsRec trains M teachers, one from each of the last M domain post-training
checkpoints, on the news recommendation task: PLM-NR's click cross-entropy over
1 clicked + K non-clicked candidates (``candidates[0]`` is the click in
data/samples/train.parquet). Only the PLM's top ``plm.trainable_layers`` layers and the
heads (attention pooling, dense, user encoder) train; the embeddings and lower layers are
the raw PLM's, so the shared frozen-layer cache (data/cache/frozen/title) feeds every
step and each distinct news of a batch is encoded once (``collate_train``).

Decisions where the design is silent:

- Seed: teacher i trains with ``teacher.seed + i`` (data order and dropout), so that
  teachers that share an origin (``post_train.method: none``) still differ.
- Optimizer: Adam on the trainable weights at ``teacher.lr``, no schedule, gradient
  norm clipped to 1 (``LoopConfig`` default), as in the original code's Adam.
- Resume: the loop (:func:`~tinynewsrec.train.loop.fit`) keeps a resume point after each
  epoch in ``.cache/checkpoints/teacher_<i>``. It is only used when the fingerprint (the
  teacher params, ``plm.trainable_layers``, the number of processes and SHA-256 hashes of
  the origin checkpoint, the training samples and the cache) matches, and it is
  deleted once the teacher folder is written.
- Training curves: the mean loss and accuracy (how often the click scores highest)
  over every ``curve_every`` steps (at most ~200 points per run). They are part of the
  resume state, and dvclive writes them into ``metrics/teacher_<i>/`` only when training
  has finished, so a resumed run has the same curves as an uninterrupted one and an
  interrupted run leaves no half-written curve.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from ..errors import DataError, ParamError
from ..io import atomic_dir, read_parquet
from ..models.cache import FrozenCache
from ..models.plmnr import PLMNR, click_loss, collate_train
from ..params import Params
from .checkpoint import Checkpointer, fingerprint
from .loop import LoopConfig, fit

log = logging.getLogger("tinynewsrec")

#: most points a training curve keeps (steps are averaged in groups to stay under it)
CURVE_POINTS = 200


@dataclass(frozen=True)
class TeacherPaths:
    """Where teacher i reads and writes (the DVC layout by default, see :meth:`default`)."""

    origin: Path  # models/post_train/step_i, a PLMNR checkpoint
    cache: Path  # the frozen-layer cache of titles
    samples: Path  # data/samples/train.parquet
    out: Path  # models/teacher_i
    metrics: Path  # metrics/teacher_i (dvclive)
    checkpoint: Path  # .cache/checkpoints/teacher_i (resume state)

    @classmethod
    def default(cls, teacher_id: int) -> "TeacherPaths":
        return cls(
            origin=Path(f"models/post_train/step_{teacher_id}"),
            cache=Path("data/cache/frozen/title"),
            samples=Path("data/samples/train.parquet"),
            out=Path(f"models/teacher_{teacher_id}"),
            metrics=Path(f"metrics/teacher_{teacher_id}"),
            checkpoint=Path(f".cache/checkpoints/teacher_{teacher_id}"),
        )


def teacher_name(teacher_id: int) -> str:
    return f"teacher_{teacher_id}"


def check_teacher_id(teacher_id: int, ids: list[int]) -> None:
    """Raise :class:`ParamError` unless ``teacher_id`` is one of ``teacher.ids``."""
    if teacher_id not in ids:
        raise ParamError(f"teacher {teacher_id} is not in params.yaml teacher.ids {ids}")


def sha256_files(paths: list[Path]) -> str:
    """SHA-256 over the bytes of ``paths`` in order (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def checkpoint_files(folder: Path) -> list[Path]:
    """The weight files of a PLMNR checkpoint folder (heads + PLM), in a fixed order."""
    return [folder / "heads.safetensors", *sorted((folder / "plm").glob("*.safetensors"))]


# --- training curve ------------------------------------------------------------------


@dataclass
class TrainingCurve:
    """Mean loss and accuracy over every ``every`` training steps, by global step.

    ``add`` is called once per step (from the step function); ``flush`` closes a partial
    group at the end of an epoch. ``state()``/``load_state()`` make it part of the resume
    point, so a resumed run ends with the same curve as an uninterrupted one.
    """

    every: int = 1
    step: int = 0
    points: list[dict] = field(default_factory=list)
    _sums: dict = field(default_factory=dict)
    _count: int = 0

    def add(self, **values: float) -> None:
        self.step += 1
        self._count += 1
        for k, v in values.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        if self._count >= self.every:
            self.flush()

    def flush(self, *_: object) -> None:
        if self._count:
            self.points.append({"step": self.step, **{k: v / self._count for k, v in self._sums.items()}})
        self._sums, self._count = {}, 0

    def state(self) -> dict:
        return {"every": self.every, "step": self.step, "points": self.points}

    def load_state(self, state: dict) -> None:
        self.every, self.step, self.points = state["every"], state["step"], list(state["points"])
        self._sums, self._count = {}, 0

    def write(self, folder: Path, summary: dict) -> None:
        """Write the curve (``plots/metrics/train/<name>.tsv``, x = step) and ``summary``
        (``metrics.json``) into ``folder`` with dvclive, atomically."""
        from dvclive import Live

        with atomic_dir(folder) as tmp:
            live = Live(dir=str(tmp), save_dvc_exp=False, dvcyaml=None, report=None)
            for point in self.points:
                live.step = point["step"]
                for k, v in point.items():
                    if k != "step":
                        live.log_metric(f"train/{k}", v)
            live.summary = dict(summary)
            live.end()


class CurveCheckpointer(Checkpointer):
    """A :class:`Checkpointer` whose resume point also holds the training curve."""

    def __init__(self, folder: str | os.PathLike, config_fingerprint: str, curve: TrainingCurve):
        super().__init__(folder, config_fingerprint)
        self.curve = curve

    def save(self, model, optimizer, counters: dict) -> None:
        super().save(model, optimizer, {**counters, "curve": self.curve.state()})

    def load(self, model, optimizer) -> dict | None:
        counters = super().load(model, optimizer)
        if counters is not None and "curve" in counters:
            self.curve.load_state(counters["curve"])
        return counters


# --- fine-tuning ---------------------------------------------------------------------


@dataclass
class TeacherRun:
    """What :func:`train_teacher` hands to :func:`save_teacher`."""

    teacher_id: int
    model: torch.nn.Module  # as prepared by the accelerator
    history: list[dict]  # per-epoch mean loss/accuracy
    curve: TrainingCurve
    checkpointer: Checkpointer
    origin_meta: dict
    origin_sha256: str
    seed: int


def teacher_step(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """One PLM-NR step: loss = CE(s, 0) over the click and its K non-clicks; also the
    share of samples whose click scores highest (``accuracy``)."""
    scores = model(batch)
    loss = click_loss(scores)
    accuracy = (scores.detach().argmax(dim=-1) == 0).float().mean().item()
    return loss, {"accuracy": accuracy}


def load_origin(paths: TeacherPaths, trainable_layers: int) -> tuple[PLMNR, dict]:
    """The post-trained checkpoint ``step_i`` as a PLMNR (top layers trainable) and its config."""
    if not (paths.origin / "config.json").exists():
        raise DataError(
            f"{paths.origin} is missing: run the post_train stage first (dvc repro post_train)"
        )
    model = PLMNR.from_pretrained(paths.origin, trainable_layers=trainable_layers)
    meta = json.loads((paths.origin / "config.json").read_text(encoding="utf-8"))
    return model, meta


def load_cache(paths: TeacherPaths, model: PLMNR) -> FrozenCache:
    """The frozen-layer title cache, checked against ``model``'s frozen bottom."""
    if not (paths.cache / "cache.json").exists():
        raise DataError(f"{paths.cache} is missing: run the cache_frozen stage first (dvc repro cache_frozen)")
    cache = FrozenCache(paths.cache)
    cache.check_model(model.plm)
    return cache


def load_samples(paths: TeacherPaths):
    """History and candidates of data/samples/train.parquet (click at candidates[0])."""
    table = read_parquet(paths.samples, stage="split", columns=["history", "candidates"])
    if table.num_rows == 0:
        raise DataError(f"{paths.samples} has no training samples; check the data params and rerun split")
    return table


def train_teacher(
    params: Params,
    teacher_id: int,
    paths: TeacherPaths,
    accelerator,
) -> TeacherRun:
    """Fine-tune ``models/post_train/step_<teacher_id>`` as PLM-NR on the training samples.

    Resumes from the last finished epoch when a matching resume point exists. Runs the
    same on every process under ``accelerate launch`` (the loop shards the batches).
    Raises :class:`~tinynewsrec.train.loop.NonFiniteLossError` naming the teacher, epoch
    and step if the loss becomes NaN or infinite.
    """
    t = params.teacher
    check_teacher_id(teacher_id, t.ids)
    name = teacher_name(teacher_id)
    model, origin_meta = load_origin(paths, params.plm.trainable_layers)
    cache = load_cache(paths, model)
    table = load_samples(paths)
    origin_sha = sha256_files(checkpoint_files(paths.origin))

    seed = t.seed + teacher_id
    cfg = LoopConfig(epochs=t.epochs, batch_size=t.batch_size, seed=seed,
                     max_steps_per_epoch=t.max_steps_per_epoch, name=name)
    batches = math.ceil(table.num_rows / (t.batch_size * accelerator.num_processes))
    steps_per_epoch = batches if t.max_steps_per_epoch is None else min(batches, t.max_steps_per_epoch)
    curve = TrainingCurve(every=max(1, math.ceil(t.epochs * steps_per_epoch / CURVE_POINTS)))

    config_fingerprint = fingerprint(
        "finetune_teacher/1", teacher_id, {k: v for k, v in asdict(t).items() if k != "ids"},
        params.plm.trainable_layers, accelerator.num_processes,
        origin_sha, sha256_files([paths.samples]), sha256_files([paths.cache / "cache.json", paths.cache / "offsets.npy"]),
    )
    checkpointer = CurveCheckpointer(paths.checkpoint, config_fingerprint, curve)

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=t.lr)
    model, optimizer = accelerator.prepare(model, optimizer)

    def collate(rows: list[int]) -> dict:
        return collate_train(table.take(np.asarray(rows, dtype=np.int64)), cache)

    def step(model, batch):
        loss, parts = teacher_step(model, batch)
        curve.add(loss=loss.item(), **parts)
        return loss, parts

    if accelerator.is_main_process:
        log.info("fine-tuning %s from %s: %d epoch(s) of %s steps at batch %d, %s training samples",
                 name, paths.origin, t.epochs, f"{steps_per_epoch:,}", t.batch_size, f"{table.num_rows:,}")
    result = fit(accelerator, model, optimizer, table.num_rows, collate, step, cfg,
                 checkpointer=checkpointer, on_epoch_end=curve.flush)
    return TeacherRun(teacher_id, model, result["history"], curve, checkpointer, origin_meta, origin_sha, seed)


def save_teacher(run: TeacherRun, params: Params, paths: TeacherPaths, accelerator) -> None:
    """Write ``models/teacher_<i>/`` (PLMNR checkpoint; config.json notes the origin, the steps
    and the final train loss) and the curves in ``metrics/teacher_<i>/``, both atomically, on
    the main process; then delete the resume point."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        last = run.history[-1] if run.history else {}
        origin = {k: v for k, v in run.origin_meta.items() if k not in ("model", "plmnr", "num_layers")}
        extra = {
            "stage": "finetune_teacher",
            "teacher_id": run.teacher_id,
            "origin": {**origin, "path": paths.origin.as_posix(), "sha256": run.origin_sha256},
            "epochs": len(run.history),
            "steps": run.curve.step,
            "seed": run.seed,
            "train_loss": last.get("loss"),
            "train_accuracy": last.get("accuracy"),
            "teacher_params": asdict(params.teacher),
            "trainable_layers": params.plm.trainable_layers,
        }
        summary = {"train": {"loss": last.get("loss"), "accuracy": last.get("accuracy")},
                   "epochs": len(run.history), "steps": run.curve.step}
        with atomic_dir(paths.out) as tmp:  # the teacher replaces the old one only once its curves are written
            accelerator.unwrap_model(run.model).save_pretrained(tmp, **extra)
            run.curve.write(paths.metrics, summary)
        run.checkpointer.clear()
        log.info("wrote %s (final train loss %.4f)", paths.out, last.get("loss", math.nan))
    accelerator.wait_for_everyone()
