"""Training samples (1 click + K non-clicks) and dev impressions cut from behaviors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tinynewsrec.data import schemas
from tinynewsrec.data.split import make_dev_samples, make_train_samples, truncate_lists
from tinynewsrec.errors import DataError


def behaviors(rows: list[tuple[list[int], list[int], list[int] | None]], first_id: int = 1) -> pa.Table:
    """A BEHAVIORS table from (history, candidates, labels) rows."""
    n = len(rows)
    return pa.Table.from_pydict(
        {
            "impression_id": list(range(first_id, first_id + n)),
            "user_id": [f"U{i}" for i in range(n)],
            "time": [None] * n,
            "history": [r[0] for r in rows],
            "candidates": [r[1] for r in rows],
            "labels": [r[2] for r in rows],
        },
        schema=schemas.BEHAVIORS,
    )


def random_behaviors(n: int = 300, seed: int = 0) -> pa.Table:
    """Impressions with 1..30 candidates, 0..3 clicks, distinct news per impression."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        size = int(rng.integers(1, 31))
        cands = rng.choice(np.arange(1, 1000), size=size, replace=False).tolist()
        labels = [0] * size
        for i in rng.choice(size, size=min(size, int(rng.integers(0, 4))), replace=False):
            labels[i] = 1
        rows.append((rng.integers(1, 1000, size=int(rng.integers(0, 80))).tolist(), cands, labels))
    return behaviors(rows)


def impressions_by_id(table: pa.Table) -> dict[int, tuple[set, set, list]]:
    out = {}
    for r in table.to_pylist():
        clicks = {c for c, y in zip(r["candidates"], r["labels"] or []) if y == 1}
        nonclicks = {c for c, y in zip(r["candidates"], r["labels"] or []) if y == 0}
        out[r["impression_id"]] = (clicks, nonclicks, r["history"])
    return out


def test_one_sample_per_click_of_usable_impressions():
    b = random_behaviors()
    samples, counts = make_train_samples(b, npratio=4, history_len=50, seed=1, progress=False)
    expected = sum(len(c) for c, n, _ in impressions_by_id(b).values() if c and n)
    assert samples.num_rows == counts["samples"] == expected


def test_clicked_news_first_then_nonclicks_of_same_impression():
    b = random_behaviors()
    by_id = impressions_by_id(b)
    samples, _ = make_train_samples(b, npratio=4, history_len=50, seed=1, progress=False)
    for r in samples.to_pylist():
        clicks, nonclicks, _ = by_id[r["impression_id"]]
        assert r["candidates"][0] in clicks
        assert set(r["candidates"][1:]) <= nonclicks


def test_every_click_of_an_impression_is_its_own_sample():
    b = behaviors([([1], [10, 11, 12, 13], [1, 0, 1, 0])])
    samples, _ = make_train_samples(b, npratio=1, history_len=5, seed=0, progress=False)
    assert sorted(c[0] for c in samples["candidates"].to_pylist()) == [10, 12]


def test_exactly_k_nonclicks_per_sample():
    b = random_behaviors()
    samples, _ = make_train_samples(b, npratio=3, history_len=50, seed=1, progress=False)
    assert {len(c) for c in samples["candidates"].to_pylist()} == {4}


def test_nonclicks_distinct_when_enough_and_replacement_only_when_needed():
    b = random_behaviors()
    by_id = impressions_by_id(b)
    k = 4
    samples, counts = make_train_samples(b, npratio=k, history_len=50, seed=1, progress=False)
    needed = 0
    for r in samples.to_pylist():
        negs = r["candidates"][1:]
        if len(by_id[r["impression_id"]][1]) >= k:
            assert len(set(negs)) == k
        else:
            needed += 1
    assert needed > 0
    assert counts["samples_with_replacement"] == needed


def test_replacement_draws_repeat_the_few_nonclicks():
    b = behaviors([([1], [10, 11, 12], [1, 0, 0])])
    samples, counts = make_train_samples(b, npratio=5, history_len=5, seed=0, progress=False)
    negs = samples["candidates"][0].as_py()[1:]
    assert len(negs) == 5 and set(negs) <= {11, 12}
    assert counts["samples_with_replacement"] == 1


def test_nonclicks_are_drawn_uniformly():
    # 2000 identical impressions: each of the 10 non-clicks should be drawn with probability 4/10
    b = behaviors([([1], list(range(10, 21)), [1] + [0] * 10)] * 2000)
    samples, _ = make_train_samples(b, npratio=4, history_len=5, seed=3, progress=False)
    negs = np.array(samples["candidates"].to_pylist())[:, 1:]
    freq = np.bincount(negs.ravel(), minlength=21)[11:21]
    assert np.all(np.abs(freq - 800) < 120), freq  # binomial sd ~22


def test_impressions_without_nonclick_or_click_or_labels_are_skipped_and_counted():
    b = behaviors(
        [
            ([1], [10, 11], [1, 0]),  # used
            ([1], [20, 21], [1, 1]),  # no non-click
            ([1], [30, 31], [0, 0]),  # no click
            ([1], [40, 41], None),  # unlabeled
        ]
    )
    samples, counts = make_train_samples(b, npratio=1, history_len=5, seed=0, progress=False)
    assert samples["impression_id"].to_pylist() == [1]
    assert counts["impressions"] == 4
    assert counts["impressions_used"] == 1
    assert counts["skipped_no_nonclick"] == 1
    assert counts["skipped_no_click"] == 1
    assert counts["skipped_unlabeled"] == 1


def test_same_seed_same_samples_other_seed_other_samples():
    b = random_behaviors()
    first, _ = make_train_samples(b, npratio=4, history_len=50, seed=7, progress=False)
    again, _ = make_train_samples(b, npratio=4, history_len=50, seed=7, progress=False)
    other, _ = make_train_samples(b, npratio=4, history_len=50, seed=8, progress=False)
    assert first.equals(again)
    assert first["candidates"].to_pylist() != other["candidates"].to_pylist()


def test_samples_do_not_depend_on_chunk_size():
    b = random_behaviors()
    whole, counts = make_train_samples(b, npratio=4, history_len=20, seed=7, progress=False)
    chunked, chunked_counts = make_train_samples(
        b, npratio=4, history_len=20, seed=7, chunk_impressions=7, progress=False
    )
    assert whole.to_pylist() == chunked.to_pylist()
    assert counts == chunked_counts


def test_history_keeps_the_most_recent_clicks():
    b = behaviors([([1, 2, 3, 4, 5, 6], [10, 11], [1, 0]), ([7, 8], [12, 13], [0, 1])])
    samples, counts = make_train_samples(b, npratio=1, history_len=3, seed=0, progress=False)
    assert samples["history"].to_pylist() == [[4, 5, 6], [7, 8]]
    assert counts["histories_truncated"] == 1


def test_train_schema_is_exactly_train_samples():
    samples, _ = make_train_samples(random_behaviors(50), npratio=4, history_len=10, seed=0, progress=False)
    assert samples.schema.equals(schemas.TRAIN_SAMPLES, check_metadata=True)


def test_counts_are_json_ready_ints():
    _, counts = make_train_samples(random_behaviors(50), npratio=4, history_len=10, seed=0, progress=False)
    assert all(type(v) is int for v in counts.values())


def test_no_sample_at_all_is_a_data_error():
    b = behaviors([([1], [10, 11], None), ([1], [20, 21], [0, 0])])
    with pytest.raises(DataError, match="no training sample"):
        make_train_samples(b, npratio=1, history_len=5, seed=0, progress=False)


def test_labels_not_matching_candidates_is_a_data_error_naming_the_impression():
    b = behaviors([([1], [10, 11], [1, 0]), ([1], [20, 21, 22], [1, 0])], first_id=100)
    with pytest.raises(DataError, match="impression 101 has 3 candidates but 2 labels"):
        make_train_samples(b, npratio=1, history_len=5, seed=0, progress=False)


def test_dev_has_one_row_per_impression_with_labels_kept():
    b = behaviors(
        [
            ([1, 2, 3], [10, 11, 12], [0, 1, 0]),
            ([], [20], [0]),
            ([4], [30, 31], None),
        ]
    )
    dev, counts = make_dev_samples(b, history_len=2, progress=False)
    assert dev.to_pylist() == [
        {"impression_id": 1, "user_id": "U0", "history": [2, 3], "candidates": [10, 11, 12], "labels": [0, 1, 0]},
        {"impression_id": 2, "user_id": "U1", "history": [], "candidates": [20], "labels": [0]},
        {"impression_id": 3, "user_id": "U2", "history": [4], "candidates": [30, 31], "labels": None},
    ]
    assert counts["impressions"] == 3 and counts["candidates"] == 6 and counts["clicks"] == 1
    assert counts["no_click"] == 1 and counts["unlabeled"] == 1 and counts["histories_truncated"] == 1


def test_dev_schema_is_exactly_dev_samples():
    dev, _ = make_dev_samples(random_behaviors(50), history_len=10, progress=False)
    assert dev.schema.equals(schemas.DEV_SAMPLES, check_metadata=True)


def test_truncate_lists_keeps_tails_and_nulls_of_a_slice():
    arr = pa.array([[9], [1, 2, 3, 4], [5], None, [], [6, 7, 8]], pa.list_(pa.int32())).slice(1)
    out = truncate_lists(arr, 2)
    assert out.to_pylist() == [[3, 4], [5], None, [], [7, 8]]
    assert out.type == arr.type
