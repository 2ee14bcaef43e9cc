"""Frozen-layer cache: the PLM's frozen bottom computed once per news, not once per step.

Only the PLM's last ``trainable_layers`` train (DESIGN "Models"); the embeddings and the
lower ``num_frozen_layers`` layers give the same token states for a title at every step,
and they are identical across post-training, every teacher and evaluation as long as all
of them train only the top layers of the same PLM. :func:`build_frozen_cache` runs that
bottom once over every news and stores the token states after it; :class:`FrozenCache`
reads them back for a batch; :class:`TopLayers` (or ``NewsEncoder`` given
``hidden_states``) runs only the remaining layers, so that
``top(cache.batch(ids))`` equals ``plm(token ids)`` up to the storage precision.

On-disk layout (a folder; no pickle anywhere):

- ``states.npy``: [total_tokens, hidden] float16 (default) or float32, the token states of
  all news back to back, unpadded, read with ``np.load(mmap_mode="r")``;
- ``offsets.npy``: int64 [num_news + 1]; the states of news_index ``i`` are rows
  ``offsets[i]:offsets[i + 1]`` (an empty range for index 0, the padding, and for any
  news index that had no tokens given);
- ``cache.json``: shape, dtype, number of frozen layers, and ``model_hash``, a SHA-256 of
  the embeddings' and frozen layers' weights, checked against the model that reads it.

Frozen layers are run in eval mode (no dropout): the cache is a deterministic function of
the weights. ``NewsEncoder`` also runs its frozen bottom in eval mode, so training with
and without the cache is the same computation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import DataError, ParamError
from ..io import atomic_dir
from .plm import run_layers

log = logging.getLogger("tinynewsrec")

CACHE_FORMAT = "tinynewsrec.frozen_cache"
CACHE_VERSION = 1


# --- ragged (variable-length per news) arrays -------------------------------------------


def as_list_array(tokens) -> pa.Array:
    """``tokens`` (list of id lists, a pyarrow ListArray / ChunkedArray) as one ListArray."""
    if isinstance(tokens, pa.ChunkedArray):
        tokens = tokens.combine_chunks()
    if not isinstance(tokens, (pa.ListArray, pa.LargeListArray)):
        tokens = pa.array(tokens, type=pa.list_(pa.int32()))
    return tokens


def ragged_parts(tokens) -> tuple[np.ndarray, np.ndarray]:
    """(flat values, int64 offsets of length n + 1) of a list array; nulls count as empty."""
    arr = as_list_array(tokens)
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = pc.list_flatten(arr).to_numpy(zero_copy_only=False)
    return values, offsets


def gather_padded(values, offsets: np.ndarray, rows: np.ndarray, max_len: int | None = None):
    """Rows ``rows`` of a ragged array, right-padded to the longest of them (dynamic padding).

    Returns ``(padded [len(rows), T, ...], mask [len(rows), T] bool)``; padding is zero.
    ``values`` may be a numpy memmap: only the needed rows are read. ``max_len`` keeps
    the first ``max_len`` items of each row.
    """
    rows = np.asarray(rows, dtype=np.int64)
    starts = offsets[rows]
    lengths = offsets[rows + 1] - starts
    if max_len is not None:
        lengths = np.minimum(lengths, max_len)
    return pad_ranges(values, starts, lengths)


def pad_ranges(values, starts: np.ndarray, lengths: np.ndarray):
    """``values[starts[i] : starts[i] + lengths[i]]`` for every i, as one zero-padded array
    [n, max(lengths), ...] and its mask [n, max(lengths)] (True = a real item)."""
    width = max(int(lengths.max(initial=0)), 1)
    pos = np.arange(width, dtype=np.int64)
    mask = pos[None, :] < lengths[:, None]
    src = (starts[:, None] + pos[None, :])[mask]
    out = np.zeros((len(starts), width) + tuple(values.shape[1:]), dtype=values.dtype)
    if src.size:
        out[mask] = values[src]
    return out, mask


# --- the cache ----------------------------------------------------------------------------


def frozen_fingerprint(plm, num_frozen_layers: int) -> str:
    """SHA-256 over the names, shapes and bytes of the embeddings' and first
    ``num_frozen_layers`` layers' weights: equal iff the cached bottom is the same."""
    h = hashlib.sha256()
    modules = {"embeddings": plm.embeddings}
    modules.update({f"encoder.layer.{i}": plm.encoder.layer[i] for i in range(num_frozen_layers)})
    for prefix, module in modules.items():
        for key, t in sorted(module.state_dict().items()):
            t = t.detach().to("cpu").contiguous()
            h.update(f"{prefix}.{key}:{t.dtype}:{tuple(t.shape)};".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    h.update(f"attn={plm.config._attn_implementation};eps={plm.config.layer_norm_eps}".encode())
    return h.hexdigest()


@torch.no_grad()
def build_frozen_cache(
    plm,
    tokens,
    num_frozen_layers: int,
    batch_size: int,
    out_path: str | os.PathLike,
    dtype=np.float16,
    progress: bool = True,
    news_index: Sequence[int] | np.ndarray | None = None,
    source: str = "",
) -> Path:
    """Compute and store, per news, the token states after the embeddings and the first
    ``num_frozen_layers`` encoder layers of ``plm`` (with the attention mask).

    ``tokens``: per news its token ids ([CLS] ... [SEP], unpadded), a list of lists or a
    pyarrow ListArray. ``news_index``: the key of each row (e.g. the ``news_index`` column
    of data/tokens/news.parquet); default: the row number. ``source`` is recorded in
    cache.json (e.g. the model folder). Written atomically to the folder ``out_path``.
    Run it on one process only (e.g. the main process under ``accelerate``).
    """
    depth = len(plm.encoder.layer)
    if not 0 <= num_frozen_layers <= depth:
        raise ParamError(f"num_frozen_layers must be between 0 and {depth} (the PLM's layers), got {num_frozen_layers}")
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float16), np.dtype(np.float32)):
        raise ParamError(f"frozen cache dtype must be float16 or float32, got {dtype}")
    values, row_offsets = ragged_parts(tokens)
    lengths = np.diff(row_offsets)
    n = len(lengths)
    keys = np.arange(n, dtype=np.int64) if news_index is None else np.asarray(news_index, dtype=np.int64)
    if len(keys) != n:
        raise DataError(f"build_frozen_cache: {len(keys)} news indices for {n} token lists")
    if n and keys.min() < 0:
        raise DataError(f"build_frozen_cache: negative news_index {keys.min()}")
    num_keys = int(keys.max()) + 1 if n else 1
    key_lengths = np.zeros(num_keys, dtype=np.int64)
    np.add.at(key_lengths, keys, 1)
    if (key_lengths > 1).any():
        raise DataError(f"build_frozen_cache: news_index {int(np.argmax(key_lengths > 1))} appears more than once")
    key_lengths[keys] = lengths
    key_offsets = np.zeros(num_keys + 1, dtype=np.int64)
    np.cumsum(key_lengths, out=key_offsets[1:])
    hidden = plm.config.hidden_size
    device = next(plm.parameters()).device

    log.info("caching the embeddings and first %d layers of the PLM for %s news", num_frozen_layers, f"{n:,}")
    was_training = plm.training
    plm.eval()
    out_path = Path(out_path)
    try:
        with atomic_dir(out_path) as tmp:
            shape = (int(key_offsets[-1]), hidden)
            states = np.lib.format.open_memmap(tmp / "states.npy", mode="w+", dtype=dtype, shape=shape)
            order = np.argsort(lengths, kind="stable")  # similar lengths together: little padding
            bar = tqdm(total=n, desc="caching frozen layers", unit="news", disable=not progress)
            for lo in range(0, n, batch_size):
                rows = order[lo : lo + batch_size]
                ids, mask = gather_padded(values, row_offsets, rows)
                ids_t = torch.from_numpy(ids.astype(np.int64)).to(device)
                mask_t = torch.from_numpy(mask).long().to(device)
                h = run_layers(plm, plm.embeddings(input_ids=ids_t), mask_t, 0, num_frozen_layers)
                valid = h[mask_t.bool()].float().cpu().numpy().astype(dtype)
                dest = (key_offsets[keys[rows]][:, None] + np.arange(mask.shape[1])[None, :])[mask]
                states[dest] = valid
                bar.update(len(rows))
            bar.close()
            states.flush()
            del states
            np.save(tmp / "offsets.npy", key_offsets, allow_pickle=False)
            meta = {
                "format": CACHE_FORMAT,
                "version": CACHE_VERSION,
                "num_news": num_keys,
                "num_tokens": int(key_offsets[-1]),
                "hidden_size": hidden,
                "dtype": dtype.name,
                "num_frozen_layers": num_frozen_layers,
                "model_hash": frozen_fingerprint(plm, num_frozen_layers),
                "source": source,
            }
            (tmp / "cache.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    finally:
        plm.train(was_training)
    return out_path


class FrozenCache:
    """Reader of a cache folder written by :func:`build_frozen_cache` (memory-mapped)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta_path = self.path / "cache.json"
        how = "delete the folder and rebuild it (rerun the stage that writes it)"
        try:
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
            self.offsets = np.load(self.path / "offsets.npy", allow_pickle=False)
            self.states = np.load(self.path / "states.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{self.path}: not a readable frozen-layer cache ({e}); {how}") from None
        if self.meta.get("format") != CACHE_FORMAT or self.meta.get("version") != CACHE_VERSION:
            raise DataError(f"{meta_path}: not a {CACHE_FORMAT} version {CACHE_VERSION}; {how}")
        expected = (self.meta["num_tokens"], self.meta["hidden_size"])
        if self.states.shape != expected or len(self.offsets) != self.meta["num_news"] + 1:
            raise DataError(f"{self.path}: states.npy/offsets.npy do not match cache.json (truncated?); {how}")
        self.num_frozen_layers: int = self.meta["num_frozen_layers"]
        self.model_hash: str = self.meta["model_hash"]

    def __len__(self) -> int:
        return self.meta["num_news"]

    def __getstate__(self):  # DataLoader workers (spawn) reopen the memmap instead of copying it
        return {"path": str(self.path)}

    def __setstate__(self, state):
        self.__init__(state["path"])

    def check_model(self, plm) -> None:
        """Raise :class:`DataError` unless ``plm``'s embeddings and frozen layers are the ones cached."""
        k = self.num_frozen_layers
        if len(plm.encoder.layer) < k or frozen_fingerprint(plm, k) != self.model_hash:
            raise DataError(
                f"{self.path}: this frozen-layer cache was built from a different model (embeddings or first "
                f"{self.num_frozen_layers} layers differ, e.g. post-training trained more than the top layers); "
                "delete the folder and rebuild it"
            )

    def batch(self, news_index, max_len: int | None = None) -> dict:
        """Padded cached states of ``news_index`` (global indices) for the news encoder:
        ``{"hidden_states": float32 [N, T, H], "attention_mask": long [N, T], "start_layer": k}``,
        T = the longest of these news (dynamic padding)."""
        idx = np.asarray(news_index, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            bad = int(idx[(idx < 0) | (idx >= len(self))][0])
            raise DataError(
                f"{self.path}: news_index {bad} is not in this frozen-layer cache ({len(self):,} news); rebuild it"
            )
        states, mask = gather_padded(self.states, self.offsets, idx, max_len)
        return {
            "hidden_states": torch.from_numpy(states).float(),
            "attention_mask": torch.from_numpy(mask).long(),
            "start_layer": self.num_frozen_layers,
        }


class TopLayers(nn.Module):
    """The PLM's layers ``num_frozen:`` as a module: ``TopLayers(plm, k)(cached, mask)`` equals
    ``plm(ids, mask).last_hidden_state`` when ``cached`` holds the states after layer k."""

    def __init__(self, plm, num_frozen: int):
        super().__init__()
        self.plm = plm
        self.num_frozen = num_frozen

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return run_layers(self.plm, hidden_states, attention_mask, self.num_frozen)
