"""Tokenizing news text once, and padding token ids per batch.

Every news is tokenized once, in the split stage, with the PLM's fast (Rust) tokenizer:
the title (what the PLM-NR news encoder reads) and the body (MIND's abstract, what
domain post-training matches titles against). Ids are stored unpadded, as
``[CLS] ... [SEP]`` truncated to ``plm.title_len`` / ``plm.body_len`` tokens in total;
:func:`pad_batch` pads each batch to its own longest sequence when a model reads it.

Decisions where the design is silent:

* A missing (null) or empty title or abstract tokenizes as the empty string, i.e.
  ``[CLS] [SEP]``: the news keeps its place and the model sees no text, rather than
  the news being dropped (MIND has many empty abstracts).
* The train and dev news tables overlap (the same news in both splits, same
  ``news_index``); the first row of each ``news_index`` is kept.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from tqdm.auto import tqdm

from ..errors import DataError
from . import schemas

log = logging.getLogger("tinynewsrec")


class _Encoder:
    """Batched ``[CLS] ... [SEP]`` ids truncated to ``max_len``, as ``tokenizer(texts, truncation=True)`` gives them.

    A Hugging Face fast tokenizer is driven through a private copy of its Rust backend
    (``backend_tokenizer``) with truncation set: the same ids as the Python ``__call__``
    (checked in the tests) without its per-sequence Python conversion, which costs as much
    as the tokenization itself. Any other tokenizer is called the ordinary way.
    """

    def __init__(self, tokenizer, max_len: int):
        self.tokenizer, self.max_len = tokenizer, max_len
        self.backend = None
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None:
            from tokenizers import Tokenizer

            self.backend = Tokenizer.from_str(backend.to_str())
            self.backend.no_padding()
            self.backend.enable_truncation(max_len, direction=getattr(tokenizer, "truncation_side", "right"))

    def __call__(self, texts: list[str]) -> pa.Array:
        list_type = schemas.TOKENS.field("title_ids").type
        if self.backend is not None:
            encodings = self.backend.encode_batch_fast(texts, add_special_tokens=True)
            ids = [e.ids for e in encodings]
        else:
            ids = self.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=self.max_len)["input_ids"]
        return pa.array(ids, type=list_type)


def tokenize_news(
    news: pa.Table,
    tokenizer,
    title_len: int,
    body_len: int,
    batch_size: int = 4096,
    progress: bool = True,
) -> pa.Table:
    """Token ids of every news' title and body, one row per ``news_index``, sorted by it.

    ``news`` has at least ``news_index``, ``title`` and ``abstract`` (schema
    :data:`schemas.NEWS`; it may be the concatenation of the train and dev tables).
    Returns a table with schema :data:`schemas.TOKENS`: ``title_ids`` and ``body_ids``
    start with the tokenizer's [CLS], end with its [SEP], and have at most
    ``title_len`` / ``body_len`` ids.
    """
    missing = [c for c in ("news_index", "title", "abstract") if c not in news.column_names]
    if missing:
        raise DataError(
            f"news table has no column {missing[0]!r} (has {', '.join(news.column_names)}); "
            "it must follow tinynewsrec.data.schemas.NEWS: rerun the download stage"
        )
    if title_len < 2 or body_len < 2:
        raise ValueError(f"title_len and body_len must leave room for [CLS] and [SEP], got {title_len}, {body_len}")
    index = news["news_index"].to_numpy().astype(np.int64)
    if len(index) and index.min() < 1:
        raise DataError(
            f"news table has news_index {index.min()}: 0 is reserved for padding and indices start at 1; "
            "rerun the download stage"
        )
    # first row of each news_index, in news_index order
    _, first = np.unique(index, return_index=True)
    news = news.select(["news_index", "title", "abstract"]).take(pa.array(first)).combine_chunks()
    n = news.num_rows
    if n < len(index):
        log.info("%s news rows are repeats of the same news in train and dev; tokenizing %s distinct news",
                 f"{len(index) - n:,}", f"{n:,}")

    titles = pc.fill_null(news["title"], "")
    bodies = pc.fill_null(news["abstract"], "")
    encode_title, encode_body = _Encoder(tokenizer, title_len), _Encoder(tokenizer, body_len)
    title_parts, body_parts = [], []
    with tqdm(total=n, desc="tokenizing news", unit="news", unit_scale=True, disable=not progress) as bar:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            title_parts.append(encode_title(titles.slice(start, stop - start).to_pylist()))
            body_parts.append(encode_body(bodies.slice(start, stop - start).to_pylist()))
            bar.update(stop - start)
    list_type = schemas.TOKENS.field("title_ids").type
    return pa.Table.from_arrays(
        [
            news["news_index"].cast(pa.int32()),
            pa.chunked_array(title_parts, type=list_type),
            pa.chunked_array(body_parts, type=list_type),
        ],
        schema=schemas.TOKENS,
    )


def pad_batch(
    lists: list[list[int]] | pa.Array | pa.ChunkedArray,
    pad_id: int = 0,
    pad_to: int | None = None,
) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Pad token id sequences to the longest one of the batch (dynamic padding).

    Returns ``(ids, attention_mask)``, both ``(batch, length)`` int64, with 1 in the mask
    at real tokens. ``pad_to`` pads to a fixed length instead (at least the longest
    sequence), e.g. to time every model on the same shapes. A null entry is an empty sequence.
    """
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    if not isinstance(lists, pa.Array):
        lists = pa.array(lists, type=pa.list_(pa.int64()))
    values = lists.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    longest = int(lengths.max()) if len(lengths) else 0
    width = longest if pad_to is None else pad_to
    if width < longest:
        raise ValueError(f"pad_to={pad_to} is shorter than the longest sequence of the batch ({longest})")
    rows = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.cumsum(lengths) - lengths
    cols = np.arange(len(values)) - np.repeat(starts, lengths)
    ids = np.full((len(lengths), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(lengths), width), dtype=np.int64)
    ids[rows, cols] = values
    mask[rows, cols] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)
