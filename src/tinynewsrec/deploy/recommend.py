"""Recommendations from a model and a news index: one user's top-k, and MIND batch prediction.

What the CLI (:mod:`.cli`) and the service (:mod:`.service`) share:

- :func:`load_model` loads an exported folder (:func:`~.export.load_for_serving`) or, as a
  convenience, a pipeline model folder (``models/student``: tokenizer and title length then come
  from ``params.yaml`` / defaults, see :func:`~.export.serving_defaults`);
- :class:`Recommendations` holds a model and a :class:`~.index.NewsIndex` and answers
  ``recommend(history, k)``.

Decisions where the issue is silent:

- the user vector is computed from the LAST ``history_len`` clicks of the history (as in training
  and evaluation); the user's own clicks are never recommended back (they are excluded from the top-k);
- an empty history is a cold user: the model's learned ``empty_user`` vector ranks the news
  (``cold_user: true`` in the answer; the CLI says so on stderr);
- a PLM-NR's user vectors take evaluation's fast path (:class:`~tinynewsrec.evaluate.AttentionUsers`:
  each news' attention logit computed once, the first time a history holds it, and kept for the
  life of the :class:`Recommendations`, e.g. the service's), so serving, batch mode and the evaluate
  stage score alike; any other recommender is asked ``encode_user``;
- an unknown news id in a history (or a candidate) is an error that names it, not a silent drop;
- batch mode reads a MIND behaviors.tsv (labelled or not) and writes the leaderboard's
  prediction.txt, ranking each impression's own candidates (history not excluded there: the
  leaderboard ranks exactly the candidates it shows).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from ..errors import DataError
from ..recommender import read_config
from .export import EXPORTABLE_KINDS, serving_defaults
from .index import NewsIndex

log = logging.getLogger("tinynewsrec")


def load_model(folder: str | os.PathLike):
    """``(recommender, tokenizer, serving)`` of an exported folder or of a pipeline model folder."""
    from ..models.plm import load_tokenizer
    from ..recommender import load_recommender
    from .export import load_for_serving

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such model folder")
    meta = read_config(folder)
    if meta["model"] not in EXPORTABLE_KINDS:
        raise DataError(f"{folder} holds a model of kind {meta['model']!r}; recommending needs a news encoder over "
                        f"titles ({', '.join(EXPORTABLE_KINDS)})")
    if isinstance(meta.get("serving"), dict):
        return load_for_serving(folder)
    serving = serving_defaults(meta)
    log.warning("%s is not an exported folder: tokenizer %r (%s), titles cut to %d tokens (%s)", folder,
                serving["plm_name"], serving["tokenizer_source"], serving["title_len"], serving["title_len_source"])
    return load_recommender(folder), load_tokenizer(serving["plm_name"]), serving


def model_sha256(folder: str | os.PathLike) -> str:
    """The weights' hash that an index records (the exported folder's ``source_sha256`` if any)."""
    from ..io import checkpoint_sha256

    meta = read_config(folder)
    return meta.get("source_sha256") or checkpoint_sha256(folder)


def check_index_fits(index: NewsIndex, folder: str | os.PathLike, dim: int) -> None:
    """The index was built by this model (same weights' hash, same vector width)."""
    if index.dim != dim:
        raise DataError(f"the news index holds {index.dim}-dim vectors but the model {folder} makes {dim}-dim ones; "
                        "rebuild it with `tinynewsrec build-index`")
    sha = index.meta.get("model_sha256")
    if sha and sha != model_sha256(folder):
        raise DataError(f"the news index was built by another model than {folder} (weights' hash differs); "
                        "rebuild it with `tinynewsrec build-index`")


@dataclass
class Recommendations:
    """A model and a news index: ``recommend(history, k)``. The model's weights and the index
    are not to change afterwards (a PLM-NR's attention logits are kept per news)."""

    model: object
    index: NewsIndex
    history_len: int = 50
    backend: str = "torch"
    users: object = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        from ..evaluate import AttentionUsers, attention_user_encoder

        encoder = attention_user_encoder(self.model)
        self.users = None if encoder is None else AttentionUsers(encoder, self.index.vectors)

    @torch.inference_mode()
    def user_vectors(self, histories: list[list[str]]) -> torch.Tensor:
        """User vectors [B, D] from histories of news ids (the last ``history_len`` clicks)."""
        rows = [self.index.positions(list(h)[-self.history_len :]) for h in histories]
        width = max(1, max((len(r) for r in rows), default=0))
        pos = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for b, r in enumerate(rows):
            pos[b, : len(r)] = torch.from_numpy(r)
            mask[b, : len(r)] = True
        if self.users is not None:  # PLM-NR: the fast path (module docstring)
            return self.users(pos, mask)
        return self.model.encode_user(self.index.vectors[pos], mask)

    def recommend(self, history: list[str], k: int = 10) -> dict:
        """``{"cold_user": bool, "items": [{"news_id", "title", "score"}, ...]}``, best first; the
        history's own news are not recommended."""
        history = list(history)
        user = self.user_vectors([history])
        exclude = [self.index.positions(history)] if history else None
        scores, pos = self.index.topk(user, k, exclude=exclude, backend=self.backend)
        items = []
        for s, p in zip(scores[0].tolist(), pos[0].tolist()):
            if p < 0:
                continue
            title = self.index.titles[p] if self.index.titles else ""
            items.append({"news_id": self.index.ids[p], "title": title, "score": round(float(s), 6)})
        return {"cold_user": not history, "items": items}


# --- MIND behaviors files --------------------------------------------------------------------


def read_behaviors_tsv(path: str | os.PathLike) -> pa.Table:
    """A MIND behaviors.tsv as ``impression_id`` (int64), ``user_id``, ``history`` (list<string>),
    ``candidates`` (list<string>), ``labels`` (list<int8>, -1 where the file has no label)."""
    import pyarrow.csv as pcsv

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such behaviors file (expected a MIND behaviors.tsv)")
    names = ["impression_id", "user_id", "time", "history", "impressions"]
    try:
        table = pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(column_names=names),
            parse_options=pcsv.ParseOptions(delimiter="\t", quote_char=False),
            convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=False),
        )
    except pa.ArrowInvalid as e:
        raise DataError(f"{path}: not a MIND behaviors.tsv (5 tab-separated columns: impression_id, user_id, time, "
                        f"history, impressions): {' '.join(str(e).split())}") from None
    try:
        ids = pc.cast(table["impression_id"], pa.int64())
    except pa.ArrowInvalid:
        raise DataError(f"{path}: an impression_id is not an integer (expected MIND behaviors.tsv)") from None
    history = _split_ids(table["history"])
    shown = _split_ids(table["impressions"])
    flat = shown.flatten()
    has_label = pc.match_substring_regex(flat, r"-[01]$")
    labels = pc.if_else(has_label, pc.if_else(pc.ends_with(flat, "-1"), 1, 0), -1).cast(pa.int8())
    cand = pc.replace_substring_regex(flat, r"-[01]$", "")
    offs = shown.offsets
    return pa.table({
        "impression_id": ids,
        "user_id": table["user_id"],
        "history": history,
        "candidates": pa.ListArray.from_arrays(offs, cand),
        "labels": pa.ListArray.from_arrays(offs, labels),
    })


def _split_ids(column: pa.ChunkedArray) -> pa.ListArray:
    """Space-separated ids -> list<string> (an empty field is an empty list, not [""])."""
    parts = pc.utf8_split_whitespace(column.combine_chunks())
    values = parts.flatten()
    keep = pc.not_equal(values, "").to_numpy(zero_copy_only=False)
    row = np.repeat(np.arange(len(parts)), np.diff(parts.offsets.to_numpy()))
    counts = np.bincount(row[keep], minlength=len(parts))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), values.filter(pa.array(keep)))


def user_history(behaviors: pa.Table, user: str) -> list[str]:
    """The history of ``user``'s last impression in the file (MIND repeats the history per impression)."""
    rows = np.flatnonzero(pc.equal(behaviors["user_id"], user).to_numpy(zero_copy_only=False))
    if len(rows) == 0:
        raise DataError(f"user {user!r} has no impression in the behaviors file")
    return behaviors["history"][int(rows[-1])].as_py()


def _positions(index: NewsIndex, flat_ids: pa.Array, what: str) -> np.ndarray:
    import pandas as pd

    ids = np.asarray(flat_ids.to_numpy(zero_copy_only=False), dtype=object)
    pos = pd.Index(index.ids).get_indexer(ids)
    if (pos < 0).any():
        index.positions(list(dict.fromkeys(ids[pos < 0].tolist())), what)  # raises, naming them
    return pos.astype(np.int64)


def predict_behaviors(recs: Recommendations, behaviors_path: str | os.PathLike, out: str | os.PathLike, *,
                      progress: bool = True) -> int:
    """Rank every impression's candidates of a MIND behaviors.tsv; write the leaderboard's
    prediction.txt to ``out`` (atomically, impressions in file order). Returns the impression count."""
    from ..evaluate import DevImpressions, score_impressions
    from ..metrics import rank_lists, write_prediction_file

    table = read_behaviors_tsv(behaviors_path)

    def flat(column):
        arr = table[column].combine_chunks()
        return arr.flatten(), arr.offsets.to_numpy().astype(np.int64)

    h_ids, h_off = flat("history")
    c_ids, c_off = flat("candidates")
    if (np.diff(c_off) == 0).any():
        bad = table["impression_id"][int(np.flatnonzero(np.diff(c_off) == 0)[0])].as_py()
        raise DataError(f"{behaviors_path}: impression {bad} has no candidates")
    h_pos = _positions(recs.index, h_ids, "history") + 1  # row 0 of the table below is padding
    c_pos = _positions(recs.index, c_ids, "candidate") + 1
    labels = table["labels"].combine_chunks().flatten().to_numpy(zero_copy_only=False).astype(np.int8)
    keep = np.arange(len(h_pos)) >= np.repeat(np.maximum(h_off[:-1], h_off[1:] - recs.history_len), np.diff(h_off))
    h_pos = h_pos[keep]
    h_off = np.concatenate([[0], np.cumsum(np.minimum(np.diff(h_off), recs.history_len))]).astype(np.int64)
    dev = DevImpressions(table["impression_id"].to_numpy(), c_pos.astype(np.int32), labels, c_off,
                         h_pos.astype(np.int32), h_off)
    vecs = torch.cat([torch.zeros(1, recs.index.dim), recs.index.vectors])
    scores = score_impressions(recs.model, vecs, dev, progress=progress)
    ranks = rank_lists(scores, dev.offsets, progress=False)
    write_prediction_file(out, dev.impression_ids, ranks, dev.offsets)
    return len(dev)
