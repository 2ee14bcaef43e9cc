"""MIND ingestion: the TSV files of each split -> Parquet with a global ``news_index``.

MIND (Wu et al., ACL 2020) ships each split (train, dev, test) as a folder with two
tab-separated files without a header:

- ``news.tsv``: news_id, category, subcategory, title, abstract, url, title_entities,
  abstract_entities (the last two are JSON lists of Wikidata entities);
- ``behaviors.tsv``: impression_id, user_id, time (``11/11/2019 9:05:58 AM``), history
  (the user's clicked news before the impression, space-separated, oldest first, may be
  empty) and impressions (the candidates shown, ``N1-1 N2-0 ...`` with 1 = clicked; the
  test split has bare ids, no labels).

:func:`ingest` writes ``<out>/<split>/news.parquet`` and ``behaviors.parquet`` with the
schemas of :mod:`tinynewsrec.data.schemas` and returns the counts that the download stage
writes to ``metrics/data.json``. Decisions where the design is silent:

- **news_index** is dense, int32 and global over the splits: train news get 1..N_train in
  file order, then each later split (dev, then test, then any other) appends the news it
  has that were not seen yet, in file order. 0 is the padding index. A news id has the
  same index in every split.
- **Known ids are per split.** Ids in a split's behaviors are looked up in that split's own
  news.tsv (as MIND ships them: each split's news.tsv covers its behaviors). So every index
  in ``<split>/behaviors.parquet`` has a row in ``<split>/news.parquet``.
- **Repairs, never silent loss.** Every dropped or repaired item is counted by reason:
  lines with the wrong column count (``malformed_*_lines``, skipped), empty news ids
  (counted as malformed news lines), duplicate news ids (first kept), impression ids that
  are not a non-negative integer (row dropped), unparsable times (kept, time null), history
  ids missing from news.tsv (dropped from the history), repeated history ids (first
  occurrence kept), candidates with a label other than 0/1 (dropped), candidates missing
  from news.tsv (dropped), impressions left without candidates (dropped). Impressions with
  no click or no non-click, empty histories and empty abstracts/titles are kept and
  counted. Repair counters count occurrences in the well-formed lines of the file, including
  lines later dropped for another reason; the other counts describe the rows written.
- **Labelled or not is decided per split**: a split whose candidates carry no valid label
  at all is unlabeled (the MIND test set) and gets ``labels = null``; in a labelled split a
  candidate without a label is a bad label (counted in ``bad_labels`` and dropped). In an
  unlabeled split a candidate with a malformed ``-label`` suffix is counted the same way.
- Blank lines are not rows (skipped, not counted). A UTF-8 BOM and CRLF line ends are
  accepted. A file with no well-formed line, or a split where no impression survives, is
  not MIND: :class:`~tinynewsrec.errors.DataError`, not an empty output.

Behaviors are streamed in blocks of ``block_size`` bytes and written row group by row group,
so memory stays bounded at MIND-large scale (2.2M impressions, 1.4 GB of behaviors.tsv).
"""

from __future__ import annotations

import codecs
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ..errors import DataError
from ..io import atomic_path, write_parquet
from . import schemas

log = logging.getLogger("tinynewsrec")

NEWS_COLUMNS = (
    "news_id",
    "category",
    "subcategory",
    "title",
    "abstract",
    "url",
    "title_entities",
    "abstract_entities",
)
BEHAVIOR_COLUMNS = ("impression_id", "user_id", "time", "history", "impressions")
#: MIND's impression time, e.g. ``11/11/2019 9:05:58 AM``
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
#: splits are indexed in this order; others follow in the order given
SPLIT_ORDER = ("train", "dev", "test")
BLOCK_SIZE = 32 << 20

#: every counter a split reports, in the order shown; all are present, zero or not
NEWS_COUNTERS = (
    "malformed_news_lines",
    "news_header_lines",
    "news_invalid_utf8_lines",
    "duplicate_news_ids",
    "empty_titles",
    "empty_abstracts",
)
BEHAVIOR_COUNTERS = (
    "malformed_behavior_lines",
    "behavior_header_lines",
    "behavior_invalid_utf8_lines",
    "duplicate_impression_ids",
    "bad_impression_id",
    "bad_time",
    "bad_labels",
    "unknown_history_ids",
    "duplicate_history_ids",
    "unknown_candidate_ids",
    "impressions_without_candidates",
    "impressions_without_click",
    "impressions_without_nonclick",
    "empty_histories",
)

#: the counters of dropped or repaired lines, ids and values (the others count kept oddities)
REPAIR_COUNTERS = (
    "malformed_news_lines",
    "news_header_lines",
    "news_invalid_utf8_lines",
    "duplicate_news_ids",
    "malformed_behavior_lines",
    "behavior_header_lines",
    "behavior_invalid_utf8_lines",
    "duplicate_impression_ids",
    "bad_impression_id",
    "bad_time",
    "bad_labels",
    "unknown_history_ids",
    "duplicate_history_ids",
    "unknown_candidate_ids",
    "impressions_without_candidates",
)


def ingest(
    splits: dict[str, Path],
    out_dir: Path,
    progress: bool = True,
    *,
    block_size: int = BLOCK_SIZE,
) -> dict[str, Any]:
    """Parse MIND TSV split folders into Parquet; return the ingestion metrics.

    ``splits`` maps a split name (``train``, ``dev``, optionally ``test``) to a folder
    holding ``news.tsv`` and ``behaviors.tsv``. Writes ``out_dir/<split>/news.parquet`` and
    ``out_dir/<split>/behaviors.parquet`` (each atomically). The result has one dict of
    counts per split and ``news_total``, the number of distinct news over all splits
    (= the largest ``news_index``).
    """
    out_dir = Path(out_dir)
    if not splits:
        raise DataError("no MIND split to ingest (expected at least train and dev folders)")
    order = [s for s in SPLIT_ORDER if s in splits] + [s for s in splits if s not in SPLIT_ORDER]
    for name in order:  # fail on a missing input before spending minutes on another split
        _split_files(name, splits[name])
    index = _NewsIndex()
    metrics: dict[str, Any] = {}
    for name in order:
        news_path, behaviors_path = _split_files(name, splits[name])
        news, stats = _read_news(news_path)
        news_index = index.assign(news.column("news_id").combine_chunks())
        news = _news_table(news, news_index)
        write_parquet(news, out_dir / name / "news.parquet")
        lookup = _Lookup(news.column("news_id").combine_chunks(), news_index)
        stats.update(
            _ingest_behaviors(behaviors_path, out_dir / name / "behaviors.parquet", lookup, name, progress, block_size)
        )
        metrics[name] = _ordered(stats)
        s = metrics[name]
        if name in ("train", "dev") and not s["labeled"]:
            raise DataError(
                f"MIND {name} split {behaviors_path}: no candidate has a click label ('N123-1' / 'N123-0'), as in "
                f"MIND's unlabeled test set; the {name} split needs labels (is this the test zip?)"
            )
        repairs = sum(s[k] for k in REPAIR_COUNTERS)
        log.info(
            f"{name}: {s['news']:,} news, {s['impressions']:,} impressions of {s['users']:,} users, "
            f"{s['candidates']:,} candidates ({'labelled' if s['labeled'] else 'unlabeled'}), "
            f"{s['news_coverage']:.1%} of referenced news ids found in news.tsv, {repairs:,} rows or ids repaired or dropped"
        )
    metrics["news_total"] = index.size
    return metrics


def _ordered(stats: dict[str, Any]) -> dict[str, Any]:
    first = (
        "news",
        "users",
        "impressions",
        "labeled",
        "clicks",
        "candidates",
        "candidates_mean",
        "history_len_mean",
        "referenced_news_ids",
        "news_coverage",
        "news_lines",
        "behavior_lines",
    )
    return {k: stats[k] for k in first + NEWS_COUNTERS + BEHAVIOR_COUNTERS}


def _split_files(name: str, folder: Path) -> tuple[Path, Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"MIND {name} split: folder {folder} does not exist (expected a folder holding news.tsv and behaviors.tsv)"
        )
    paths = (folder / "news.tsv", folder / "behaviors.tsv")
    for p in paths:
        if not p.is_file():
            present = ", ".join(sorted(c.name for c in folder.iterdir())[:10]) or "nothing"
            raise DataError(f"MIND {name} split: {p} is missing (the folder holds: {present})")
    return paths


class _MalformedLines:
    """``invalid_row_handler``: count and skip lines with the wrong number of columns.

    pyarrow calls it from its parsing threads, hence the lock.
    """

    def __init__(self) -> None:
        self.count = 0
        self.examples: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, row: Any) -> str:
        with self._lock:
            self.count += 1
            if len(self.examples) < 3:
                text = row.text if len(row.text) <= 80 else row.text[:77] + "..."
                self.examples.append(f"{text!r} ({row.actual_columns} columns)")
        return "skip"

    def warn(self, path: Path, expected: int) -> None:
        if self.count:
            log.warning(
                f"{path}: skipped {self.count:,} line(s) without exactly {expected} tab-separated columns, "
                f"e.g. {'; '.join(self.examples)}"
            )


def _csv_options(columns: tuple[str, ...], handler: _MalformedLines, block_size: int):
    return dict(
        read_options=pcsv.ReadOptions(column_names=list(columns), block_size=block_size),
        parse_options=pcsv.ParseOptions(
            delimiter="\t", quote_char=False, escape_char=False, invalid_row_handler=handler
        ),
        convert_options=pcsv.ConvertOptions(
            column_types={c: pa.string() for c in columns}, strings_can_be_null=False, quoted_strings_can_be_null=False
        ),
    )


# ------------------------------------------------------------------------- encoding


def _valid_utf8(data: bytes | memoryview, path: Path, first_line: int, counter: list[int]) -> bytes | memoryview:
    """``data`` itself if it is UTF-8; else the same lines with each undecodable byte as U+FFFD.

    The lines repaired are counted in ``counter[0]`` and the first one is named in a warning
    (``first_line`` is the 1-based number of the first line of ``data`` in ``path``).
    """
    try:
        codecs.decode(data, "utf-8")
        return data
    except UnicodeDecodeError:
        pass
    lines = bytes(data).split(b"\n")
    bad = []
    for i, line in enumerate(lines):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(i)
            lines[i] = line.decode("utf-8", errors="replace").encode("utf-8")
    counter[0] += len(bad)
    log.warning(
        f"{path}: {len(bad):,} line(s) here hold bytes that are not UTF-8 (first: line {first_line + bad[0]:,}); "
        "each such byte was read as U+FFFD and the lines kept (counted)"
    )
    return b"\n".join(lines)


def _header_rows(table: pa.Table, columns: tuple[str, ...]) -> pa.Array:
    """True for a row that is the column names themselves (a header line MIND does not have)."""
    mask = pc.equal(table[columns[0]], columns[0])
    for c in columns[1:3]:
        mask = pc.and_(mask, pc.equal(table[c], c))
    return mask.combine_chunks() if isinstance(mask, pa.ChunkedArray) else mask


# ----------------------------------------------------------------------------- news


def _read_news(path: Path) -> tuple[pa.Table, dict[str, Any]]:
    """Read one news.tsv; drop malformed lines and repeated ids (first kept), counting both."""
    malformed = _MalformedLines()
    invalid_utf8 = [0]
    data = _valid_utf8(path.read_bytes(), path, 1, invalid_utf8)
    try:
        table = pcsv.read_csv(pa.py_buffer(data), **_csv_options(NEWS_COLUMNS, malformed, BLOCK_SIZE))
    except pa.ArrowInvalid as e:
        if "Empty CSV file" in str(e):
            table = pa.table({c: pa.array([], pa.string()) for c in NEWS_COLUMNS})
        else:
            raise DataError(f"{path}: cannot be read as MIND news.tsv: {e}") from None
    lines = table.num_rows + malformed.count
    if lines == 0:
        raise DataError(f"{path}: the file is empty (expected MIND news.tsv lines)")
    header = _header_rows(table, NEWS_COLUMNS)
    n_header = pc.sum(header).as_py() or 0
    if n_header:
        table = table.filter(pc.invert(header))
    has_id = pc.not_equal(table["news_id"], "")
    n_no_id = table.num_rows - (pc.sum(has_id).as_py() or 0)
    if n_no_id == table.num_rows:
        raise DataError(
            f"{path}: not a MIND news.tsv: none of its {lines:,} lines has a news id and the 8 tab-separated "
            f"columns news_id, category, subcategory, title, abstract, url, title_entities, abstract_entities"
            + (f" (e.g. {'; '.join(malformed.examples)})" if malformed.examples else "")
        )
    malformed.warn(path, len(NEWS_COLUMNS))
    if n_header:
        log.warning(f"{path}: skipped {n_header:,} header line(s) (news_id, category, ...): MIND files have none")
    if n_no_id:
        log.warning(f"{path}: skipped {n_no_id:,} line(s) with an empty news id")
        table = table.filter(has_id)
    ids = table["news_id"].combine_chunks()
    first_of_id = pc.index_in(ids, value_set=pc.unique(ids)).to_numpy()
    keep = np.zeros(len(ids), dtype=bool)
    keep[np.unique(first_of_id, return_index=True)[1]] = True
    n_dup = int(len(ids) - keep.sum())
    if n_dup:
        log.warning(f"{path}: {n_dup:,} repeated news id(s); the first line of each is kept")
        table = table.filter(pa.array(keep))
    stats = {
        "news_lines": lines,
        "news": table.num_rows,
        "malformed_news_lines": malformed.count + n_no_id,
        "news_header_lines": n_header,
        "news_invalid_utf8_lines": invalid_utf8[0],
        "duplicate_news_ids": n_dup,
        "empty_titles": pc.sum(pc.equal(pc.utf8_trim_whitespace(table["title"]), "")).as_py() or 0,
        "empty_abstracts": pc.sum(pc.equal(pc.utf8_trim_whitespace(table["abstract"]), "")).as_py() or 0,
    }
    return table, stats


def _news_table(news: pa.Table, news_index: np.ndarray) -> pa.Table:
    cols = {c: news[c].combine_chunks() for c in NEWS_COLUMNS}
    cols["news_index"] = pa.array(news_index, pa.int32())
    return pa.Table.from_arrays([cols[f.name] for f in schemas.NEWS], schema=schemas.NEWS)


class _NewsIndex:
    """The global news_id -> news_index map: 1..N in order of first appearance, 0 = padding."""

    def __init__(self) -> None:
        self.ids = pa.array([], pa.string())  # ids[i] has index i + 1

    @property
    def size(self) -> int:
        return len(self.ids)

    def assign(self, ids: pa.Array) -> np.ndarray:
        """Indices of ``ids`` (distinct), giving ids not seen before the next free indices."""
        pos = pc.fill_null(pc.index_in(ids, value_set=self.ids), -1).to_numpy().astype(np.int64)
        new = pos < 0
        index = pos + 1
        index[new] = self.size + 1 + np.arange(int(new.sum()))
        if index.size and index.max() > np.iinfo(np.int32).max:
            raise DataError(f"more than {np.iinfo(np.int32).max:,} distinct news ids: news_index would overflow int32")
        self.ids = pa.concat_arrays([self.ids, ids.filter(pa.array(new))])
        return index.astype(np.int32)


class _Lookup:
    """A split's news ids -> their global news_index; tracks which ids behaviors reference."""

    def __init__(self, ids: pa.Array, index: np.ndarray) -> None:
        self.ids = ids
        self.index = index
        self.seen = np.zeros(len(ids), dtype=bool)
        self.unknown: list[pa.Array] = []  # distinct unknown ids per block

    def __call__(self, tokens: pa.Array, present: np.ndarray) -> np.ndarray:
        """news_index of each token, -1 where the id is not in this split's news.tsv.

        Only tokens where ``present`` is true are references (the others are empty tokens
        or candidates dropped for a bad label); they get -1 too.
        """
        pos = np.where(present, pc.fill_null(pc.index_in(tokens, value_set=self.ids), -1).to_numpy(), -1)
        known = pos >= 0
        self.seen[pos[known]] = True
        unknown = present & ~known
        if unknown.any():
            self.unknown.append(pc.unique(tokens.filter(pa.array(unknown))))
        out = np.full(len(pos), -1, dtype=np.int32)
        out[known] = self.index[pos[known]]
        return out

    def coverage(self) -> tuple[int, float]:
        """(distinct ids referenced, the fraction of them found in news.tsv)."""
        n_known = int(self.seen.sum())
        n_unknown = len(pc.unique(pa.chunked_array(self.unknown, pa.string()))) if self.unknown else 0
        total = n_known + n_unknown
        return total, (n_known / total if total else 1.0)


# ------------------------------------------------------------------------ behaviors


class _Relabel(Exception):
    """The split looked unlabeled in its first blocks but has labels later: restart as labelled."""


@dataclass
class _BehaviorStats:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BEHAVIOR_COUNTERS, 0))
    lines: int = 0
    impressions: int = 0
    clicks: int = 0
    candidates: int = 0
    history_len: int = 0
    users: list[pa.Array] = field(default_factory=list)
    #: impression ids written so far (sorted), to drop a repeated one
    seen_ids: np.ndarray = field(default_factory=lambda: np.array([], dtype=np.int64))

    def add(self, key: str, n: int) -> None:
        self.counts[key] += int(n)


def _ingest_behaviors(
    path: Path, dest: Path, lookup: _Lookup, split: str, progress: bool, block_size: int
) -> dict[str, Any]:
    try:
        return _stream_behaviors(path, dest, lookup, split, progress, block_size, labeled=None)
    except _Relabel:
        log.info(f"{path}: labelled candidates appear after unlabeled ones; reading it again as a labelled split")
        lookup.seen[:] = False
        lookup.unknown.clear()
        return _stream_behaviors(path, dest, lookup, split, progress, block_size, labeled=True)


def _stream_behaviors(
    path: Path, dest: Path, lookup: _Lookup, split: str, progress: bool, block_size: int, labeled: bool | None
) -> dict[str, Any]:
    malformed = _MalformedLines()
    stats = _BehaviorStats()
    size = path.stat().st_size
    with (
        atomic_path(dest) as tmp,
        pq.ParquetWriter(tmp, schemas.BEHAVIORS, compression="zstd") as writer,
        open(path, "rb") as f,
        tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"{split} behaviors", disable=not progress) as bar,
    ):
        wrote_unlabeled = False
        line_no = 1
        invalid_utf8 = [0]
        for block in _line_blocks(f, block_size):
            raw_len = len(block)
            text = _valid_utf8(block, path, line_no, invalid_utf8)
            line_no += bytes(block).count(b"\n") if isinstance(block, memoryview) else block.count(b"\n")
            batch = _parse_block(text if isinstance(text, memoryview) else memoryview(text), path, malformed)
            stats.lines += batch.num_rows
            table, labeled = _behaviors_block(batch, lookup, stats, labeled)
            if labeled is False:
                wrote_unlabeled = True
            elif labeled and wrote_unlabeled:
                raise _Relabel
            if table.num_rows:
                writer.write_table(table)
            bar.update(raw_len)
        stats.lines += malformed.count
        n_ok = stats.lines - malformed.count
        if stats.lines == 0:
            raise DataError(f"{path}: the file is empty (expected MIND behaviors.tsv lines)")
        if n_ok == 0:
            raise DataError(
                f"{path}: not a MIND behaviors.tsv: none of its {stats.lines:,} lines has the 5 tab-separated "
                f"columns impression_id, user_id, time, history, impressions (e.g. {'; '.join(malformed.examples)})"
            )
        if stats.impressions == 0:
            c = stats.counts
            raise DataError(
                f"{path}: no usable impression in {n_ok:,} well-formed lines ({c['bad_impression_id']:,} with a bad "
                f"impression id, {c['bad_labels']:,} candidates with a bad label, {c['unknown_candidate_ids']:,} "
                f"candidates missing from {path.with_name('news.tsv')}). Are news.tsv and behaviors.tsv from the same "
                f"MIND split?"
            )
    malformed.warn(path, len(BEHAVIOR_COLUMNS))
    stats.add("malformed_behavior_lines", malformed.count)
    stats.add("behavior_invalid_utf8_lines", invalid_utf8[0])
    if stats.counts["behavior_header_lines"]:
        log.warning(f"{path}: skipped {stats.counts['behavior_header_lines']:,} header line(s) (impression_id, "
                    "user_id, ...): MIND files have none")
    if stats.counts["duplicate_impression_ids"]:
        log.warning(f"{path}: {stats.counts['duplicate_impression_ids']:,} line(s) repeat an earlier impression id; "
                    "the first line of each id is kept")
    referenced, coverage = lookup.coverage()
    n_users = len(pc.unique(pa.chunked_array(stats.users, pa.string())))
    return {
        "behavior_lines": stats.lines,
        "impressions": stats.impressions,
        "users": n_users,
        "labeled": bool(labeled),
        "clicks": stats.clicks,
        "candidates": stats.candidates,
        "candidates_mean": round(stats.candidates / stats.impressions, 4),
        "history_len_mean": round(stats.history_len / stats.impressions, 4),
        "referenced_news_ids": referenced,
        "news_coverage": round(coverage, 6),
        **stats.counts,
    }


def _line_blocks(f: BinaryIO, block_size: int) -> Iterator[memoryview]:
    """Read ``f`` in blocks of about ``block_size`` bytes, each ending at a line end.

    This bounds memory: pyarrow's own streaming reader reads ahead many blocks. A line
    longer than a block is carried over whole. A UTF-8 BOM at the start is dropped.
    """
    tail = b""
    first = True
    while data := f.read(block_size):
        buf = tail + data if tail else data
        if first:
            buf = buf.removeprefix(b"\xef\xbb\xbf")
            first = False
        cut = buf.rfind(b"\n") + 1
        if cut == 0:
            tail = buf
            continue
        tail = buf[cut:]
        yield memoryview(buf)[:cut]
    if tail:
        yield memoryview(tail)


def _parse_block(block: memoryview, path: Path, malformed: _MalformedLines) -> pa.RecordBatch:
    """The behaviors lines of one block as five string columns (threads parse its parts)."""
    try:
        table = pcsv.read_csv(pa.py_buffer(block), **_csv_options(BEHAVIOR_COLUMNS, malformed, 1 << 20))
    except pa.ArrowInvalid as e:
        if "Empty CSV file" not in str(e):
            raise DataError(f"{path}: cannot be read as MIND behaviors.tsv: {e}") from None
        table = pa.table({c: pa.array([], pa.string()) for c in BEHAVIOR_COLUMNS})  # only blank lines
    return pa.RecordBatch.from_arrays([table[c].combine_chunks() for c in BEHAVIOR_COLUMNS], names=list(BEHAVIOR_COLUMNS))


def _tokens(strings: pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Split each string on spaces: (tokens, the row of each, which tokens are non-empty).

    Empty tokens (from an empty history or doubled spaces) are masked rather than filtered
    out, which would copy every string.
    """
    lists = pc.split_pattern(strings, " ")
    rows = np.repeat(np.arange(len(lists), dtype=np.int64), np.diff(lists.offsets.to_numpy()))
    tokens = pc.list_flatten(lists)
    present = pc.greater(pc.binary_length(tokens), 0).to_numpy(zero_copy_only=False)
    return tokens, rows, present


def _first_occurrences(key: np.ndarray) -> np.ndarray:
    """True where ``key[i]`` does not occur before position ``i``.

    A sort finds the repeated keys (rare); only the positions holding them are hashed.
    """
    first = np.ones(len(key), dtype=bool)
    s = np.sort(key)
    repeated = np.unique(s[1:][s[1:] == s[:-1]])
    if len(repeated):
        at = np.flatnonzero(pc.is_in(pa.array(key), value_set=pa.array(repeated)).to_numpy(zero_copy_only=False))
        first[at] = ~pd.Series(key[at]).duplicated().to_numpy()
    return first


def _list_array(parents: np.ndarray, values: np.ndarray, n_rows: int, dtype: pa.DataType) -> pa.ListArray:
    """Rebuild a list column from flat ``values`` and their (sorted) row ``parents``."""
    offsets = np.zeros(n_rows + 1, dtype=np.int32)
    np.cumsum(np.bincount(parents, minlength=n_rows), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=dtype))


def _behaviors_block(
    batch: pa.RecordBatch, lookup: _Lookup, stats: _BehaviorStats, labeled: bool | None
) -> tuple[pa.Table, bool | None]:
    """Parse one block of behaviors lines into rows of the BEHAVIORS schema.

    ``labeled`` is None until the first block with candidates decides it. Returns the rows
    and the (possibly just decided) ``labeled``; an empty table and True when labelled
    candidates appear in a split that looked unlabeled so far (the caller starts again).
    """
    # a header line (impression_id, user_id, time, ...) is not a row
    header = pc.and_(pc.equal(batch.column("impression_id"), "impression_id"), pc.equal(batch.column("user_id"), "user_id"))
    n_header = pc.sum(header).as_py() or 0
    if n_header:
        stats.add("behavior_header_lines", n_header)
        batch = batch.filter(pc.invert(header))
    # impression id: a non-negative integer, else the row is dropped
    ok = pc.match_substring_regex(batch.column("impression_id"), r"^[0-9]{1,18}$")
    n_ok = pc.sum(ok).as_py() or 0
    stats.add("bad_impression_id", batch.num_rows - n_ok)
    if n_ok < batch.num_rows:
        batch = batch.filter(ok)
    # a repeated impression id: the first line is kept (ids key prediction.txt and the metrics)
    ids = pc.cast(batch.column("impression_id"), pa.int64()).to_numpy(zero_copy_only=False)
    first = _first_occurrences(ids) & ~np.isin(ids, stats.seen_ids, assume_unique=False)
    if not first.all():
        stats.add("duplicate_impression_ids", (~first).sum())
        batch = batch.filter(pa.array(first))
        ids = ids[first]
    stats.seen_ids = np.union1d(stats.seen_ids, ids)
    n = batch.num_rows

    # candidates "N1-1 N2-0" (or bare "N1 N2" in the test split). The label is the last two
    # bytes, "-1" or "-0"; any other token with a "-" has a malformed label.
    c_tok, c_row, present = _tokens(batch.column("impressions"))
    c_bytes = c_tok.view(pa.binary())
    suffix = pc.binary_slice(c_bytes, -2)
    is_one = pc.equal(suffix, b"-1").to_numpy(zero_copy_only=False)
    valid_label = is_one | pc.equal(suffix, b"-0").to_numpy(zero_copy_only=False)
    if labeled is None and present.any():
        labeled = bool(valid_label.any())
    if labeled:
        keep = present & valid_label
        c_ids = pc.binary_slice(c_bytes, 0, -2).view(pa.string())
    elif valid_label.any():
        return pa.table({}), True
    else:
        keep = present & ~pc.match_substring(c_tok, "-").to_numpy(zero_copy_only=False)
        c_ids = c_tok
    stats.add("bad_labels", (present & ~keep).sum())
    c_index = lookup(c_ids, keep)
    unknown = keep & (c_index < 0)
    stats.add("unknown_candidate_ids", unknown.sum())
    keep &= ~unknown
    c_row, c_index, is_one = c_row[keep], c_index[keep], is_one[keep]
    n_cand = np.bincount(c_row, minlength=n)
    rows = n_cand > 0
    stats.add("impressions_without_candidates", n - rows.sum())

    # history: ids found in news.tsv, the first occurrence of each
    h_tok, h_row, present = _tokens(batch.column("history"))
    h_index = lookup(h_tok, present)
    known = h_index >= 0
    stats.add("unknown_history_ids", (present & ~known).sum())
    h_row, h_index = h_row[known], h_index[known]
    first = _first_occurrences(h_row << 32 | h_index.astype(np.int64))
    stats.add("duplicate_history_ids", (~first).sum())
    h_row, h_index = h_row[first], h_index[first]

    time = pc.strptime(batch.column("time"), format=TIME_FORMAT, unit="s", error_is_null=True)
    stats.add("bad_time", time.null_count)

    table = pa.Table.from_arrays(
        [
            pc.cast(batch.column("impression_id"), pa.int64()),
            batch.column("user_id"),
            time,
            _list_array(h_row, h_index, n, pa.int32()),
            _list_array(c_row, c_index, n, pa.int32()),
            _list_array(c_row, is_one.astype(np.int8), n, pa.int8()) if labeled else pa.nulls(n, pa.list_(pa.int8())),
        ],
        schema=schemas.BEHAVIORS,
    )
    if not rows.all():
        table = table.filter(pa.array(rows))

    # what the written rows hold
    n_hist = np.bincount(h_row, minlength=n)[rows]
    n_cand = n_cand[rows]
    stats.impressions += table.num_rows
    stats.candidates += int(n_cand.sum())
    stats.history_len += int(n_hist.sum())
    stats.add("empty_histories", (n_hist == 0).sum())
    stats.users.append(pc.unique(table.column("user_id")))
    if labeled:
        n_click = np.bincount(c_row, weights=is_one, minlength=n)[rows].astype(np.int64)
        stats.clicks += int(n_click.sum())
        stats.add("impressions_without_click", (n_click == 0).sum())
        stats.add("impressions_without_nonclick", (n_click == n_cand).sum())
    return table, labeled
