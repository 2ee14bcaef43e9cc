import numpy as np
import pyarrow as pa
import pytest

from tinynewsrec.data.schemas import BEHAVIORS
from tinynewsrec.errors import DataError
from tinynewsrec.popularity import popularity_scores


def behaviors(rows):
    """rows: (history, candidates, labels) per impression."""
    return pa.Table.from_pylist(
        [
            {"impression_id": i, "user_id": f"U{i}", "time": None, "history": h,
             "candidates": c, "labels": y}
            for i, (h, c, y) in enumerate(rows, 1)
        ],
        schema=BEHAVIORS,
    )


TRAIN = behaviors(
    [
        ([2], [1, 2, 3], [1, 0, 0]),
        ([], [2, 3], [0, 1]),
        ([2, 5], [1, 4], [1, 0]),
    ]
)
DEV = behaviors(
    [
        ([1, 4], [5, 6], [1, 0]),
        ([4], [6, 5], [1, 0]),
    ]
)


def test_train_clicks_plus_dev_history_occurrences():
    scores = popularity_scores(TRAIN, DEV, n_news=7)
    # news 1: 2 train clicks + 1 dev history; 3: 1 click; 4: 2 dev histories; others none
    assert scores.tolist() == [0, 3, 0, 1, 2, 0, 0]
    assert scores.dtype == np.float64


def test_dev_labels_and_train_histories_are_not_counted():
    scores = popularity_scores(TRAIN, DEV, n_news=7)
    assert scores[6] == 0  # clicked in dev only
    assert scores[2] == 0 and scores[5] == 0  # in train histories only


def test_table_in_several_chunks_gives_the_same_scores():
    chunked = pa.concat_tables([TRAIN.slice(0, 1), TRAIN.slice(1, 1), TRAIN.slice(2)])
    assert chunked.column("candidates").num_chunks == 3
    whole = popularity_scores(TRAIN, DEV.slice(1), 7)
    assert popularity_scores(chunked, DEV.slice(1), 7).tolist() == whole.tolist()


def test_padding_index_is_never_popular():
    dev = behaviors([([0, 0, 1], [5, 6], [1, 0])])
    assert popularity_scores(TRAIN, dev, 7)[0] == 0


def test_news_index_beyond_n_news_is_a_data_error():
    with pytest.raises(DataError, match="news_index"):
        popularity_scores(TRAIN, DEV, n_news=4)


def test_unlabeled_train_impressions_are_a_data_error():
    train = behaviors([([], [1, 2], None)])
    with pytest.raises(DataError, match="no labels"):
        popularity_scores(train, DEV, n_news=7)
