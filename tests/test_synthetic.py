"""The synthetic MIND generator writes real MIND-format TSV, deterministically."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tinynewsrec.data.synthetic import SIZES, SyntheticSize, generate
from tinynewsrec.errors import ParamError

FILES = ("train/news.tsv", "train/behaviors.tsv", "dev/news.tsv", "dev/behaviors.tsv", "dev/oracle.parquet")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tiny")
    return out, generate(out, "tiny", seed=42, progress=False)


def rows(path: Path) -> list[list[str]]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [line.split("\t") for line in text[:-1].split("\n")]


def impressions(field: str) -> list[tuple[str, int]]:
    return [(tok.rsplit("-", 1)[0], int(tok.rsplit("-", 1)[1])) for tok in field.split(" ")]


def test_same_seed_writes_identical_bytes(tiny, tmp_path):
    out, _ = tiny
    generate(tmp_path, "tiny", seed=42, progress=False)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def test_another_seed_writes_other_data(tiny, tmp_path):
    out, _ = tiny
    generate(tmp_path, "tiny", seed=43, progress=False)
    for name in FILES[:4]:
        assert (tmp_path / name).read_bytes() != (out / name).read_bytes(), name


def test_news_tsv_has_mind_columns(tiny):
    out, _ = tiny
    for split in ("train", "dev"):
        news = rows(out / split / "news.tsv")
        assert all(len(r) == 8 for r in news)
        assert all(re.fullmatch(r"N\d+", r[0]) for r in news)
        assert len({r[0] for r in news}) == len(news)
        assert all(r[1] and r[2] and r[3] for r in news)
        assert len({r[1] for r in news}) >= 10  # about 15 categories, as in MIND
        assert all(r[5].startswith("https://") for r in news)


def test_some_abstracts_are_empty_as_in_mind(tiny):
    out, _ = tiny
    news = rows(out / "train" / "news.tsv")
    empty = sum(not r[4] for r in news) / len(news)
    assert 0.0 < empty < 0.15


def test_entities_are_json_and_point_into_the_text(tiny):
    out, _ = tiny
    seen = 0
    for r in rows(out / "train" / "news.tsv"):
        for text, field in ((r[3], r[6]), (r[4], r[7])):
            for e in json.loads(field):
                assert set(e) == {"Label", "Type", "WikidataId", "Confidence", "OccurrenceOffsets",
                                  "SurfaceForms"}
                assert re.fullmatch(r"Q\d+", e["WikidataId"]) and e["Type"] in {"P", "O", "G", "W"}
                at = e["OccurrenceOffsets"][0]
                assert text[at : at + len(e["SurfaceForms"][0])] == e["SurfaceForms"][0]
                seen += 1
    assert seen > 100


def test_behaviors_tsv_has_mind_columns(tiny):
    out, summary = tiny
    for split, day_range in (("train", range(9, 15)), ("dev", range(15, 16))):
        beh = rows(out / split / "behaviors.tsv")
        assert len(beh) == summary[split]["impressions"]
        assert all(len(r) == 5 for r in beh)
        assert [int(r[0]) for r in beh] == list(range(1, len(beh) + 1))
        assert all(re.fullmatch(r"U\d+", r[1]) for r in beh)
        times = [datetime.strptime(r[2], "%m/%d/%Y %I:%M:%S %p") for r in beh]
        assert all(t.year == 2019 and t.month == 11 and t.day in day_range for t in times)
        histories = [r[3] for r in beh]
        assert all(h == "" or all(re.fullmatch(r"N\d+", x) for x in h.split(" ")) for h in histories)
        labels = [y for r in beh for _, y in impressions(r[4])]
        assert set(labels) == {0, 1}


def test_summary_is_json_and_counts_what_was_written(tiny):
    out, summary = tiny
    assert json.loads(json.dumps(summary)) == summary
    news = {r[0] for split in ("train", "dev") for r in rows(out / split / "news.tsv")}
    assert summary["news"] == len(news)
    for split in ("train", "dev"):
        beh = rows(out / split / "behaviors.tsv")
        slots = sum(len(r[4].split(" ")) for r in beh)
        assert summary[split]["candidates_per_impression"] == pytest.approx(slots / len(beh), abs=0.01)


def test_every_behaviors_id_is_in_the_split_news(tiny):
    out, _ = tiny
    for split in ("train", "dev"):
        known = {r[0] for r in rows(out / split / "news.tsv")}
        for r in rows(out / split / "behaviors.tsv"):
            assert set(r[3].split()) <= known
            assert {n for n, _ in impressions(r[4])} <= known


def test_every_impression_has_a_click_and_a_non_click(tiny):
    out, _ = tiny
    for split in ("train", "dev"):
        for r in rows(out / split / "behaviors.tsv"):
            labels = [y for _, y in impressions(r[4])]
            assert 1 <= sum(labels) < len(labels)


def test_a_few_users_are_cold(tmp_path):
    summary = generate(tmp_path, SyntheticSize(**{**SIZES["tiny"].__dict__, "users": 1000}), progress=False)
    assert 0.01 < summary["cold_users"] < 0.07
    histories = [r[3] for r in rows(tmp_path / "train" / "behaviors.tsv")]
    assert "" in histories and sum(h != "" for h in histories) > 0.9 * len(histories)


def test_most_dev_candidates_are_unseen_in_train(tiny):
    out, summary = tiny
    train_news = {r[0] for r in rows(out / "train" / "news.tsv")}
    cands = [n for r in rows(out / "dev" / "behaviors.tsv") for n, _ in impressions(r[4])]
    unseen = sum(n not in train_news for n in cands) / len(cands)
    assert unseen > 0.5
    assert unseen == pytest.approx(summary["dev_candidates_unseen_in_train"], abs=1e-4)


def test_oracle_is_aligned_with_dev_impressions(tiny):
    out, _ = tiny
    oracle = pq.read_table(out / "dev" / "oracle.parquet")
    assert str(oracle.schema.field("impression_id").type) == "int64"
    assert str(oracle.schema.field("probs").type) == "list<element: float>"
    beh = rows(out / "dev" / "behaviors.tsv")
    assert oracle["impression_id"].to_pylist() == [int(r[0]) for r in beh]
    clicked, skipped = [], []
    for probs, r in zip(oracle["probs"].to_pylist(), beh):
        labels = [y for _, y in impressions(r[4])]
        assert len(probs) == len(labels)
        assert all(0.0 < p <= 1.0 for p in probs)
        clicked += [p for p, y in zip(probs, labels) if y]
        skipped += [p for p, y in zip(probs, labels) if not y]
    assert np.mean(clicked) > 2 * np.mean(skipped)  # true probabilities predict the clicks


def test_unknown_size_names_the_param():
    with pytest.raises(ParamError, match="data.size"):
        generate("/nonexistent", "huge", progress=False)


def test_a_nonsense_size_names_the_field():
    with pytest.raises(ParamError, match="candidates"):
        SyntheticSize(**{**SIZES["tiny"].__dict__, "candidates": 1})
