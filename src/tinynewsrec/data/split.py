"""Cutting MIND impressions into training samples and dev impressions.

Training (PLM-NR, Wu et al. 2021; Tiny-NewsRec, Yu et al. 2022): every click of an
impression is one sample. Its candidates are the clicked news followed by K
(``data.npratio``) non-clicked news of the *same* impression, and the loss is
cross-entropy with the clicked news as the target, so the target is always index 0.
The user is represented by the most recent ``data.history_len`` news of the click
history that MIND records for the impression (clicks before it, oldest first).

Dev: every impression is kept whole (all candidates and labels), for AUC, MRR and
nDCG per impression.

Decisions where the design is silent:

* Each click draws its own K non-clicks (as the original code's ``newsample`` does per
  positive): two clicks of one impression usually get different non-clicks.
* The K non-clicks are drawn uniformly without replacement; only when the impression
  has fewer than K non-clicks are they drawn uniformly *with* replacement (counted in
  ``samples_with_replacement``), so such impressions still give K-way samples.
* Impressions with no non-click give no sample (there is nothing to contrast the click
  with); impressions with no click give none either; unlabeled (test) impressions give
  none. All three are counted, never dropped silently.
* The draw is a pure function of ``(seed, impression_id, click position, slot)``
  through a counter-based hash (splitmix64), not of a random stream: the samples do not
  depend on the chunk size used to bound memory, nor on which other impressions exist.
* Candidate order inside a training sample after index 0 carries no meaning (models are
  permutation-invariant over candidates).
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from ..errors import DataError
from . import schemas

log = logging.getLogger("tinynewsrec")

#: impressions processed at once; bounds memory (about 40 candidates each at MIND scale)
CHUNK_IMPRESSIONS = 200_000

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


# ---------------------------------------------------------------------------- lists


def _as_array(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def list_parts(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The flattened values and the per-row lengths of a list array (a null row has length 0)."""
    arr = _as_array(arr)
    values = arr.flatten().to_numpy(zero_copy_only=False)
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    return values, lengths


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _list_array(offsets: np.ndarray, values: np.ndarray, list_type: pa.DataType, mask=None) -> pa.Array:
    """A (large) list array of ``list_type`` from numpy offsets and values."""
    if pa.types.is_large_list(list_type):
        cls, offset_type = pa.LargeListArray, pa.int64()
    else:
        cls, offset_type = pa.ListArray, pa.int32()
    return cls.from_arrays(
        pa.array(offsets, offset_type), pa.array(values, list_type.value_type), type=list_type, mask=mask
    )


def truncate_lists(arr: pa.Array | pa.ChunkedArray, n: int) -> pa.Array:
    """Keep the last ``n`` elements of every list (the most recent clicks of a history).

    Vectorised over the offsets; lists shorter than ``n`` are kept whole, null rows stay null.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    arr = _as_array(arr)
    values, lengths = list_parts(arr)
    keep = np.minimum(lengths, n)
    new_offsets = _offsets(keep)
    first_kept = np.cumsum(lengths) - keep  # index in `values` of each row's first kept element
    idx = np.repeat(first_kept - new_offsets[:-1], keep) + np.arange(new_offsets[-1], dtype=np.int64)
    mask = pc.is_null(arr) if arr.null_count else None
    return _list_array(new_offsets, values[idx], arr.type, mask=mask)


# ---------------------------------------------------------------------------- random


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective 64-bit hash (wrapping uint64 arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def _uniform(key: np.ndarray, counter: np.ndarray) -> np.ndarray:
    """A uniform float in [0, 1) for each (key, counter) pair, as splitmix64 would give it."""
    with np.errstate(over="ignore"):
        z = _mix64(key + (counter.astype(np.uint64) + np.uint64(1)) * _GAMMA)
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _impression_keys(seed: int, impression_ids: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        seed_key = _mix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64) * _GAMMA)
        return _mix64(seed_key ^ (impression_ids.astype(np.uint64) * _GAMMA))


def _sample_without_replacement(n: np.ndarray, k: int, key: np.ndarray, counter0: np.ndarray) -> np.ndarray:
    """For each row, ``k`` distinct indices in ``[0, n)`` (n >= k): Floyd's algorithm, vectorised.

    Step j of ``k`` draws t uniform in [0, n - k + j]; if t was already chosen it takes
    n - k + j instead. The chosen set is a uniform random k-subset. O(k^2) per row.
    """
    out = np.empty((len(n), k), dtype=np.int64)
    for step in range(k):
        top = n - k + step
        t = np.minimum((_uniform(key, counter0 + step) * (top + 1)).astype(np.int64), top)
        seen = (out[:, :step] == t[:, None]).any(axis=1)
        out[:, step] = np.where(seen, top, t)
    return out


def _sample_with_replacement(n: np.ndarray, k: int, key: np.ndarray, counter0: np.ndarray) -> np.ndarray:
    out = np.empty((len(n), k), dtype=np.int64)
    for step in range(k):
        out[:, step] = np.minimum((_uniform(key, counter0 + step) * n).astype(np.int64), n - 1)
    return out


# ---------------------------------------------------------------------------- checks


def _check_columns(behaviors: pa.Table, needed: tuple[str, ...]) -> None:
    missing = [c for c in needed if c not in behaviors.column_names]
    if missing:
        raise DataError(
            f"behaviors table has no column {missing[0]!r} (has {', '.join(behaviors.column_names)}); "
            "it must follow tinynewsrec.data.schemas.BEHAVIORS: rerun the download stage"
        )


def _check_label_lengths(
    impression_ids: pa.Array, cand_len: np.ndarray, label_len: np.ndarray, labeled: np.ndarray
) -> None:
    bad = np.flatnonzero(labeled & (cand_len != label_len))
    if len(bad):
        i = bad[0]
        raise DataError(
            f"behaviors: impression {impression_ids[i].as_py()} has {cand_len[i]} candidates but "
            f"{label_len[i]} labels ({len(bad)} such impressions in this chunk); "
            "the behaviors parquet is corrupt: rerun the download stage (dvc repro -f download)"
        )


def _chunks(n_rows: int, chunk: int, progress: bool, desc: str):
    with tqdm(total=n_rows, desc=desc, unit="impr", unit_scale=True, disable=not progress) as bar:
        for start in range(0, n_rows, chunk):
            stop = min(start + chunk, n_rows)
            yield start, stop - start
            bar.update(stop - start)


# ---------------------------------------------------------------------------- train


def make_train_samples(
    behaviors: pa.Table,
    npratio: int,
    history_len: int,
    seed: int,
    *,
    chunk_impressions: int = CHUNK_IMPRESSIONS,
    progress: bool = True,
) -> tuple[pa.Table, dict]:
    """Cut training samples: one row per click, ``candidates = [clicked] + K non-clicked``.

    ``behaviors`` follows :data:`schemas.BEHAVIORS`. Returns a table with schema
    :data:`schemas.TRAIN_SAMPLES` (rows in impression order, then click order) and a
    counts dict (plain ints, JSON-ready): ``impressions``, ``impressions_used``,
    ``samples``, ``skipped_no_click``, ``skipped_no_nonclick``, ``skipped_unlabeled``,
    ``samples_with_replacement``, ``histories_truncated``, ``empty_histories``,
    ``npratio``, ``history_len``.

    Deterministic for ``seed`` and independent of ``chunk_impressions`` (see the module
    docstring). Raises :class:`DataError` if the table is malformed or gives no sample.
    """
    if npratio < 1:
        raise ValueError(f"npratio must be >= 1, got {npratio}")
    _check_columns(behaviors, ("impression_id", "user_id", "history", "candidates", "labels"))
    k = int(npratio)
    counts = dict.fromkeys(
        (
            "impressions", "impressions_used", "samples", "skipped_no_click", "skipped_no_nonclick",
            "skipped_unlabeled", "samples_with_replacement", "histories_truncated", "empty_histories",
        ),
        0,
    )
    counts["impressions"] = behaviors.num_rows
    parts: list[pa.Table] = []
    list_type = schemas.TRAIN_SAMPLES.field("candidates").type
    for start, length in _chunks(behaviors.num_rows, chunk_impressions, progress, "train samples"):
        chunk = behaviors.slice(start, length)
        imp_ids = _as_array(chunk["impression_id"])
        labels_arr = _as_array(chunk["labels"])
        cand, cand_len = list_parts(chunk["candidates"])
        label, label_len = list_parts(labels_arr)
        labeled = pc.is_valid(labels_arr).to_numpy(zero_copy_only=False)
        _check_label_lengths(imp_ids, cand_len, label_len, labeled)

        # every labeled impression's elements, in order; unlabeled rows contribute no labels
        row_labeled = np.repeat(labeled, cand_len)
        click = np.zeros(len(cand), dtype=bool)
        click[row_labeled] = label > 0
        row_of = np.repeat(np.arange(length), cand_len)
        n_click = np.bincount(row_of, weights=click, minlength=length).astype(np.int64)
        n_neg = np.where(labeled, cand_len - n_click, 0)

        no_click = labeled & (n_click == 0)
        no_neg = labeled & (n_click > 0) & (n_neg == 0)
        used = labeled & (n_click > 0) & (n_neg > 0)
        counts["skipped_unlabeled"] += int((~labeled).sum())
        counts["skipped_no_click"] += int(no_click.sum())
        counts["skipped_no_nonclick"] += int(no_neg.sum())
        counts["impressions_used"] += int(used.sum())

        # samples: the clicks of used impressions
        is_sample = click & used[row_of]
        sample_pos = np.flatnonzero(is_sample)
        sample_row = row_of[sample_pos]
        click_rank = sample_pos - _offsets(cand_len)[sample_row]  # position of the click in its impression
        n = n_neg[sample_row]

        # non-clicks of each impression, contiguous and in impression order
        neg_values = cand[row_labeled & ~click]
        neg_start = _offsets(n_neg)[:-1]

        key = _impression_keys(seed, imp_ids.to_numpy(zero_copy_only=False))[sample_row]
        counter0 = click_rank * k
        picks = np.empty((len(sample_pos), k), dtype=np.int64)
        full = n >= k
        picks[full] = _sample_without_replacement(n[full], k, key[full], counter0[full])
        picks[~full] = _sample_with_replacement(n[~full], k, key[~full], counter0[~full])
        counts["samples_with_replacement"] += int((~full).sum())

        cands = np.empty((len(sample_pos), k + 1), dtype=np.int32)
        cands[:, 0] = cand[sample_pos]
        cands[:, 1:] = neg_values[neg_start[sample_row][:, None] + picks]

        history_col = _as_array(chunk["history"])
        hist_len = pc.fill_null(pc.list_value_length(history_col), 0).to_numpy(zero_copy_only=False)
        counts["histories_truncated"] += int((hist_len[used] > history_len).sum())
        counts["empty_histories"] += int((hist_len[used] == 0).sum())
        history = truncate_lists(history_col, history_len)
        take = pa.array(sample_row, pa.int64())
        parts.append(
            pa.Table.from_arrays(
                [
                    imp_ids.take(take),
                    _as_array(chunk["user_id"]).take(take),
                    history.take(take).cast(list_type),
                    _list_array(np.arange(len(sample_pos) + 1, dtype=np.int64) * (k + 1), cands.ravel(), list_type),
                ],
                schema=schemas.TRAIN_SAMPLES,
            )
        )
        counts["samples"] += len(sample_pos)

    if counts["samples"] == 0:
        raise DataError(
            f"no training sample could be cut from {counts['impressions']:,} training impressions: "
            f"{counts['skipped_no_click']:,} have no click, {counts['skipped_no_nonclick']:,} have no "
            f"non-click, {counts['skipped_unlabeled']:,} are unlabeled (test data as training data?); "
            "check data.source and the train behaviors file"
        )
    counts.update(npratio=k, history_len=int(history_len))
    log.info(
        "%s training samples from %s impressions (%s without a click, %s without a non-click skipped; "
        "%s samples drew non-clicks with replacement)",
        f"{counts['samples']:,}", f"{counts['impressions_used']:,}", f"{counts['skipped_no_click']:,}",
        f"{counts['skipped_no_nonclick']:,}", f"{counts['samples_with_replacement']:,}",
    )
    table = pa.concat_tables(parts)
    return table, counts


# ---------------------------------------------------------------------------- dev


def make_dev_samples(
    behaviors: pa.Table,
    history_len: int,
    *,
    chunk_impressions: int = CHUNK_IMPRESSIONS,
    progress: bool = True,
) -> tuple[pa.Table, dict]:
    """Dev impressions: one row per impression, history cut to the last ``history_len`` clicks.

    All candidates and their labels are kept (labels stay null for an unlabeled test
    impression). Returns a table with schema :data:`schemas.DEV_SAMPLES` and counts:
    ``impressions``, ``candidates``, ``clicks``, ``unlabeled``, ``no_click``,
    ``no_nonclick`` (the last two are left out of the averaged metrics at evaluation),
    ``histories_truncated``, ``empty_histories``, ``history_len``.
    """
    _check_columns(behaviors, ("impression_id", "user_id", "history", "candidates", "labels"))
    counts = dict.fromkeys(
        ("impressions", "candidates", "clicks", "unlabeled", "no_click", "no_nonclick",
         "histories_truncated", "empty_histories"),
        0,
    )
    counts["impressions"] = behaviors.num_rows
    parts: list[pa.Table] = []
    for start, length in _chunks(behaviors.num_rows, chunk_impressions, progress, "dev impressions"):
        chunk = behaviors.slice(start, length)
        imp_ids = _as_array(chunk["impression_id"])
        labels_arr = _as_array(chunk["labels"])
        cand_col = _as_array(chunk["candidates"])
        cand_len = pc.list_value_length(cand_col).to_numpy(zero_copy_only=False).astype(np.int64)
        label, label_len = list_parts(labels_arr)
        labeled = pc.is_valid(labels_arr).to_numpy(zero_copy_only=False)
        _check_label_lengths(imp_ids, cand_len, label_len, labeled)
        n_click = np.bincount(np.repeat(np.arange(length), label_len), weights=label > 0, minlength=length)
        counts["candidates"] += int(cand_len.sum())
        counts["clicks"] += int(n_click.sum())
        counts["unlabeled"] += int((~labeled).sum())
        counts["no_click"] += int((labeled & (n_click == 0)).sum())
        counts["no_nonclick"] += int((labeled & (n_click > 0) & (n_click == label_len)).sum())

        history_col = _as_array(chunk["history"])
        hist_len = pc.fill_null(pc.list_value_length(history_col), 0).to_numpy(zero_copy_only=False)
        counts["histories_truncated"] += int((hist_len > history_len).sum())
        counts["empty_histories"] += int((hist_len == 0).sum())
        parts.append(
            pa.Table.from_arrays(
                [
                    imp_ids,
                    _as_array(chunk["user_id"]),
                    truncate_lists(history_col, history_len).cast(schemas.DEV_SAMPLES.field("history").type),
                    cand_col.cast(schemas.DEV_SAMPLES.field("candidates").type),
                    labels_arr.cast(schemas.DEV_SAMPLES.field("labels").type),
                ],
                schema=schemas.DEV_SAMPLES,
            )
        )
    counts["history_len"] = int(history_len)
    log.info(
        "%s dev impressions with %s candidates (%s without a click, %s without a non-click, %s unlabeled)",
        f"{counts['impressions']:,}", f"{counts['candidates']:,}", f"{counts['no_click']:,}",
        f"{counts['no_nonclick']:,}", f"{counts['unlabeled']:,}",
    )
    table = pa.concat_tables(parts) if parts else schemas.DEV_SAMPLES.empty_table()
    return table, counts
