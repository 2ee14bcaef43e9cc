"""Typed, validated params of the multimodal branch: ``images``, ``image``, ``multimodal``,
``reranker`` and ``recall`` (params.yaml), read at a stage's start by :func:`load_multimodal_params`.

:func:`tinynewsrec.params.load_params` accepts these sections without validating them
(``BRANCH_SECTIONS``), so that this branch's code is a dependency only of its own stages; the same
rules hold here (a typo, a wrong type or an out-of-range value fails at once with a one-line
ParamError naming the key), through the same :func:`~tinynewsrec.params.section_from_dict`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import ParamError
from ..params import _check, above, at_least, between, choice, load_params, section_from_dict, seed_field

#: how a news' text vector and image vector are combined (:mod:`tinynewsrec.multimodal.fusion`)
FUSIONS = ("none", "hadamard", "add", "concat", "gated")
#: what a row's news encoder sees
MODALITIES = ("text", "image", "text_image")
#: the two kinds of multimodal recommender trained on the same vectors
MM_MODELS = ("two_tower", "reranker")
#: the default image encoder: colour and layout statistics of the card, no learned weights
CARD_FEATURES = "card-features"


@dataclass(frozen=True)
class ImagesParams:
    """``images``: where the news cards come from."""

    #: folder of news cards named ``<news_id>.png`` (or .jpg / .jpeg / .webp), as IM-MIND ships them;
    #: ``data/cards`` is what the render_cards stage draws for the synthetic source. A DVC dependency.
    path: str = "data/cards"
    #: synthetic cards: share of news drawn with a cover picture (the rest get a text-only card)
    cover_share: float = between(0.0, 1.0, 0.7)
    width: int = between(32, 4096, 610)
    height: int = between(32, 4096, 195)

    def validate(self) -> None:
        _check(self.path.strip() != "", "images.path", "a folder path", self.path)


@dataclass(frozen=True)
class ImageParams:
    """``image``: the image encoder of the encode_images stage."""

    #: ``card-features`` (colour and layout statistics, no weights to download), or a local path /
    #: hub id of any Hugging Face vision model (DINOv2, ViT, CLIP's vision tower)
    encoder: str = CARD_FEATURES
    batch: int = at_least(1, 64)

    def validate(self) -> None:
        _check(self.encoder.strip() != "", "image.encoder", f"{CARD_FEATURES} or a model path / hub id", self.encoder)


@dataclass(frozen=True)
class MultimodalParams:
    """``multimodal``: the multimodal news encoder and how its rows are trained."""

    #: the model whose news encoder gives the (frozen, cached) text vectors
    text_model: str = "models/student"
    #: how text_image rows combine the text and image vectors (``none`` = text only)
    fusion: str = choice(*FUSIONS, default="hadamard")
    #: width of a fused news vector
    dim: int = at_least(8, 64)
    #: the DVC matrix of train_multimodal: model x modality
    #: (the default trains the two-tower rows; the re-ranker's three cost ~10 min on a 2-core CPU)
    models: list[str] = field(default_factory=lambda: ["two_tower"])
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    #: clicked news a sample keeps (the most recent)
    history_len: int = between(1, 1000, 30)
    epochs: int = at_least(1, 3)
    batch_size: int = at_least(1, 64)
    lr: float = above(0.0, 0.001)
    #: stop an epoch after this many steps (null = all samples)
    max_steps_per_epoch: int | None = at_least(1, None)
    seed: int = seed_field()

    def validate(self) -> None:
        for key, values, known in (("models", self.models, MM_MODELS), ("modalities", self.modalities, MODALITIES)):
            _check(len(values) >= 1 and all(v in known for v in values) and len(set(values)) == len(values),
                   f"multimodal.{key}", "a list of distinct names out of " + ", ".join(known), values)
        _check(self.text_model.strip() != "", "multimodal.text_model", "a model folder", self.text_model)


@dataclass(frozen=True)
class RerankerParams:
    """``reranker``: the Transformer over [history; candidate] (DL_News_Rec's re-ranker)."""

    layers: int = at_least(1, 2)
    heads: int = at_least(1, 4)
    ffn: int = at_least(1, 256)
    dropout: float = between(0.0, 0.9, 0.1)
    #: pointwise: click / no-click CE per (history, candidate), as the original; listwise: softmax CE
    #: over the 1 + K candidates of a sample, each scored with the history alone
    objective: str = choice("pointwise", "listwise", default="pointwise")


@dataclass(frozen=True)
class RecallParams:
    """``recall``: top-k news out of the split's whole pool for each dev impression."""

    #: what can be recalled: ``candidates`` = every news shown in a dev impression (the split's
    #: recommendable, fresh news), ``all`` = every news of the split's news.parquet (old history news too)
    pool: str = choice("candidates", "all", default="candidates")
    #: mean: the mean of the history's text vectors (cosine); student: the text model's user encoder
    user: str = choice("mean", "student", default="mean")
    ks: list[int] = field(default_factory=lambda: [50, 100, 200])
    #: the recall -> re-rank pipeline re-ranks this many recalled news (one of ks)
    rerank_k: int = at_least(1, 100)
    #: exact: batched matrix products and top-k (torch); faiss: an exact inner-product FAISS index
    backend: str = choice("exact", "faiss", default="exact")
    batch: int = at_least(1, 1024)
    #: leave the user's own history out of the recalled news
    mask_history: bool = True

    def validate(self) -> None:
        _check(len(self.ks) >= 1 and all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in self.ks),
               "recall.ks", "a list of cut-offs >= 1", self.ks)
        _check(self.rerank_k in self.ks, "recall.rerank_k", f"one of recall.ks {self.ks}", self.rerank_k)


SECTIONS: dict[str, type] = {
    "images": ImagesParams,
    "image": ImageParams,
    "multimodal": MultimodalParams,
    "reranker": RerankerParams,
    "recall": RecallParams,
}


@dataclass(frozen=True)
class MultimodalBranchParams:
    images: ImagesParams
    image: ImageParams
    multimodal: MultimodalParams
    reranker: RerankerParams
    recall: RecallParams


def load_multimodal_params(path: str | os.PathLike = "params.yaml") -> MultimodalBranchParams:
    """The branch's sections of ``path``, validated (the rest of the file is validated by
    :func:`tinynewsrec.params.load_params`, which a stage calls first)."""
    path = Path(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ParamError(f"{path}: must be a mapping of sections")
    out = MultimodalBranchParams(**{name: section_from_dict(name, cls, raw.get(name)) for name, cls in SECTIONS.items()})
    if out.reranker.heads and out.multimodal.dim % out.reranker.heads:
        raise ParamError(f"params.yaml: reranker.heads must divide multimodal.dim ({out.multimodal.dim}), "
                         f"got {out.reranker.heads!r}")
    return out


def load_all(path: str | os.PathLike = "params.yaml"):
    """``(load_params(path), load_multimodal_params(path))``: every stage of the branch validates both."""
    return load_params(path), load_multimodal_params(path)
