"""Item sequences for SASRec / BERT4Rec: MIND click order, RecBole atomic files, leave-one-out."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import load_stage, write_params
from tinynewsrec.data import schemas
from tinynewsrec.errors import DataError
from tinynewsrec.seqrec.sequences import (
    ITEMS,
    SEQ_EVAL,
    SEQ_TRAIN,
    build_sequences,
    leave_one_out,
    mind_click_sequences,
    mind_items,
    read_eval,
    read_items,
    read_recbole,
    read_train,
)


def test_leave_one_out_cuts_the_last_two_items():
    train, valid, test = leave_one_out([5, 3, 8, 1, 9])
    assert train == [5, 3, 8]
    assert valid == ([5, 3, 8], 1)
    assert test == ([5, 3, 8, 1], 9)


def test_leave_one_out_refuses_fewer_than_three_items():
    assert leave_one_out([1, 2, 3]) == ([1], ([1], 2), ([1, 2], 3))
    with pytest.raises(ValueError, match="at least 3"):
        leave_one_out([1, 2])


# --------------------------------------------------------------------------------------------- MIND

def t(hour: int, day: int = 9) -> datetime:
    return datetime(2019, 11, day, hour)


#: (impression_id, user, time, history, candidates, labels) per split
TRAIN_ROWS = [
    (1, "U1", t(12), [1, 2], [4, 3, 5], [1, 1, 0]),  # later than impression 2: N3 is a repeat click here
    (2, "U1", t(10), [1, 2], [3, 4], [1, 0]),
    (5, "U2", t(10), [], [1], [1]),  # same time as impression 4: impression 4 comes first
    (4, "U2", t(10), [], [2, 6], [1, 1]),
    (6, "U3", t(11), [], [3, 4], [1, 0]),  # one click: too short
]
DEV_ROWS = [
    (1, "U1", t(11), [1, 2], [6, 7], [0, 1]),  # between U1's two train impressions
    (2, "U1", t(13), [1, 2, 8], [5], None),  # unlabeled: only its history (N8) counts
]
#: news_index -> (news_id, title); news_index is global over both splits
TRAIN_NEWS = {1: ("N1", "one"), 2: ("N2", "two"), 3: ("N3", "three"), 4: ("N4", "four"), 5: ("N5", "five"),
              6: ("N6", "six")}
DEV_NEWS = {5: ("N5", "five"), 6: ("N6", "six"), 7: ("N7", "seven"), 8: ("N8", None)}


def write_mind(root: Path) -> Path:
    """A hand-made data/mind under ``root``."""
    for split, rows, news in (("train", TRAIN_ROWS, TRAIN_NEWS), ("dev", DEV_ROWS, DEV_NEWS)):
        folder = root / "data" / "mind" / split
        folder.mkdir(parents=True)
        columns = ["impression_id", "user_id", "time", "history", "candidates", "labels"]
        behaviors = pa.Table.from_pydict({c: [r[i] for r in rows] for i, c in enumerate(columns)},
                                         schema=schemas.BEHAVIORS)
        pq.write_table(behaviors, folder / "behaviors.parquet")
        table = {name: [None] * len(news) for name in schemas.NEWS.names}
        table["news_index"] = list(news)
        table["news_id"] = [v[0] for v in news.values()]
        table["title"] = [v[1] for v in news.values()]
        pq.write_table(pa.Table.from_pydict(table, schema=schemas.NEWS), folder / "news.parquet")
    return root / "data" / "mind"


def test_mind_clicks_follow_impression_time_history_first(tmp_path):
    sequences, counts = mind_click_sequences(write_mind(tmp_path))
    assert sequences == {
        "U1": ["N1", "N2", "N3", "N7", "N4", "N8"],
        "U2": ["N2", "N6", "N1"],
        "U3": ["N3"],
    }
    assert counts == {"impressions": 7, "unlabeled_impressions": 1, "repeats_dropped": 1, "source": "mind"}


def test_mind_items_give_index_and_title(tmp_path):
    items = mind_items(write_mind(tmp_path))
    assert items["N1"] == (1, "one")
    assert items["N7"] == (7, "seven")
    assert items["N8"] == (8, "")
    assert len(items) == 8


def test_mind_unknown_news_index_is_one_line_error(tmp_path):
    mind = write_mind(tmp_path)
    news = pq.read_table(mind / "dev" / "news.parquet")
    pq.write_table(news.filter(pc.not_equal(news["news_index"], 8)), mind / "dev" / "news.parquet")
    with pytest.raises(DataError, match="news_index 8"):
        mind_click_sequences(mind)


# --------------------------------------------------------------------------------- build_sequences

def test_build_sequences_numbers_items_by_first_appearance_and_counts_cold_targets():
    sequences = {"b": ["x", "y", "z", "w"], "a": ["y", "q", "x"], "c": ["z"]}
    items, train, valid, test, counts = build_sequences(sequences, {"y": "why"}, None, min_len=3)
    assert items.schema == ITEMS and train.schema == SEQ_TRAIN and valid.schema == SEQ_EVAL
    assert items.to_pydict() == {"item": [1, 2, 3, 4, 5], "item_id": ["y", "q", "x", "z", "w"],
                                 "news_index": [None] * 5, "text": ["why", "", "", "", ""]}
    assert train.to_pydict() == {"user": [1, 2], "user_id": ["a", "b"], "items": [[1], [3, 1]]}
    assert valid.to_pydict() == {"user": [1, 2], "user_id": ["a", "b"], "history": [[1], [3, 1]], "target": [2, 4]}
    assert test.to_pydict() == {"user": [1, 2], "user_id": ["a", "b"], "history": [[1, 2], [3, 1, 4]],
                                "target": [3, 5]}
    assert counts == {
        "users_in": 3, "users": 2, "too_short": 1, "clicks": 7, "items": 5, "items_without_text": 4,
        "items_in_train": 2, "mean_len": 3.5, "median_len": 3.5,
        "train": {"users": 2, "items": 2}, "valid": {"users": 2}, "test": {"users": 2},
        "cold_targets": {"valid": 2, "test": 1},
    }


def test_build_sequences_with_no_long_enough_user_is_an_error():
    with pytest.raises(DataError, match="no user has 3 or more"):
        build_sequences({"a": ["x", "y"]}, {}, None, min_len=3)


# ------------------------------------------------------------------------------------------ RecBole

INTER = """user_id:token\titem_id:token\trating:float\ttimestamp:float
u2\ti3\t5\t30
u1\ti2\t4\t20
u1\ti1\t3\t10
u1\ti3\t1\t20
u1\ti1\t2\t40
u2\ti1\t3\t10
u2\ti4\t3\t5
"""
ITEM = """item_id:token\ttitle:token_seq\tyear:float\tgenre:token_seq
i1\tToy Story\t1995\tAnimation Comedy
i2\t\t1990\tDrama
i3\t\t\t
"""


def write_recbole(folder: Path, name: str = "toy", inter: str = INTER, item: str | None = ITEM) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.inter").write_text(inter)
    if item is not None:
        (folder / f"{name}.item").write_text(item)
    return folder


def test_recbole_sorts_by_timestamp_drops_repeats_and_joins_text(tmp_path):
    sequences, texts, counts = read_recbole(write_recbole(tmp_path / "rb"), None)
    assert sequences == {"u1": ["i1", "i2", "i3"], "u2": ["i4", "i1", "i3"]}  # i2, i3 tie at 20: file order
    assert texts == {"i1": "Toy Story Animation Comedy", "i2": "Drama", "i3": ""}
    assert counts == {"interactions": 7, "repeats_dropped": 1, "items_without_text": 2, "source": "recbole:toy"}


def test_recbole_without_item_file_has_no_text(tmp_path):
    sequences, texts, counts = read_recbole(write_recbole(tmp_path / "rb", item=None), "toy")
    assert texts == {} and counts["items_without_text"] == 4


def test_recbole_wrong_field_count_names_the_line(tmp_path):
    folder = write_recbole(tmp_path / "rb", inter=INTER.replace("u1\ti3\t1\t20", "u1\ti3\t20"))
    with pytest.raises(DataError, match=r"toy.inter line 5: 3 tab-separated fields, the header has 4"):
        read_recbole(folder, None)


def test_recbole_non_numeric_timestamp_names_the_line(tmp_path):
    folder = write_recbole(tmp_path / "rb", inter=INTER.replace("u2\ti4\t3\t5", "u2\ti4\t3\tlate"))
    with pytest.raises(DataError, match=r"toy.inter line 8: timestamp 'late' is not a number"):
        read_recbole(folder, None)


def test_recbole_header_without_timestamp_is_an_error(tmp_path):
    inter = "user_id:token\titem_id:token\nu1\ti1\n"
    with pytest.raises(DataError, match=r"toy.inter line 1: the header has no timestamp field"):
        read_recbole(write_recbole(tmp_path / "rb", inter=inter), None)


def test_recbole_two_inter_files_need_the_dataset_name(tmp_path):
    folder = write_recbole(write_recbole(tmp_path / "rb", "a"), "b")
    with pytest.raises(DataError, match=r"several .inter files \(a, b\): set seqrec.recbole_dataset") as e:
        read_recbole(folder, None)
    assert "\n" not in str(e.value)
    assert read_recbole(folder, "b")[2]["source"] == "recbole:b"


def test_recbole_missing_folder_names_the_param(tmp_path):
    with pytest.raises(DataError, match="set seqrec.recbole_path"):
        read_recbole(tmp_path / "nowhere", None)


# ------------------------------------------------------------------------------------------- stage

def test_stage_writes_recbole_sequences_and_metrics(workdir):
    write_recbole(workdir / "rb")
    write_params(workdir, seqrec={"data": "recbole", "recbole_path": "rb"})
    load_stage("sequences").main()
    assert sorted(p.name for p in (workdir / "data" / "sequences").iterdir()) == [
        "items.parquet", "test.parquet", "train.parquet", "valid.parquet"]
    assert read_items().column("item_id").to_pylist() == ["i1", "i2", "i3", "i4"]
    assert read_train()["items"].to_pylist() == [[1], [4]]
    assert read_eval("valid")["target"].to_pylist() == [2, 1]
    assert read_eval("test")["target"].to_pylist() == [3, 3]
    metrics = json.loads((workdir / "metrics" / "sequences.json").read_text())
    assert metrics["source"] == "recbole:toy"
    assert (metrics["users"], metrics["items"], metrics["repeats_dropped"], metrics["items_without_text"]) == (2, 4, 1, 2)
    assert metrics["cold_targets"] == {"valid": 1, "test": 2}  # i2 and i3 (twice) are never in train


def test_stage_failure_leaves_previous_outputs(workdir):
    write_recbole(workdir / "rb")
    write_params(workdir, seqrec={"data": "recbole", "recbole_path": "rb"})
    stage = load_stage("sequences")
    stage.main()
    before = {p: p.read_bytes() for p in [*(workdir / "data" / "sequences").iterdir(), workdir / "metrics" / "sequences.json"]}
    write_recbole(workdir / "rb", inter=INTER + "u3\ti9\n")
    with pytest.raises(DataError, match="line 9"):
        stage.main()
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in workdir.glob("data/.*")) == [] and sorted(workdir.glob("metrics/.*")) == []


def test_stage_on_mind_clicks(workdir):
    write_mind(workdir)
    write_params(workdir, seqrec={"data": "mind"})
    load_stage("sequences").main()
    items = read_items()
    assert items["item_id"].to_pylist() == ["N1", "N2", "N3", "N7", "N4", "N8", "N6"]
    assert items["news_index"].to_pylist() == [1, 2, 3, 7, 4, 8, 6]
    assert items["text"].to_pylist()[5] == ""
    assert read_train().to_pydict() == {"user": [1, 2], "user_id": ["U1", "U2"], "items": [[1, 2, 3, 4], [2]]}
    assert read_eval("valid")["target"].to_pylist() == [5, 7]
    assert read_eval("test").to_pydict()["history"] == [[1, 2, 3, 4, 5], [2, 7]]
    metrics = json.loads((workdir / "metrics" / "sequences.json").read_text())
    assert {k: metrics[k] for k in ("users_in", "users", "too_short", "clicks", "repeats_dropped", "items",
                                    "items_in_train", "source")} == {
        "users_in": 3, "users": 2, "too_short": 1, "clicks": 9, "repeats_dropped": 1, "items": 7,
        "items_in_train": 4, "source": "mind"}
    assert metrics["cold_targets"] == {"valid": 2, "test": 1}
