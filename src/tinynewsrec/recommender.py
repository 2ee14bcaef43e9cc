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
import os
from typing import Any

from .errors import DataError
from .models.base import Recommender, read_config

#: model kind (config.json ``model``) -> ``module:Class`` of its Recommender subclass
KINDS: dict[str, str] = {
    "plmnr": "tinynewsrec.models.plmnr:PLMNR",
    "pruned_plmnr": "tinynewsrec.models.pruned:PrunedPLMNR",
    "sasrec": "tinynewsrec.seqrec.sasrec:SASRec",
    "bert4rec": "tinynewsrec.seqrec.bert4rec:BERT4Rec",
}

__all__ = ["KINDS", "Recommender", "load_recommender", "read_config", "recommender_class"]


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
