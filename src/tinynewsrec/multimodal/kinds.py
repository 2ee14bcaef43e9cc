"""The model kinds of the multimodal branch, loaded by their config.json ``model`` field.

Both kinds subclass :class:`tinynewsrec.models.base.Recommender` (encode news, encode a user,
score candidates, save / load) and are scored by the same :func:`tinynewsrec.evaluate.score_impressions`
as every other row. They are registered here, not in :data:`tinynewsrec.recommender.KINDS`:
their folders live under models_mm/, which the main pipeline's stages (evaluate, the sequential
branch, the deploy commands: all load any folder through ``KINDS``) never read, so this branch's
code is no dependency of theirs and editing it reruns only this branch (tests/test_dvc_deps.py
counts every ``KINDS`` entry as an import of each stage that loads models).
"""

from __future__ import annotations

import os

from ..errors import DataError
from ..models.base import Recommender, read_config
from .reranker import Reranker
from .two_tower import MultimodalNR

MM_KINDS: dict[str, type[Recommender]] = {"multimodal_nr": MultimodalNR, "reranker": Reranker}


def load_model(folder: str | os.PathLike) -> Recommender:
    """A models_mm/ folder's model, in eval mode; a one-line DataError for another kind."""
    kind = read_config(folder)["model"]
    if kind not in MM_KINDS:
        raise DataError(f"{folder}: model kind {kind!r} is not one of the multimodal branch's "
                        f"({', '.join(MM_KINDS)}); rerun `dvc repro train_multimodal`")
    return MM_KINDS[kind].from_pretrained(folder).eval()
