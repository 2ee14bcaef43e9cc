"""What several training stages share: the frozen-layer caches of titles and bodies, the
training samples' reader, and the writer of a trained model and its curves.

Post-training and fine-tuning train only the PLM's top ``plm.trainable_layers`` layers,
so its embeddings and lower layers are the same in the raw PLM, every post-trained
checkpoint and every teacher. Their token states are computed once per news by the
``cache_frozen`` stage (``data/cache/frozen/{title,body}``) and reused by every later
stage, which checks the cache against its own model (:meth:`FrozenCache.check_model`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import DataError
from ..io import atomic_dir, read_parquet
from ..models.plm import load_plm
from ..params import Params
from .loop import full_state_dict

log = logging.getLogger("tinynewsrec")

CACHE_DIR = Path("data/cache/frozen")


def num_frozen(params: Params, depth: int) -> int:
    """Layers below the trainable top: depth - plm.trainable_layers (at least 0)."""
    return max(0, depth - params.plm.trainable_layers)


def build_caches(params: Params, tokens: pa.Table, out_dir: str | Path = CACHE_DIR, progress: bool = True) -> dict:
    """Build the title and body caches of every news in ``tokens`` (schemas.TOKENS) from the raw PLM."""
    from ..models.cache import build_frozen_cache

    plm = load_plm(params.plm.name, trainable_layers=0)
    frozen = num_frozen(params, len(plm.encoder.layer))
    dtype = np.float16 if params.plm.cache_dtype == "float16" else np.float32
    news_index = tokens.column("news_index").to_numpy()
    out = {}
    for column, name in (("title_ids", "title"), ("body_ids", "body")):
        path = build_frozen_cache(plm, tokens.column(column), frozen, params.plm.encode_batch, Path(out_dir) / name,
                                  dtype=dtype, progress=progress, news_index=news_index, source=params.plm.name)
        out[name] = path
    return {"num_frozen_layers": frozen, "paths": out}


def read_samples(path: Path) -> pa.Table:
    """History and candidates of the training samples (data/samples/train.parquet; the click
    is ``candidates[0]``), for the teachers and the students alike."""
    table = read_parquet(path, stage="split", columns=["history", "candidates"])
    if table.num_rows == 0:
        raise DataError(f"{path} has no training samples; check the data params and rerun split")
    return table


def save_trained(model, folder: Path, metrics_dir: Path, history: list[dict], curve, checkpointer, accelerator,
                 prepared=None, **info) -> None:
    """Write a trained PLM-NR (teacher or student) and its curves, atomically, on the main process;
    then drop its resume point.

    ``folder``: the checkpoint (``model.save_pretrained``; config.json holds ``info`` and the
    epochs, steps, final train loss and accuracy); ``metrics_dir``: the curve (``curve``, a
    :class:`~tinynewsrec.train.finetune_teacher.TrainingCurve`) and a summary of the last epoch, by dvclive.
    ``prepared``: the module that went through ``accelerator.prepare`` and holds ``model`` (itself,
    or a training wrapper): its full state is gathered on EVERY process first
    (:func:`~tinynewsrec.train.loop.full_state_dict`, a collective under FSDP / ZeRO-3) and
    ``model``'s part of it is written.
    """
    accelerator.wait_for_everyone()
    state = None
    if prepared is not None:
        full = full_state_dict(accelerator, prepared)
        prefix = next(name for name, m in accelerator.unwrap_model(prepared).named_modules() if m is model)
        prefix = f"{prefix}." if prefix else ""
        state = {k[len(prefix):]: v for k, v in full.items() if k.startswith(prefix)}
    if accelerator.is_main_process:
        last = history[-1] if history else {}
        extra = {**info, "epochs": len(history), "steps": curve.step, "train_loss": last.get("loss"),
                 "train_accuracy": last.get("accuracy")}
        summary = {"train": {k: v for k, v in last.items() if k != "epoch"}, "epochs": len(history),
                   "steps": curve.step}
        with atomic_dir(folder) as tmp:  # the model replaces the old one only once its curves are written
            model.save_pretrained(tmp, state_dict=state, **extra)
            curve.write(metrics_dir, summary)
        checkpointer.clear()
        log.info("wrote %s (final train loss %.4f)", folder, last.get("loss", math.nan))
    accelerator.wait_for_everyone()
