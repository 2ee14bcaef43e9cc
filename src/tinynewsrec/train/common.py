"""What several training stages share: the frozen-layer caches of titles and bodies.

Post-training and fine-tuning train only the PLM's top ``plm.trainable_layers`` layers,
so its embeddings and lower layers are the same in the raw PLM, every post-trained
checkpoint and every teacher. Their token states are computed once per news by the
``cache_frozen`` stage (``data/cache/frozen/{title,body}``) and reused by every later
stage, which checks the cache against its own model (:meth:`FrozenCache.check_model`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ..models.plm import load_plm
from ..params import Params

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
