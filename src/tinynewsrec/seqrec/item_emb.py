"""Item-embedding tables for the sequential recommenders: one safetensors file per source.

A table has one row per item of data/sequences/items.parquet plus row 0, the padding (zeros):
``[n_items + 1, width]`` float32 under the key ``"items"``, with metadata saying what made it.
Every source embeds the item's text (MIND: its title) tokenized with ``plm.name``'s tokenizer
to ``plm.title_len`` tokens, exactly as the news recommenders see a title:

- ``random``: normal(0, 0.02) of width ``seqrec.hidden`` (seeded by ``seqrec.seed``): the ID-only
  baseline; a model started from it always trains its table;
- ``plm_mean`` / ``plm_cls``: the raw PLM's (``plm.name``, all its layers) last hidden states,
  mean-pooled over the title's tokens or its [CLS] vector (the seed code's choice);
- ``post_train``: the news encoder of the post-trained checkpoint ``models/post_train/step_<t>``
  (t = ``seqrec.teacher``; for ``post_train.method: none`` that is the raw PLM with untrained heads);
- ``teacher``: teacher t's news encoder (``models/teacher_<t>``);
- ``student``: the distilled student's news encoder (``models/student``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from ..errors import DataError
from ..io import atomic_path

log = logging.getLogger("tinynewsrec")

ITEM_EMB_DIR = Path("data/item_emb")
ITEM_EMB_FORMAT = "tinynewsrec-item-emb"
KEY = "items"


def source_folder(source: str, teacher: int) -> Path | None:
    """The model folder a source encodes with (None for random and the raw PLM)."""
    return {
        "post_train": Path(f"models/post_train/step_{teacher}"),
        "teacher": Path(f"models/teacher_{teacher}"),
        "student": Path("models/student"),
    }.get(source)


def item_tokens(items: pa.Table, tokenizer, title_len: int):
    """The items' text as a :class:`~tinynewsrec.models.plmnr.NewsTokens` keyed by item number."""
    from ..data.tokenize import tokenize_news
    from ..models.plmnr import NewsTokens

    news = pa.table({
        "news_index": items["item"],
        "title": items["text"],
        "abstract": pa.array([""] * items.num_rows, type=pa.string()),
    })
    tokens = tokenize_news(news, tokenizer, title_len=title_len, body_len=2, progress=False)
    return NewsTokens(tokens, column="title_ids")


@torch.inference_mode()
def encode_items(encode, tokens, n_items: int, batch_size: int, desc: str) -> torch.Tensor:
    """``[n_items + 1, D]``: ``encode(batch)`` of items 1..n_items (row 0 zeros), batched by length."""
    index = np.arange(1, n_items + 1)
    order = index[np.argsort(np.diff(tokens.offsets)[index], kind="stable")]  # similar lengths together
    rows, parts = [], []
    with tqdm(total=n_items, desc=desc, unit="items") as bar:
        for lo in range(0, n_items, batch_size):
            idx = order[lo : lo + batch_size]
            parts.append(encode(tokens.batch(idx)).float())
            rows.append(torch.from_numpy(idx))
            bar.update(len(idx))
    vecs = torch.cat(parts)
    table = torch.zeros(n_items + 1, vecs.shape[1])
    table[torch.cat(rows)] = vecs
    return table


def raw_plm_encoder(name: str, pooling: str):
    """The raw PLM (all layers, frozen) pooled by ``mean`` over real tokens or by ``cls``."""
    from ..models.plm import load_plm

    plm = load_plm(name, trainable_layers=0).eval()

    def encode(batch: dict) -> torch.Tensor:
        states = plm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        if pooling == "cls":
            return states[:, 0]
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        return (states * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    return encode


def build_table(source: str, items: pa.Table, *, plm_name: str, title_len: int, hidden: int, teacher: int,
                seed: int, batch_size: int = 128) -> tuple[torch.Tensor, dict]:
    """The table of ``source`` for ``items`` (data/sequences/items.parquet) and its metadata."""
    n_items = items.num_rows
    if items.num_rows and items["item"].to_pylist() != list(range(1, n_items + 1)):
        raise DataError("data/sequences/items.parquet: items must be numbered 1..N in order; rerun the sequences stage")
    meta = {"source": source, "n_items": n_items}
    if source == "random":
        g = torch.Generator().manual_seed(seed)
        table = torch.randn(n_items + 1, hidden, generator=g) * 0.02
        table[0] = 0
        return table, meta | {"seed": seed, "std": 0.02}
    from ..models.plm import load_tokenizer

    tokens = item_tokens(items, load_tokenizer(plm_name), title_len)
    if source in ("plm_mean", "plm_cls"):
        encode = raw_plm_encoder(plm_name, "cls" if source == "plm_cls" else "mean")
        meta |= {"model": plm_name, "pooling": source.removeprefix("plm_")}
    else:
        from ..io import checkpoint_sha256
        from ..recommender import load_recommender

        folder = source_folder(source, teacher)
        if not (folder / "config.json").exists():
            stage = {"post_train": "post_train", "teacher": f"finetune_teacher@{teacher}",
                     "student": "distill_stage2"}[source]
            raise DataError(f"{folder} is missing: the {source} item table encodes with it; run `dvc repro {stage}`")
        model = load_recommender(folder)  # any news-encoding kind: a PLM-NR, a pruned one (rosita)
        encode = model.encode_news
        meta |= {"model": folder.as_posix(), "model_sha256": checkpoint_sha256(folder)}
    table = encode_items(encode, tokens, n_items, batch_size, desc=f"item table {source}")
    return table, meta | {"tokenizer": plm_name, "title_len": title_len}


def write_item_table(path: str | os.PathLike, table: torch.Tensor, meta: dict) -> None:
    """Write a table atomically (metadata values as strings, with the format name)."""
    from safetensors.torch import save_file

    metadata = {"format": ITEM_EMB_FORMAT, "width": str(table.shape[1])} | {k: str(v) for k, v in meta.items()}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file({KEY: table.contiguous()}, str(tmp), metadata=metadata)


def read_item_table(path: str | os.PathLike, n_items: int | None = None) -> tuple[torch.Tensor, dict]:
    """A table written by :func:`write_item_table`, checked (and against ``n_items`` when given)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    how = f"rerun `dvc repro item_emb@{path.stem}`"
    if not path.exists():
        raise DataError(f"{path} is missing; {how}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            table = f.get_tensor(KEY) if KEY in f.keys() else None
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:
        raise DataError(f"{path}: cannot read the item table ({' '.join(str(e).split())}); {how}") from None
    if meta.get("format") != ITEM_EMB_FORMAT or table is None or table.ndim != 2:
        raise DataError(f"{path}: not an item-embedding table; {how}")
    if n_items is not None and table.shape[0] != n_items + 1:
        raise DataError(f"{path}: {table.shape[0] - 1} items, but data/sequences has {n_items}; {how}")
    if not torch.isfinite(table).all():
        raise DataError(f"{path}: the table has non-finite values; {how}")
    return table, meta
