"""One interface for every trained recommender: encode news, encode a user, score candidates,
save and load.

Every model this project trains (teacher, student, pruned student, sequential recommender,
re-ranker) is a folder with a ``config.json`` whose ``model`` field names its kind. Its class
subclasses :class:`Recommender` and is listed in :data:`KINDS` (kind -> ``module:Class``, imported
only when a folder of that kind is loaded). ``evaluate``, efficiency, export and every later
branch load models with :func:`load_recommender` and use only this interface:

- ``encode_news(news) -> [N, D]``: news vectors of a token batch (``{"input_ids",
  "attention_mask"}``) or of cached frozen-layer states (``{"hidden_states", "attention_mask",
  "start_layer"}``), whatever the model's ``news_encoder`` reads;
- ``encode_user(history, mask) -> [B, D]``: a user vector from the vectors of the user's clicked
  news ``[B, L, D]`` (``mask`` [B, L], True = a click; an all-False row is a cold user);
- ``score(users, candidates) -> [B, C]``: click scores of candidate vectors ``[B, C, D]``;
- ``save_pretrained(folder, **extra)`` / ``from_pretrained(folder)``.

``news_encoder`` and ``user_encoder`` are the modules behind the first two (efficiency times
them separately: a deployed system encodes news offline and users per request).
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from .errors import DataError

#: model kind (config.json ``model``) -> ``module:Class`` of its Recommender subclass
KINDS: dict[str, str] = {
    "plmnr": "tinynewsrec.models.plmnr:PLMNR",
}


class Recommender(nn.Module):
    """Base class of every recommender folder kind (module docstring)."""

    #: the ``model`` field of its config.json
    kind: ClassVar[str] = ""
    news_encoder: nn.Module
    user_encoder: nn.Module

    @property
    def news_dim(self) -> int:  # pragma: no cover - abstract
        """Width of a news (and user) vector."""
        raise NotImplementedError

    def encode_news(self, news: dict) -> torch.Tensor:
        return self.news_encoder(news)

    def encode_user(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.user_encoder(history, mask)

    def score(self, users: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Dot-product click scores ``<u_b, c_bj>`` [B, C]."""
        return torch.einsum("bd,bcd->bc", users, candidates)

    def save_pretrained(self, folder: str | os.PathLike, **extra: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, **kwargs: Any) -> "Recommender":  # pragma: no cover
        raise NotImplementedError


def read_config(folder: str | os.PathLike) -> dict:
    """A model folder's config.json, or a one-line :class:`DataError` naming the folder."""
    config = Path(folder) / "config.json"
    try:
        meta = json.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{folder} is not a model folder (no config.json); run the stage that writes it") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{config}: not readable ({e}); rerun the stage that wrote {folder}") from None
    if not isinstance(meta, dict) or "model" not in meta:
        raise DataError(f"{config}: has no 'model' field saying what kind of model the folder holds")
    return meta


def recommender_class(kind: str) -> type[Recommender]:
    """The class registered for ``kind`` (config.json ``model``)."""
    if kind not in KINDS:
        raise DataError(f"model kind {kind!r} is not a recommender this version can load "
                        f"(known kinds: {', '.join(sorted(KINDS))})")
    module, name = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def load_recommender(folder: str | os.PathLike, **kwargs: Any) -> Recommender:
    """Load any model folder this project writes, by its config.json ``model`` field, in eval mode."""
    kind = read_config(folder)["model"]
    return recommender_class(kind).from_pretrained(folder, **kwargs).eval()
