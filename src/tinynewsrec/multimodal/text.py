"""The text half of a multimodal news vector: the text model's news vectors, encoded once.

``encode_text`` runs the news encoder of ``multimodal.text_model`` (default ``models/student``,
the distilled student: the cheap encoder this project exists to make) over the title of every
news of data/tokens/news.parquet, once, and stores the vectors as a news vector table
(:mod:`tinynewsrec.multimodal.tables`). The multimodal models then train on top of these frozen
vectors, as DL_News_Rec trains on frozen BERT vectors and Legommenders caches frozen item
vectors: a training step never runs the PLM. (The fusion module also takes a live text encoder,
for end-to-end training on a GPU: :class:`tinynewsrec.multimodal.fusion.MultimodalNewsEncoder`.)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from ..evaluate import encode_news, news_lookup
from ..io import checkpoint_sha256
from ..recommender import load_recommender

log = logging.getLogger("tinynewsrec")


def text_table(model_folder: str | os.PathLike, tokens: pa.Table, *, cache_dir: str | os.PathLike | None,
               batch_size: int, progress: bool = True) -> tuple[torch.Tensor, np.ndarray, dict]:
    """``(vectors [n_slots, D], present [n_slots], meta)`` of every news in ``tokens`` by the
    news encoder of the model in ``model_folder`` (a PLM-NR kind: a teacher, a student, a pruned
    student)."""
    model = load_recommender(model_folder)
    news = tokens.column("news_index").to_numpy().astype(np.int64)
    n_slots = int(news.max()) + 1 if len(news) else 1
    # through the frozen-layer cache when it fits the model's PLM (news_lookup checks), else from token ids
    lookup = news_lookup(model.plm, tokens, "title_ids", cache_dir, str(model_folder))
    log.info("encoding the titles of %s news with %s", f"{len(news):,}", model_folder)
    vectors = encode_news(model, lookup, news, n_slots=n_slots, batch_size=batch_size, progress=progress,
                          desc=f"encoding titles ({Path(model_folder).name})").cpu()
    present = np.zeros(n_slots, np.uint8)
    present[news[news > 0]] = 1
    meta = {"source": "text", "model": str(model_folder), "model_sha256": checkpoint_sha256(model_folder),
            "dim": int(vectors.shape[1]), "news": int(present.sum())}
    return vectors, present, meta
