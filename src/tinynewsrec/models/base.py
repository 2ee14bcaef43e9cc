"""The base class of every recommender kind (the interface: :mod:`tinynewsrec.recommender`).

Apart from the registry of kinds so that a model's module (``models/plmnr.py``, ``seqrec/sasrec.py``)
imports only this: code that trains one kind of model then does not depend on the others' code
(the kinds registry, :data:`tinynewsrec.recommender.KINDS`, is for code that loads any folder).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import DataError


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
