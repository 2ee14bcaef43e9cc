"""Item sequences for sequential recommendation: each user's items in time order, cut leave-one-out.

Two sources give ``(user id -> item ids in time order, item id -> text)``:

* **MIND** (:func:`mind_click_sequences`, :func:`mind_items`): a user's impressions of both splits
  in time order; each impression adds its ``history`` (clicks made before it), then its clicked
  candidates. Items are news; their text is the title.
* **RecBole atomic files** (:func:`read_recbole`): ``<dataset>.inter`` (user_id, item_id,
  timestamp) and, optionally, ``<dataset>.item`` (the item's text fields).

Either way an item the user already has is not added again (only its first occurrence counts).
:func:`build_sequences` leaves out users with fewer than ``min_len`` items, numbers users 1..U
and items 1..N (0 is padding) and applies :func:`leave_one_out`: the last item is the test
target, the one before it the validation target, the rest is what the model learns from.

data/sequences/ holds four Parquet files (:data:`ITEMS`, :data:`SEQ_TRAIN`, :data:`SEQ_EVAL`)::

    items.parquet   item, item_id, news_index, text
    train.parquet   user, user_id, items            (items[:-2])
    valid.parquet   user, user_id, history, target  (items[:-2], items[-2])
    test.parquet    user, user_id, history, target  (items[:-1], items[-1])
"""

from __future__ import annotations

import math
from operator import itemgetter
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ..data import schemas
from ..errors import DataError
from ..io import atomic_dir, read_parquet

#: data/sequences/items.parquet: item 1..N (0 is padding, never an item)
ITEMS = pa.schema(
    [
        pa.field("item", pa.int32(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),  # MIND news id, or the RecBole item token
        pa.field("news_index", pa.int32()),  # MIND's news_index; null for RecBole
        pa.field("text", pa.string(), nullable=False),  # MIND: the title; RecBole: the .item text fields
    ]
)

#: data/sequences/train.parquet: the training part of each user's sequence, in time order
SEQ_TRAIN = pa.schema(
    [
        pa.field("user", pa.int32(), nullable=False),  # 1..U
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("items", pa.list_(pa.int32()), nullable=False),
    ]
)

#: data/sequences/{valid,test}.parquet: the items before the target, and the target
SEQ_EVAL = pa.schema(
    [
        pa.field("user", pa.int32(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("history", pa.list_(pa.int32()), nullable=False),
        pa.field("target", pa.int32(), nullable=False),
    ]
)

SEQUENCES_DIR = Path("data/sequences")
EVAL_SPLITS = ("valid", "test")
_MIND_SPLITS = ("train", "dev")
_TEXT_TYPES = ("token", "token_seq")


# --------------------------------------------------------------------------------------------- MIND


def mind_click_sequences(mind_dir: Path) -> tuple[dict[str, list[str]], dict]:
    """Each MIND user's clicked news ids in time order, over data/mind/train and data/mind/dev.

    A user's impressions of both splits are taken in (time, impression_id) order (train before dev
    on a tie); each impression first adds its ``history`` news, then its clicked candidates
    (``labels == 1``, in candidate order); an unlabeled impression adds only its history. Only the
    first occurrence of a news is kept. ``repeats_dropped`` counts the clicked candidates dropped
    that way (a click on a news the user already has); a history news already in the sequence is
    the same click reported again and is not counted.

    Returns (news ids by user id, users in user id order; every user of the behaviors is there,
    even with no news) and counts: ``impressions``, ``unlabeled_impressions``, ``repeats_dropped``,
    ``source``.
    """
    mind_dir = Path(mind_dir)
    tables = []
    for order, split in enumerate(_MIND_SPLITS):
        table = read_parquet(mind_dir / split / "behaviors.parquet", stage="download", schema=schemas.BEHAVIORS)
        tables.append(table.append_column("split", pa.array(np.full(table.num_rows, order, np.int8))))
    behaviors = pa.concat_tables(tables)
    by_time = [("user_id", "ascending"), ("time", "ascending"), ("impression_id", "ascending"), ("split", "ascending")]
    behaviors = behaviors.take(pc.sort_indices(behaviors, sort_keys=by_time))  # a null time sorts last

    users = pc.dictionary_encode(behaviors["user_id"].combine_chunks())  # sorted, so codes rise with the rows
    user_of_row = users.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    user_ids = users.dictionary.to_pylist()

    # events: every history news and every click, each with its row; in row order, history first
    history = behaviors["history"].combine_chunks()
    hist_rows = pc.list_parent_indices(history).to_numpy().astype(np.int64)
    hist_news = pc.list_flatten(history).to_numpy()
    click_rows, click_news = _clicks(behaviors, mind_dir)
    rows = np.concatenate([hist_rows, click_rows])
    news = np.concatenate([hist_news, click_news]).astype(np.int64)
    is_click = np.concatenate([np.zeros(len(hist_rows), bool), np.ones(len(click_rows), bool)])
    order = np.argsort(rows * 2 + is_click, kind="stable")  # stable: list order within a row
    rows, news, is_click = rows[order], news[order], is_click[order]

    news_ids, known = _news_ids(mind_dir)
    unknown = (news < 0) | (news >= len(news_ids))
    unknown[~unknown] = ~known[news[~unknown]]
    if unknown.any():
        raise DataError(f"{mind_dir}: the behaviors refer to news_index {int(news[unknown][0])}, which neither "
                        f"news.parquet has; rebuild data/mind with `dvc repro -f download`")

    user = user_of_row[rows]
    first = np.unique(user * (int(news.max(initial=0)) + 1) + news, return_index=True)[1]
    keep = np.zeros(len(news), bool)
    keep[first] = True
    ends = np.cumsum(np.bincount(user[keep], minlength=len(user_ids))).tolist()
    kept = news_ids[news[keep]].tolist()
    sequences = {uid: kept[start:end] for uid, start, end in zip(user_ids, [0, *ends[:-1]], ends)}
    counts = {
        "impressions": behaviors.num_rows,
        "unlabeled_impressions": behaviors["labels"].null_count,
        "repeats_dropped": int((is_click & ~keep).sum()),
        "source": "mind",
    }
    return sequences, counts


def _clicks(behaviors: pa.Table, mind_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(row, news_index) of every clicked candidate, in row then candidate order."""
    candidates = behaviors["candidates"].combine_chunks()
    labels = behaviors["labels"].combine_chunks()
    n_cand = pc.list_value_length(candidates).to_numpy(zero_copy_only=False).astype(np.int64)
    n_label = pc.list_value_length(labels).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    wrong = (n_label >= 0) & (n_label != n_cand)
    if wrong.any():
        row = int(np.flatnonzero(wrong)[0])
        raise DataError(f"{mind_dir}: impression {behaviors['impression_id'][row].as_py()} has {n_cand[row]} "
                        f"candidates but {n_label[row]} labels; rebuild data/mind with `dvc repro -f download`")
    label_rows = pc.list_parent_indices(labels).to_numpy().astype(np.int64)
    clicked = pc.list_flatten(labels).to_numpy(zero_copy_only=False) == 1
    label_starts = np.cumsum(np.maximum(n_label, 0)) - np.maximum(n_label, 0)
    position = np.arange(len(label_rows)) - label_starts[label_rows]  # within the impression's candidates
    cand_starts = np.cumsum(n_cand) - n_cand
    flat = pc.list_flatten(candidates).to_numpy()
    rows = label_rows[clicked]
    return rows, flat[cand_starts[rows] + position[clicked]].astype(np.int64)


def _news_ids(mind_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """An object array whose element ``news_index`` is that news' id, and where one is there."""
    news = pa.concat_tables([
        read_parquet(mind_dir / split / "news.parquet", stage="download", schema=schemas.NEWS,
                     columns=["news_id", "news_index"])
        for split in _MIND_SPLITS
    ])
    index = news["news_index"].to_numpy()
    ids = np.full(int(index.max(initial=0)) + 1, None, dtype=object)
    ids[index] = np.asarray(news["news_id"].to_pylist(), dtype=object)
    known = np.zeros(len(ids), bool)
    known[index] = True
    return ids, known


def mind_items(mind_dir: Path) -> dict[str, tuple[int, str]]:
    """news_id -> (news_index, title) over both splits' news.parquet (a missing title is "")."""
    out: dict[str, tuple[int, str]] = {}
    for split in _MIND_SPLITS:
        news = read_parquet(Path(mind_dir) / split / "news.parquet", stage="download", schema=schemas.NEWS,
                            columns=["news_id", "news_index", "title"])
        for news_id, index, title in zip(*(news[c].to_pylist() for c in ("news_id", "news_index", "title"))):
            out.setdefault(news_id, (index, title or ""))
    return out


# ------------------------------------------------------------------------------------------ RecBole


def read_recbole(folder: Path, dataset: str | None) -> tuple[dict[str, list[str]], dict[str, str], dict]:
    """A RecBole dataset's item sequences and item texts, from ``<dataset>.inter`` and ``<dataset>.item``.

    ``.inter`` is tab-separated with a header of typed fields (``user_id:token  item_id:token
    rating:float  timestamp:float``); user_id, item_id and timestamp are needed. Each user's items
    are sorted by timestamp (file order on a tie) and an item the user already has is dropped
    (counted in ``repeats_dropped``). ``.item`` is optional: an item's text is its token and
    token_seq fields other than item_id, joined by " " in header order ("" when it has none).
    ``dataset=None`` means the only ``.inter`` file in ``folder``.

    Returns (item ids by user id, in user id order), (text by item id, as in ``.item``) and counts:
    ``interactions``, ``repeats_dropped``, ``items_without_text`` (of the items in ``.inter``),
    ``source`` (``recbole:<dataset>``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder for the RecBole atomic files (<dataset>.inter, <dataset>.item); "
                        "set seqrec.recbole_path")
    inter = _inter_file(folder, dataset)
    by_user: dict[str, list[tuple[float, str]]] = {}
    interactions = 0
    rows = _rows(inter)
    (user_col, item_col, time_col), names, _ = _columns(inter, next(rows, None), ("user_id", "item_id", "timestamp"))
    for line, fields in _checked(inter, rows, len(names)):
        value = fields[time_col]
        try:
            timestamp = float(value)
        except ValueError:
            timestamp = math.nan
        if not math.isfinite(timestamp):
            raise DataError(f"{inter} line {line}: timestamp {value!r} is not a number")
        by_user.setdefault(fields[user_col], []).append((timestamp, fields[item_col]))
        interactions += 1

    sequences: dict[str, list[str]] = {}
    repeats = 0
    for user in sorted(by_user):
        seen: dict[str, None] = {}
        for _, item in sorted(by_user[user], key=itemgetter(0)):  # sorted() is stable: file order on a tie
            if item in seen:
                repeats += 1
            seen[item] = None
        sequences[user] = list(seen)
    del by_user

    texts = _item_texts(inter.with_suffix(".item"))
    items = {item for seq in sequences.values() for item in seq}
    counts = {
        "interactions": interactions,
        "repeats_dropped": repeats,
        "items_without_text": sum(1 for item in items if not texts.get(item)),
        "source": f"recbole:{inter.stem}",
    }
    return sequences, texts, counts


def _inter_file(folder: Path, dataset: str | None) -> Path:
    found = sorted(p.stem for p in folder.glob("*.inter") if p.is_file())
    if dataset is None:
        if len(found) == 1:
            return folder / f"{found[0]}.inter"
        if not found:
            raise DataError(f"{folder} has no .inter file: put the RecBole atomic files <dataset>.inter (and "
                            "<dataset>.item) there, or set seqrec.recbole_path to the folder that has them")
        raise DataError(f"{folder} has several .inter files ({', '.join(found)}): set seqrec.recbole_dataset "
                        "to the one to use")
    path = folder / f"{dataset}.inter"
    if not path.is_file():
        there = f"it has {', '.join(found)}" if found else "it has no .inter file"
        raise DataError(f"{path} is missing ({there}): set seqrec.recbole_dataset to a dataset of {folder}")
    return path


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, tab-separated fields) of every non-blank line, the header (line 1) included."""
    try:
        with path.open(encoding="utf-8", newline="") as f:
            for line, text in enumerate(tqdm(f, desc=f"reading {path.name}", unit=" lines", disable=None), 1):
                text = text.rstrip("\r\n")
                if text.strip():
                    yield line, text.split("\t")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start} of a block)") from None


def _columns(path: Path, header: tuple[int, list[str]] | None, required: tuple[str, ...]
             ) -> tuple[list[int], list[str], list[str]]:
    """The positions of ``required`` in a RecBole header (``name:type`` fields), the names and the types."""
    if header is None:
        raise DataError(f"{path} is empty: a RecBole atomic file starts with a header line of name:type fields")
    names = [field.split(":", 1)[0].strip() for field in header[1]]
    types = [field.split(":", 1)[1].strip() if ":" in field else "" for field in header[1]]
    for name in required:
        if name not in names:
            raise DataError(f"{path} line {header[0]}: the header has no {name} field (it has {', '.join(names)}); "
                            f"needed: {', '.join(required)}")
    return [names.index(name) for name in required], names, types


def _checked(path: Path, rows: Iterator[tuple[int, list[str]]], width: int) -> Iterator[tuple[int, list[str]]]:
    for line, fields in rows:
        if len(fields) != width:
            raise DataError(f"{path} line {line}: {len(fields)} tab-separated fields, the header has {width}")
        yield line, fields


def _item_texts(path: Path) -> dict[str, str]:
    """item id -> its text fields joined by " " (empty values left out); {} without a .item file."""
    if not path.is_file():
        return {}
    rows = _rows(path)
    (item_col,), names, types = _columns(path, next(rows, None), ("item_id",))
    text_cols = [i for i, (name, kind) in enumerate(zip(names, types)) if name != "item_id" and kind in _TEXT_TYPES]
    texts: dict[str, str] = {}
    for _, fields in _checked(path, rows, len(names)):
        text = " ".join(value.strip() for value in (fields[i] for i in text_cols) if value.strip())
        texts.setdefault(fields[item_col], text)
    return texts


# ------------------------------------------------------------------------------ numbering, splits


def leave_one_out(items: list[int]) -> tuple[list[int], tuple[list[int], int], tuple[list[int], int]]:
    """Leave-one-out: ``(train, (valid history, valid target), (test history, test target))``.

    train = items[:-2]; valid = (items[:-2], items[-2]); test = (items[:-1], items[-1]). Slices of
    ``items``, so a numpy array gives views. Fewer than 3 items is a ValueError (no item to learn from).
    """
    if len(items) < 3:
        raise ValueError(f"leave-one-out needs at least 3 items, got {len(items)}")
    return items[:-2], (items[:-2], items[-2]), (items[:-1], items[-1])


def build_sequences(
    sequences: dict[str, list[str]],
    texts: dict[str, str],
    news_index: dict[str, int] | None,
    min_len: int,
) -> tuple[pa.Table, pa.Table, pa.Table, pa.Table, dict]:
    """(items, train, valid, test) tables (:data:`ITEMS`, :data:`SEQ_TRAIN`, :data:`SEQ_EVAL`) and counts.

    Users with fewer than ``min_len`` items are left out (``too_short``). Users are numbered 1..U in
    user id order; items 1..N in order of first appearance over the kept users (user id order, then
    position), so the numbering depends on the data only. ``news_index`` (MIND) fills the items'
    news_index (null without it); an item missing from ``texts`` has text "".

    Counts: users_in, users, too_short, clicks (the kept users' items), items, items_without_text
    (of the N items), items_in_train (distinct items in train), mean_len, median_len, train/valid/test
    users (and train items), cold_targets (valid and test targets that no train sequence has).
    """
    if min_len < 3:
        raise ValueError(f"min_len must be at least 3 (leave-one-out), got {min_len}")
    kept_users = [user for user in sorted(sequences) if len(sequences[user]) >= min_len]
    if not kept_users:
        raise DataError(f"no user has {min_len} or more distinct items ({len(sequences):,} users read): "
                        "nothing to train or evaluate on; set seqrec.min_len lower or use more data")
    lengths = np.array([len(sequences[user]) for user in kept_users], np.int64)
    flat = pa.array((item for user in kept_users for item in sequences[user]), pa.string(), size=int(lengths.sum()))
    encoded = pc.dictionary_encode(flat)  # codes in order of first appearance
    numbers = encoded.indices.to_numpy().astype(np.int32) + 1
    item_ids = encoded.dictionary.to_pylist()

    starts = np.cumsum(lengths) - lengths
    train_parts, valid_targets, test_histories, test_targets = [], [], [], []
    for start, length in tqdm(zip(starts.tolist(), lengths.tolist()), total=len(kept_users),
                              desc="leave-one-out", unit=" users", disable=None):
        train, (_, valid_target), (test_history, test_target) = leave_one_out(numbers[start:start + length])
        train_parts.append(train)
        valid_targets.append(valid_target)
        test_histories.append(test_history)
        test_targets.append(test_target)
    train_items = _lists(train_parts)  # also the validation histories
    valid_targets = np.array(valid_targets, np.int32)
    test_targets = np.array(test_targets, np.int32)

    user = pa.array(np.arange(1, len(kept_users) + 1, dtype=np.int32))
    user_id = pa.array(kept_users, pa.string())
    train = pa.Table.from_arrays([user, user_id, train_items], schema=SEQ_TRAIN)
    valid = pa.Table.from_arrays([user, user_id, train_items, pa.array(valid_targets)], schema=SEQ_EVAL)
    test = pa.Table.from_arrays([user, user_id, _lists(test_histories), pa.array(test_targets)], schema=SEQ_EVAL)
    item_texts = [texts.get(item) or "" for item in item_ids]
    items = pa.Table.from_arrays([
        pa.array(np.arange(1, len(item_ids) + 1, dtype=np.int32)),
        pa.array(item_ids, pa.string()),
        pa.array([news_index.get(item) if news_index is not None else None for item in item_ids], pa.int32()),
        pa.array(item_texts, pa.string()),
    ], schema=ITEMS)

    in_train = np.unique(pc.list_flatten(train_items).to_numpy())
    counts = {
        "users_in": len(sequences),
        "users": len(kept_users),
        "too_short": len(sequences) - len(kept_users),
        "clicks": int(lengths.sum()),
        "items": len(item_ids),
        "items_without_text": sum(1 for text in item_texts if not text),
        "items_in_train": len(in_train),
        "mean_len": round(float(lengths.mean()), 3),
        "median_len": float(np.median(lengths)),
        "train": {"users": train.num_rows, "items": len(in_train)},
        "valid": {"users": valid.num_rows},
        "test": {"users": test.num_rows},
        "cold_targets": {
            "valid": int((~np.isin(valid_targets, in_train)).sum()),
            "test": int((~np.isin(test_targets, in_train)).sum()),
        },
    }
    return items, train, valid, test, counts


def _lists(parts: list[np.ndarray]) -> pa.ListArray:
    offsets = np.zeros(len(parts) + 1, np.int32)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    values = np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


# -------------------------------------------------------------------------------- write and read


def write_sequences(out_dir: Path, items: pa.Table, train: pa.Table, valid: pa.Table, test: pa.Table) -> None:
    """Write the four tables to ``out_dir`` as one folder: it replaces the old one only when complete."""
    with atomic_dir(out_dir) as tmp:
        for name, table, schema in (("items", items, ITEMS), ("train", train, SEQ_TRAIN),
                                    ("valid", valid, SEQ_EVAL), ("test", test, SEQ_EVAL)):
            pq.write_table(table.cast(schema), tmp / f"{name}.parquet", compression="zstd")


def read_items(dir: Path = SEQUENCES_DIR) -> pa.Table:
    """data/sequences/items.parquet (:data:`ITEMS`), or a one-line error naming the sequences stage."""
    return read_parquet(Path(dir) / "items.parquet", stage="sequences", schema=ITEMS)


def read_train(dir: Path = SEQUENCES_DIR) -> pa.Table:
    """data/sequences/train.parquet (:data:`SEQ_TRAIN`)."""
    return read_parquet(Path(dir) / "train.parquet", stage="sequences", schema=SEQ_TRAIN)


def read_eval(split: str, dir: Path = SEQUENCES_DIR) -> pa.Table:
    """data/sequences/{valid,test}.parquet (:data:`SEQ_EVAL`)."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"split must be one of {', '.join(EVAL_SPLITS)}, got {split!r}")
    return read_parquet(Path(dir) / f"{split}.parquet", stage="sequences", schema=SEQ_EVAL)
