"""News vector tables of the multimodal branch: one safetensors file per source of vectors.

A table holds ``vectors`` (float32 [n_slots, D], indexed by ``news_index``; row 0 is the padding
and stays zeros) and ``present`` (uint8 [n_slots]: 1 where the news has a vector, 0 for the padding
and for a news without one, e.g. a missing picture, whose row is zeros), plus string metadata
(what made it: the encoder, its width, counts). ``data/mm/text.safetensors`` (encode_text: the
text model's news vectors) and ``data/image_emb/images.safetensors`` (encode_images) are tables.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..io import atomic_path, read_safetensors

TEXT_TABLE = Path("data/mm/text.safetensors")
IMAGE_TABLE = Path("data/image_emb/images.safetensors")


def write_table(path: str | os.PathLike, vectors: torch.Tensor | np.ndarray, present: torch.Tensor | np.ndarray,
                meta: dict) -> None:
    """Write a table atomically; ``meta`` values are JSON-encoded (safetensors metadata is str -> str)."""
    from safetensors.torch import save_file

    vectors = torch.as_tensor(vectors, dtype=torch.float32).contiguous()
    present = torch.as_tensor(present).to(torch.uint8).contiguous()
    if vectors.ndim != 2 or present.shape != (vectors.shape[0],):
        raise ValueError(f"a table needs vectors [n, D] and present [n], got {tuple(vectors.shape)} and "
                         f"{tuple(present.shape)}")
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file({"vectors": vectors, "present": present}, str(tmp),
                  metadata={k: json.dumps(v) for k, v in meta.items()})


def read_table(path: str | os.PathLike, *, stage: str, n_slots: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """``(vectors [n, D] float32, present [n] bool, meta)``; a one-line DataError when the file is
    missing, corrupt, or holds another number of rows than ``n_slots`` (then it is stale)."""
    from safetensors import safe_open

    tensors = read_safetensors(path, stage=stage)
    if "vectors" not in tensors or "present" not in tensors:
        raise DataError(f"{path}: not a news vector table (no 'vectors' / 'present'); rerun the {stage} stage")
    vectors, present = tensors["vectors"].float(), tensors["present"].bool()
    if n_slots is not None and vectors.shape[0] != n_slots:
        raise DataError(f"{path} has {vectors.shape[0]:,} rows but the news table has {n_slots:,}: it is stale; "
                        f"rerun the {stage} stage")
    with safe_open(str(path), framework="pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    return vectors, present, meta
