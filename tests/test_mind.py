"""MIND ingestion: one test per quirk of real MIND files, on tiny hand-written TSV."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tinynewsrec.data import schemas
from tinynewsrec.data.mind import BEHAVIOR_COUNTERS, NEWS_COUNTERS, ingest
from tinynewsrec.errors import DataError

T = "11/11/2019 9:05:58 AM"


def news_line(nid: str, title: str = "Title", abstract: str = "An abstract.") -> str:
    return "\t".join([nid, "news", "newsus", title, abstract, f"https://assets.msn.com/{nid}.html", "[]", "[]"])


def beh_line(imp, user: str, history: str, impressions: str, time: str = T) -> str:
    return "\t".join([str(imp), user, time, history, impressions])


NEWS = [news_line(f"N{i}") for i in range(1, 6)]


def write_split(folder: Path, news: list[str], behaviors: list[str], newline: str = "\n", bom: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in (("news.tsv", news), ("behaviors.tsv", behaviors)):
        data = (newline.join(lines) + newline).encode("utf-8")
        (folder / name).write_bytes(b"\xef\xbb\xbf" + data if bom else data)
    return folder


def run(tmp_path: Path, behaviors: list[str], news: list[str] = NEWS, split: str = "train", **kw):
    """Ingest one split (train unless said); return (its metrics, its behaviors rows)."""
    metrics = ingest({split: write_split(tmp_path / "in" / split, news, behaviors)}, tmp_path / "out", progress=False, **kw)
    return metrics[split], pq.read_table(tmp_path / "out" / split / "behaviors.parquet").to_pylist()


def counters(m: dict) -> dict:
    """The nonzero repair/oddity counters of a split's metrics."""
    return {k: m[k] for k in NEWS_COUNTERS + BEHAVIOR_COUNTERS if m[k]}


GOOD = beh_line(1, "U1", "N1 N2", "N3-1 N4-0")


def test_clean_input_has_no_repairs_and_exact_rows(tmp_path):
    m, rows = run(tmp_path, [GOOD, beh_line(2, "U2", "N3", "N1-0 N5-1 N2-1", "11/15/2019 12:00:01 PM")])
    assert counters(m) == {}
    assert (m["news"], m["users"], m["impressions"], m["clicks"], m["candidates"]) == (5, 2, 2, 3, 5)
    assert m["history_len_mean"] == 1.5 and m["news_coverage"] == 1.0 and m["labeled"] is True
    assert rows[1]["impression_id"] == 2 and rows[1]["user_id"] == "U2"
    assert rows[1]["time"].isoformat() == "2019-11-15T12:00:01"
    assert rows[0]["history"] == [1, 2] and rows[0]["candidates"] == [3, 4] and rows[0]["labels"] == [1, 0]


def stored(schema: pa.Schema) -> pa.Schema:
    """``schema`` as Parquet stores it: Parquet has no seconds unit, timestamp[s] comes back as [ms]."""
    return pa.schema([pa.field(f.name, pa.timestamp("ms"), f.nullable) if f.type == pa.timestamp("s") else f for f in schema])


def test_output_schemas_are_exactly_the_contract(tmp_path):
    run(tmp_path, [GOOD])
    assert pq.read_schema(tmp_path / "out" / "train" / "news.parquet") == schemas.NEWS
    assert pq.read_schema(tmp_path / "out" / "train" / "behaviors.parquet") == stored(schemas.BEHAVIORS)
    behaviors = pq.read_table(tmp_path / "out" / "train" / "behaviors.parquet", schema=schemas.BEHAVIORS)
    assert behaviors["time"][0].as_py().isoformat() == "2019-11-11T09:05:58"


def test_news_index_is_global_dense_train_first_and_zero_free(tmp_path):
    train = write_split(tmp_path / "train", [news_line("N7"), news_line("N2"), news_line("N9")], [beh_line(1, "U1", "N7", "N9-1 N2-0")])
    dev = write_split(tmp_path / "dev", [news_line("N9"), news_line("N4"), news_line("N7")], [beh_line(5, "U1", "N7 N9", "N4-1")])
    test = write_split(tmp_path / "test", [news_line("N5"), news_line("N4")], [beh_line(8, "U3", "N4", "N5 N4")])
    # the dict order does not matter: train is indexed first, then dev, then test
    m = ingest({"test": test, "dev": dev, "train": train}, tmp_path / "out", progress=False)
    index = {}
    for s in ("train", "dev", "test"):
        t = pq.read_table(tmp_path / "out" / s / "news.parquet")
        index[s] = dict(zip(t["news_id"].to_pylist(), t["news_index"].to_pylist()))
    assert index["train"] == {"N7": 1, "N2": 2, "N9": 3}
    assert index["dev"] == {"N9": 3, "N4": 4, "N7": 1}
    assert index["test"] == {"N5": 5, "N4": 4}
    assert m["news_total"] == 5
    dev_rows = pq.read_table(tmp_path / "out" / "dev" / "behaviors.parquet").to_pylist()
    assert dev_rows[0]["history"] == [1, 3] and dev_rows[0]["candidates"] == [4]


def test_news_line_with_wrong_column_count_is_skipped_and_counted(tmp_path):
    short = "\t".join(["N8", "news", "newsus", "Title", "Abstract", "url", "[]"])  # 7 columns
    long = news_line("N9") + "\textra"  # 9 columns
    m, _ = run(tmp_path, [GOOD], news=NEWS + [short, long])
    assert counters(m) == {"malformed_news_lines": 2}
    assert m["news"] == 5 and m["news_lines"] == 7


def test_duplicate_news_id_keeps_the_first_line(tmp_path):
    m, _ = run(tmp_path, [GOOD], news=NEWS + [news_line("N1", title="Second copy")])
    assert counters(m) == {"duplicate_news_ids": 1}
    news = pq.read_table(tmp_path / "out" / "train" / "news.parquet").to_pylist()
    assert [r["title"] for r in news if r["news_id"] == "N1"] == ["Title"]


def test_empty_abstract_is_kept_and_counted(tmp_path):
    m, _ = run(tmp_path, [GOOD], news=NEWS + [news_line("N6", abstract="")])
    assert counters(m) == {"empty_abstracts": 1}
    assert m["news"] == 6


@pytest.mark.parametrize("line", ["1\tU1\t" + T + "\tN1", GOOD + "\tN5-0"], ids=["4 columns", "6 columns"])
def test_behavior_line_with_wrong_column_count_is_skipped_and_counted(tmp_path, line):
    m, rows = run(tmp_path, [GOOD, line])
    assert counters(m) == {"malformed_behavior_lines": 1}
    assert len(rows) == 1 and m["behavior_lines"] == 2


@pytest.mark.parametrize("imp_id", ["abc", "", "-3", "1.5"])
def test_behavior_line_with_bad_impression_id_is_dropped_and_counted(tmp_path, imp_id):
    m, rows = run(tmp_path, [GOOD, beh_line(imp_id, "U2", "N1", "N2-1")])
    assert counters(m) == {"bad_impression_id": 1}
    assert [r["impression_id"] for r in rows] == [1]


def test_unknown_ids_are_dropped_from_history_and_candidates(tmp_path):
    m, rows = run(tmp_path, [beh_line(1, "U1", "N1 N77 N2", "N3-1 N88-0 N4-0 N77-0")])
    assert counters(m) == {"unknown_history_ids": 1, "unknown_candidate_ids": 2}
    assert rows[0]["history"] == [1, 2] and rows[0]["candidates"] == [3, 4] and rows[0]["labels"] == [1, 0]
    # referenced: N1 N2 N3 N4 (known) + N77 N88 (unknown)
    assert m["referenced_news_ids"] == 6 and m["news_coverage"] == pytest.approx(4 / 6)


def test_impression_left_without_candidates_is_dropped_and_counted(tmp_path):
    m, rows = run(tmp_path, [GOOD, beh_line(2, "U2", "N1", "N88-1 N99-0")])
    assert counters(m) == {"unknown_candidate_ids": 2, "impressions_without_candidates": 1}
    assert [r["impression_id"] for r in rows] == [1] and m["users"] == 1


def test_empty_history_is_kept_and_counted(tmp_path):
    m, rows = run(tmp_path, [GOOD, beh_line(2, "U2", "", "N1-1 N2-0")])
    assert counters(m) == {"empty_histories": 1}
    assert rows[1]["history"] == [] and m["history_len_mean"] == 1.0


def test_history_of_only_unknown_ids_counts_as_empty(tmp_path):
    m, rows = run(tmp_path, [beh_line(1, "U1", "N77", "N1-1 N2-0")])
    assert counters(m) == {"unknown_history_ids": 1, "empty_histories": 1}
    assert rows[0]["history"] == []


def test_duplicate_history_id_keeps_the_first_occurrence(tmp_path):
    m, rows = run(tmp_path, [beh_line(1, "U1", "N2 N1 N2 N3 N1", "N4-1 N5-0"), beh_line(2, "U2", "N2", "N1-1 N3-0")])
    assert counters(m) == {"duplicate_history_ids": 2}
    assert rows[0]["history"] == [2, 1, 3] and rows[1]["history"] == [2]


@pytest.mark.parametrize("bad", ["N1-2", "N1-x", "N1-", "N1-10"])
def test_candidate_with_bad_label_is_dropped_and_counted(tmp_path, bad):
    m, rows = run(tmp_path, [beh_line(1, "U1", "N5", f"N3-1 {bad} N4-0")])
    assert counters(m) == {"bad_labels": 1}
    assert rows[0]["candidates"] == [3, 4] and rows[0]["labels"] == [1, 0]


def test_impression_without_click_is_kept_and_counted(tmp_path):
    m, rows = run(tmp_path, [GOOD, beh_line(2, "U2", "N1", "N2-0 N3-0")])
    assert counters(m) == {"impressions_without_click": 1}
    assert rows[1]["labels"] == [0, 0]


def test_impression_without_nonclick_is_kept_and_counted(tmp_path):
    m, rows = run(tmp_path, [GOOD, beh_line(2, "U2", "N1", "N2-1 N3-1")])
    assert counters(m) == {"impressions_without_nonclick": 1}
    assert rows[1]["labels"] == [1, 1] and m["clicks"] == 3


@pytest.mark.parametrize("time", ["yesterday", "13/45/2019 9:05:58 AM", ""])
def test_bad_time_is_null_and_counted_but_row_kept(tmp_path, time):
    m, rows = run(tmp_path, [GOOD, beh_line(2, "U2", "N1", "N2-1 N3-0", time=time)])
    assert counters(m) == {"bad_time": 1}
    assert rows[1]["time"] is None and rows[0]["time"] is not None


def test_unlabeled_split_gets_null_labels(tmp_path):
    m, rows = run(tmp_path, [beh_line(1, "U1", "N1", "N2 N3"), beh_line(2, "U2", "", "N4")], split="test")
    assert m["labeled"] is False and m["clicks"] == 0
    assert counters(m) == {"empty_histories": 1}
    assert [r["labels"] for r in rows] == [None, None] and rows[0]["candidates"] == [2, 3]


def test_unlabeled_candidates_in_a_labeled_split_are_bad_labels(tmp_path):
    m, rows = run(tmp_path, [GOOD, beh_line(2, "U2", "N1", "N2 N3-1 N4")])
    assert m["labeled"] is True
    assert counters(m) == {"bad_labels": 2, "impressions_without_nonclick": 1}
    assert rows[1]["candidates"] == [3] and rows[1]["labels"] == [1]


def test_labels_after_unlabeled_blocks_reread_the_split_as_labeled(tmp_path):
    lines = [beh_line(i, f"U{i}", "N1", "N2 N3") for i in range(1, 40)] + [beh_line(99, "U99", "N1", "N4-1 N5-0")]
    m, rows = run(tmp_path, lines, block_size=256)  # many blocks: the first ones hold no label
    assert m["labeled"] is True
    assert m["bad_labels"] == 78 and m["impressions_without_candidates"] == 39
    assert [r["impression_id"] for r in rows] == [99] and rows[0]["labels"] == [1, 0]


def test_block_size_does_not_change_the_output(tmp_path):
    lines = [beh_line(i, f"U{i % 7}", " ".join(f"N{1 + (i + k) % 5}" for k in range(i % 4)), f"N{1 + i % 5}-1 N{1 + (i + 1) % 5}-0 N9-0") for i in range(200)]
    lines[50] = beh_line(50, "U1", " ".join(["N1"] * 300), "N2-1")  # a line longer than a block
    m_small, rows_small = run(tmp_path / "a", lines, block_size=100)
    m_big, rows_big = run(tmp_path / "b", lines)
    assert rows_small == rows_big and m_small == m_big
    assert m_big["duplicate_history_ids"] == 299 and m_big["unknown_candidate_ids"] == 199


def test_bom_and_crlf_give_the_same_output_as_plain_lf(tmp_path):
    behaviors = [GOOD, beh_line(2, "U2", "", "N1-1 N2-0")]
    ingest({"train": write_split(tmp_path / "crlf", NEWS, behaviors, newline="\r\n", bom=True)}, tmp_path / "o1", progress=False)
    ingest({"train": write_split(tmp_path / "lf", NEWS, behaviors)}, tmp_path / "o2", progress=False)
    for name in ("news.parquet", "behaviors.parquet"):
        assert pq.read_table(tmp_path / "o1" / "train" / name).equals(pq.read_table(tmp_path / "o2" / "train" / name))
    assert pq.read_table(tmp_path / "o1" / "train" / "news.parquet")["news_id"][0].as_py() == "N1"


def test_missing_folder_is_a_data_error_naming_it(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        ingest({"train": tmp_path / "nowhere"}, tmp_path / "out", progress=False)


def test_missing_file_is_a_data_error_naming_it(tmp_path):
    folder = write_split(tmp_path / "train", NEWS, [GOOD])
    (folder / "behaviors.tsv").unlink()
    with pytest.raises(DataError, match="behaviors.tsv is missing"):
        ingest({"train": folder}, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_file_that_is_not_mind_is_a_data_error(tmp_path):
    csv = ["id,name,value", "1,apple,3", "2,pear,4"]
    folder = write_split(tmp_path / "train", NEWS, csv)
    with pytest.raises(DataError, match="not a MIND behaviors.tsv"):
        ingest({"train": folder}, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "train" / "behaviors.parquet").exists()


def test_news_and_behaviors_swapped_is_a_data_error(tmp_path):
    folder = write_split(tmp_path / "train", [GOOD], NEWS)
    with pytest.raises(DataError, match="not a MIND news.tsv"):
        ingest({"train": folder}, tmp_path / "out", progress=False)


def test_empty_behaviors_file_is_a_data_error(tmp_path):
    folder = write_split(tmp_path / "train", NEWS, [])
    (folder / "behaviors.tsv").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        ingest({"train": folder}, tmp_path / "out", progress=False)


def test_behaviors_of_another_news_file_is_a_data_error(tmp_path):
    folder = write_split(tmp_path / "train", NEWS, [beh_line(1, "U1", "N70", "N71-1 N72-0")])
    with pytest.raises(DataError, match="no usable impression.*same MIND split"):
        ingest({"train": folder}, tmp_path / "out", progress=False)
