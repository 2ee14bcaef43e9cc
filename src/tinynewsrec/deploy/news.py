"""News tables for deployment: the pipeline's ``data/mind/<split>/news.parquet`` or a MIND
``news.tsv``, and their titles as token ids the way the split stage makes them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError


def read_news_table(path: str | os.PathLike) -> pa.Table:
    """``news_id`` and ``title`` (and ``category`` where there is one) of a news table: a Parquet
    file with those columns (data/mind/<split>/news.parquet) or a MIND news.tsv (parsed by the
    pipeline's parser: malformed lines and repeated ids are skipped with a warning)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such news file (expected a news.parquet or a MIND news.tsv)")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"{path}: not a readable Parquet file ({' '.join(str(e).split())})") from None
    else:
        from ..data.mind import _read_news

        table, _ = _read_news(path)
    for col in ("news_id", "title"):
        if col not in table.column_names:
            raise DataError(f"{path}: has no column {col!r} (columns: {', '.join(table.column_names)})")
    cols = [c for c in ("news_id", "title", "category") if c in table.column_names]
    table = table.select(cols).combine_chunks()
    ids = table["news_id"]
    if pc.count_distinct(ids).as_py() != table.num_rows:  # news.parquet of both splits concatenated
        _, first = np.unique(ids.to_numpy(zero_copy_only=False).astype(str), return_index=True)
        table = table.take(pa.array(np.sort(first)))
    if table.num_rows == 0:
        raise DataError(f"{path}: holds no news")
    return table.set_column(table.column_names.index("title"), "title", pc.fill_null(table["title"], ""))


def title_tokens(titles: list[str], tokenizer, title_len: int):
    """:class:`~tinynewsrec.models.plmnr.NewsTokens` of ``titles`` at news_index 1..N (0 is padding):
    ``[CLS] ... [SEP]`` cut to ``title_len`` ids, exactly as the split stage tokenizes them."""
    from ..data.tokenize import _Encoder
    from ..models.plmnr import NewsTokens

    ids = _Encoder(tokenizer, title_len)(list(titles))
    keys = pa.array(np.arange(1, len(ids) + 1, dtype=np.int32))
    return NewsTokens(pa.table({"news_index": keys, "title_ids": ids}))
