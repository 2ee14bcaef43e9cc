"""Tokenizing news titles and bodies with the default PLM's tokenizer; dynamic padding."""

from __future__ import annotations

import pyarrow as pa
import pytest
import torch

from tinynewsrec.data import schemas
from tinynewsrec.data.tokenize import pad_batch, tokenize_news
from tinynewsrec.errors import DataError
from tinynewsrec.models.plm import load_tokenizer

CLS, SEP = 101, 102
LONG = "The city council approved a new budget for parks, schools and roads after a long debate on Tuesday night"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("default")


def news(rows: list[tuple[int, str | None, str | None]]) -> pa.Table:
    n = len(rows)
    return pa.Table.from_pydict(
        {
            "news_id": [f"N{r[0]}" for r in rows],
            "news_index": [r[0] for r in rows],
            "category": ["news"] * n,
            "subcategory": ["newsus"] * n,
            "title": [r[1] for r in rows],
            "abstract": [r[2] for r in rows],
            "url": [""] * n,
            "title_entities": ["[]"] * n,
            "abstract_entities": ["[]"] * n,
        },
        schema=schemas.NEWS,
    )


def test_ids_start_with_cls_and_end_with_sep(tokenizer):
    tokens = tokenize_news(news([(1, "Stocks rally", "Markets rose on Friday.")]), tokenizer, 16, 16, progress=False)
    for ids in (tokens["title_ids"][0].as_py(), tokens["body_ids"][0].as_py()):
        assert ids[0] == CLS and ids[-1] == SEP and len(ids) > 2


def test_long_text_is_truncated_to_the_length_with_sep_kept(tokenizer):
    tokens = tokenize_news(news([(1, LONG, LONG)]), tokenizer, title_len=8, body_len=12, progress=False)
    title, body = tokens["title_ids"][0].as_py(), tokens["body_ids"][0].as_py()
    assert len(title) == 8 and title[-1] == SEP
    assert len(body) == 12 and body[-1] == SEP


def test_empty_or_missing_text_gives_cls_sep(tokenizer):
    table = news([(1, "A title", ""), (2, "", None), (3, None, "  ")])
    tokens = tokenize_news(table, tokenizer, 16, 16, progress=False)
    assert tokens["body_ids"].to_pylist() == [[CLS, SEP]] * 3
    assert tokens["title_ids"].to_pylist()[1:] == [[CLS, SEP]] * 2


def test_overlapping_train_and_dev_news_are_tokenized_once_sorted_by_index(tokenizer):
    train = news([(3, "Third", None), (1, "First", None)])
    dev = news([(1, "First", None), (2, "Second", None)])
    tokens = tokenize_news(pa.concat_tables([train, dev]), tokenizer, 16, 16, progress=False)
    assert tokens["news_index"].to_pylist() == [1, 2, 3]


def test_ids_equal_a_direct_tokenizer_call(tokenizer):
    texts = [
        "Dodgers' ace dazzles in 5-2 win over the Giants \u2014 fans go wild",
        "Caf\u00e9 owners in S\u00e3o Paulo say COVID-19 rules hurt business: 'We're DONE'",
        LONG,
        "\u5317\u4eac news \U0001F600 emoji and   extra   spaces",
    ]
    tokens = tokenize_news(news([(i + 1, t, t) for i, t in enumerate(texts)]), tokenizer, 16, 24, progress=False)
    assert tokens["title_ids"].to_pylist() == tokenizer(texts, truncation=True, max_length=16)["input_ids"]
    assert tokens["body_ids"].to_pylist() == tokenizer(texts, truncation=True, max_length=24)["input_ids"]


def test_a_tokenizer_without_rust_backend_is_called_directly(tokenizer):
    class PlainTokenizer:  # a tokenizer with only the __call__ interface
        def __call__(self, texts, **kwargs):
            return tokenizer(texts, **kwargs)

    table = news([(1, LONG, "A short body."), (2, "Stocks rally", None)])
    plain = tokenize_news(table, PlainTokenizer(), 8, 12, progress=False)
    assert plain.equals(tokenize_news(table, tokenizer, 8, 12, progress=False))


def test_batch_size_does_not_change_ids(tokenizer):
    table = news([(i, f"title number {i} " * (i % 5), LONG[: 7 * i]) for i in range(1, 12)])
    one = tokenize_news(table, tokenizer, 10, 20, batch_size=1, progress=False)
    many = tokenize_news(table, tokenizer, 10, 20, batch_size=4, progress=False)
    assert one.to_pylist() == many.to_pylist()


def test_tokens_schema_is_exactly_tokens(tokenizer):
    tokens = tokenize_news(news([(2, "B", "b"), (1, "A", "a")]), tokenizer, 16, 16, progress=False)
    assert tokens.schema.equals(schemas.TOKENS, check_metadata=True)


def test_padding_index_in_news_is_a_data_error(tokenizer):
    with pytest.raises(DataError, match="news_index 0"):
        tokenize_news(news([(0, "A", "a")]), tokenizer, 16, 16, progress=False)


def test_pad_batch_pads_to_the_longest_with_mask():
    ids, mask = pad_batch([[101, 5, 102], [101, 102], []], pad_id=0)
    assert ids.dtype == torch.int64 and mask.dtype == torch.int64
    assert ids.tolist() == [[101, 5, 102], [101, 102, 0], [0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]


def test_pad_batch_reads_arrow_lists_and_pads_to_a_fixed_length():
    arr = pa.chunked_array([pa.array([[7, 8]], pa.list_(pa.int32())), pa.array([[9]], pa.list_(pa.int32()))])
    ids, mask = pad_batch(arr, pad_id=-1, pad_to=4)
    assert ids.tolist() == [[7, 8, -1, -1], [9, -1, -1, -1]]
    assert mask.sum(dim=1).tolist() == [2, 1]
