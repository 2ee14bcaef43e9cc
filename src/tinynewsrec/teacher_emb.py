"""data/teacher_emb/teacher_<i>.safetensors: what distillation reads of teacher i.

Written by the ``export_teacher_emb`` stage (:func:`tinynewsrec.evaluate.export_teacher_embeddings`
computes the tensors), read by ``distill_stage1`` / ``distill_stage2``: ``news`` (teacher i's
embedding of every title), ``title`` / ``body`` (post-trained step_i's embeddings of every title
and body), each [max news_index + 1, news_dim] float32 with row 0 zeros, and teacher i's user
encoder weights (``user_encoder.*``). A module of its own so that the distillation stages do not
depend on the evaluation code.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import DataError
from .io import atomic_path

TEACHER_EMB_FORMAT = "tinynewsrec.teacher_emb"
TEACHER_EMB_VERSION = "1"
#: tensors of a teacher_{i}.safetensors file
TEACHER_EMB_KEYS = ("news", "title", "body")
#: prefix of the teacher's user encoder weights in a teacher_{i}.safetensors file
USER_ENCODER_PREFIX = "user_encoder."


def write_teacher_emb(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
    """Write a teacher_{i}.safetensors atomically; ``metadata`` values are stored as strings
    (with ``format`` and ``version`` added)."""
    from safetensors.torch import save_file

    meta = {"format": TEACHER_EMB_FORMAT, "version": TEACHER_EMB_VERSION}
    meta.update({k: str(v) for k, v in metadata.items()})
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)


def read_teacher_emb(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a file written by :func:`write_teacher_emb`: ``(tensors, metadata)``, checked."""
    from safetensors import safe_open

    path = Path(path)
    how = "rerun the export_teacher_emb stage (dvc repro export_teacher_emb)"
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, ValueError, RuntimeError) as e:
        raise DataError(f"{path}: cannot read teacher embeddings ({e}); {how}") from None
    if meta.get("format") != TEACHER_EMB_FORMAT:
        raise DataError(f"{path}: not a {TEACHER_EMB_FORMAT} file; {how}")
    missing = [k for k in TEACHER_EMB_KEYS if k not in tensors]
    shapes = {tuple(tensors[k].shape) for k in TEACHER_EMB_KEYS if k in tensors}
    if missing or len(shapes) != 1:
        raise DataError(f"{path}: missing {missing} or tensors of different shapes {sorted(shapes)}; {how}")
    return tensors, meta
