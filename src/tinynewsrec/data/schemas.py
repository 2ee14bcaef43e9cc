"""Explicit pyarrow schemas of every Parquet artifact.

News ids are mapped once, in the download stage, to a dense ``news_index`` (int32)
that is global across the train and dev splits: train news get 1..N_train in file
order, dev-only news follow. Index 0 is reserved for padding, so no news has it.
Every later artifact refers to news by ``news_index`` only.
"""

import pyarrow as pa

#: data/mind/{train,dev}/news.parquet
NEWS = pa.schema(
    [
        pa.field("news_id", pa.string(), nullable=False),
        pa.field("news_index", pa.int32(), nullable=False),
        pa.field("category", pa.string()),
        pa.field("subcategory", pa.string()),
        pa.field("title", pa.string()),
        pa.field("abstract", pa.string()),
        pa.field("url", pa.string()),
        pa.field("title_entities", pa.string()),  # raw JSON text as in MIND
        pa.field("abstract_entities", pa.string()),
    ]
)

#: data/mind/{train,dev}/behaviors.parquet
BEHAVIORS = pa.schema(
    [
        pa.field("impression_id", pa.int64(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("time", pa.timestamp("ms")),  # Parquet has no seconds unit
        pa.field("history", pa.list_(pa.int32()), nullable=False),  # oldest first, deduplicated
        pa.field("candidates", pa.list_(pa.int32()), nullable=False),
        pa.field("labels", pa.list_(pa.int8())),  # null for an unlabeled (test) impression
    ]
)

#: data/samples/train.parquet: one row per click. ``candidates[0]`` is the clicked news,
#: ``candidates[1:]`` its K = ``data.npratio`` non-clicked news from the same impression
#: (so the training target is always index 0; models are permutation-invariant over candidates).
TRAIN_SAMPLES = pa.schema(
    [
        pa.field("impression_id", pa.int64(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("history", pa.list_(pa.int32()), nullable=False),  # last data.history_len clicks
        pa.field("candidates", pa.list_(pa.int32()), nullable=False),
    ]
)

#: data/samples/dev.parquet: one row per impression, all its candidates with labels.
DEV_SAMPLES = pa.schema(
    [
        pa.field("impression_id", pa.int64(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("history", pa.list_(pa.int32()), nullable=False),
        pa.field("candidates", pa.list_(pa.int32()), nullable=False),
        pa.field("labels", pa.list_(pa.int8())),
    ]
)

#: data/tokens/news.parquet: one row per news of both splits, token ids with [CLS] ... [SEP],
#: truncated to plm.title_len / plm.body_len, unpadded (padding happens per batch).
TOKENS = pa.schema(
    [
        pa.field("news_index", pa.int32(), nullable=False),
        pa.field("title_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("body_ids", pa.list_(pa.int32()), nullable=False),
    ]
)

#: where the split stage writes the token table
TOKENS_PATH = "data/tokens/news.parquet"


def read_tokens(path=TOKENS_PATH) -> pa.Table:
    """data/tokens/news.parquet (:data:`TOKENS`), or a one-line error naming the split stage."""
    from ..io import read_parquet

    return read_parquet(path, stage="split", schema=TOKENS)
