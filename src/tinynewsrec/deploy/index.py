"""A news index: every news of a table encoded once by a model, and top-k search by dot product.

File format (``safetensors``, no pickle): tensor ``vectors`` float32 [N, D] (row i = news i);
metadata ``ids`` and ``titles`` (JSON lists, row order), ``model_sha256`` (the weights that
encoded it, checked when a model and an index are loaded together), ``title_len``, ``format``.

Search (:meth:`NewsIndex.topk`): exact, ``torch.topk`` over the scores of blocks of
``block`` news at a time (memory bounded by queries x block, whatever N is), merged across
blocks; or FAISS ``IndexFlatIP`` (the same exact inner-product search, in C++) when
``backend="faiss"`` and faiss is installed. ``exclude``: positions a query must not get back
(the user's own history: recommending what they already clicked is useless).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, ParamError
from ..io import atomic_path

FORMAT = "tinynewsrec-news-index/1"
BACKENDS = ("torch", "faiss")


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class NewsIndex:
    ids: list[str]
    vectors: torch.Tensor  # float32 [N, D]
    titles: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.ids):
            raise ValueError(f"{len(self.ids)} ids for vectors of shape {tuple(self.vectors.shape)}")
        if self.titles and len(self.titles) != len(self.ids):
            raise ValueError(f"{len(self.titles)} titles for {len(self.ids)} ids")
        self._position = {news_id: i for i, news_id in enumerate(self.ids)}
        self._faiss = None

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, news_id) -> bool:
        return news_id in self._position

    def title(self, news_id: str) -> str | None:
        """The title of ``news_id`` (None if the index does not hold it; "" if it holds no titles)."""
        pos = self._position.get(news_id)
        return None if pos is None else (self.titles[pos] if self.titles else "")

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    # --- building, saving, loading -------------------------------------------------------

    @classmethod
    def build(cls, model, tokenizer, news, title_len: int, *, batch_size: int = 128, progress: bool = True,
              model_sha256: str = "") -> NewsIndex:
        """Encode the titles of ``news`` (a table from :func:`~.news.read_news_table`) with ``model``'s
        news encoder (through :func:`tinynewsrec.evaluate.encode_news`: length-sorted batches, eval mode)."""
        from ..evaluate import encode_news
        from .news import title_tokens

        ids = news["news_id"].to_pylist()
        titles = news["title"].to_pylist()
        tokens = title_tokens(titles, tokenizer, title_len)
        table = encode_news(model, tokens, np.arange(1, len(ids) + 1), n_slots=len(ids) + 1, batch_size=batch_size,
                            progress=progress, desc=f"encoding {len(ids):,} news")
        return cls(ids, table[1:].cpu().contiguous(), titles,
                   {"model_sha256": model_sha256, "title_len": title_len})

    def save(self, path: str | os.PathLike) -> None:
        """Write the index atomically (module docstring)."""
        from safetensors.torch import save_file

        meta = {"format": FORMAT, "ids": json.dumps(self.ids), "titles": json.dumps(self.titles),
                **{k: str(v) for k, v in self.meta.items()}}
        with atomic_path(path, suffix=".safetensors") as tmp:
            save_file({"vectors": self.vectors.float().contiguous()}, str(tmp), metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> NewsIndex:
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such news index (build one with `tinynewsrec build-index MODEL NEWS OUT`)")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                vectors = f.get_tensor("vectors")
            if meta.get("format") != FORMAT:
                raise ValueError(f"format is {meta.get('format')!r}, expected {FORMAT!r}")
            ids, titles = json.loads(meta.pop("ids")), json.loads(meta.pop("titles"))
        except (SafetensorError, OSError, ValueError, KeyError) as e:
            raise DataError(f"{path}: not a news index written by `tinynewsrec build-index` "
                            f"({type(e).__name__}: {' '.join(str(e).split())})") from None
        meta.pop("format")
        return cls(ids, vectors.float(), titles, meta)

    # --- looking up and searching ---------------------------------------------------------

    def positions(self, ids, what: str = "history") -> np.ndarray:
        """Rows of ``ids``; unknown ids are one :class:`DataError` naming them."""
        unknown = [i for i in ids if i not in self._position]
        if unknown:
            shown = ", ".join(map(str, unknown[:5])) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise DataError(f"{len(unknown)} {what} news id(s) not in the news table/index: {shown}")
        return np.fromiter((self._position[i] for i in ids), dtype=np.int64, count=len(ids))

    def topk(self, queries: torch.Tensor, k: int, *, exclude: list | None = None, backend: str = "torch",
             block: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` (scores, positions) [Q, k'] of each query [Q, D] by dot product, best first
        (``k' = min(k, N)``); ``exclude[q]``: positions query q must not get (a k' that can no longer
        be filled gives position -1 and score -inf)."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ParamError(f"k must be a positive integer, got {k!r}")
        if backend not in BACKENDS:
            raise ParamError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        queries = queries.float().reshape(-1, self.dim)
        n_ex = max((len(e) for e in exclude), default=0) if exclude else 0
        want = min(k + n_ex, len(self))  # enough to fill k after dropping the excluded ones
        if backend == "faiss":
            scores, pos = self._faiss_search(queries, want)
        else:
            scores, pos = self._torch_search(queries, want, block)
        if exclude:
            for q, ex in enumerate(exclude):
                if len(ex):
                    drop = torch.isin(pos[q], torch.as_tensor(np.asarray(ex, dtype=np.int64)))
                    scores[q, drop] = float("-inf")
            scores, order = torch.sort(scores, dim=1, descending=True, stable=True)
            pos = torch.gather(pos, 1, order)
            pos[torch.isinf(scores)] = -1
        k = min(k, len(self))
        return scores[:, :k], pos[:, :k]

    def _torch_search(self, queries: torch.Tensor, k: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
        best_s = torch.full((len(queries), 0), float("-inf"))
        best_p = torch.zeros((len(queries), 0), dtype=torch.int64)
        with torch.inference_mode():
            for lo in range(0, len(self), block):
                s = queries @ self.vectors[lo : lo + block].T
                s, p = torch.topk(s, min(k, s.shape[1]), dim=1)
                best_s, order = torch.topk(torch.cat([best_s, s], 1), min(k, best_s.shape[1] + s.shape[1]), dim=1)
                best_p = torch.gather(torch.cat([best_p, p + lo], 1), 1, order)
        return best_s.clone(), best_p.clone()

    def faiss_index(self):
        """A FAISS ``IndexFlatIP`` over the vectors (built once)."""
        if self._faiss is None:
            if not faiss_available():
                raise ParamError("backend 'faiss' needs the faiss-cpu package (pip install 'tinynewsrec[deploy]'); "
                                 "or use the default backend 'torch'")
            import faiss

            self._faiss = faiss.IndexFlatIP(self.dim)
            self._faiss.add(np.ascontiguousarray(self.vectors.numpy(), dtype=np.float32))
        return self._faiss

    def _faiss_search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        scores, pos = self.faiss_index().search(np.ascontiguousarray(queries.numpy(), dtype=np.float32), k)
        return torch.from_numpy(scores), torch.from_numpy(pos.astype(np.int64))
