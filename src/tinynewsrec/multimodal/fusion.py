"""The multimodal news encoder: a news' text vector and image vector -> one news vector.

Input (a dict, what :meth:`MultimodalNewsEncoder.forward` reads)::

    text            float [N, text_dim]   frozen text vectors (data/mm/text.safetensors rows)
      or input_ids / attention_mask       a token batch, when the encoder has a ``text_encoder``
    image           float [N, image_dim]  frozen image vectors (data/image_emb/images.safetensors rows)
    image_present   bool  [N]             optional; False = the news has no picture

Each modality is projected to ``dim`` (Linear + LayerNorm). A news without a picture gets the
learned vector ``missing_image`` in place of its projected image vector (its table row is zeros,
which would otherwise project to the same arbitrary vector for every such news). What the encoder
returns depends on ``modality`` and ``fusion``:

- ``text``: t (``fusion`` is stored as ``none``); ``image``: i (likewise);
- ``text_image`` with ``hadamard``: t * i (DL_News_Rec's choice), ``add``: t + i,
  ``concat``: Linear([t; i]) -> dim, ``gated``: g * t + (1 - g) * i with g = sigmoid(W [t; i])
  (one gate per component), ``none``: t alone (the image vectors are read but unused: params.yaml's
  ``multimodal.fusion: none`` turns the text_image rows into text rows, a sanity check).

``missing_image`` starts at the fusion's neutral element: ones for ``hadamard`` (a news without a
picture starts as its text alone), zeros otherwise; it trains like every other weight.

``text_encoder``: any module mapping a token batch ``{"input_ids", "attention_mask"}`` (or a PLM-NR
frozen-layer cache batch ``{"hidden_states", "attention_mask", "start_layer"}``) to [N, text_dim],
e.g. the ``news_encoder`` of a PLM-NR teacher or student
(:class:`tinynewsrec.models.plmnr.NewsEncoder`). Given one, the text vector is computed from the
input's token fields, so the same fusion runs end to end inside a PLM-NR (the PLM trains as far as
its own ``requires_grad`` flags say). The default pipeline does not: it trains on the cached frozen
vectors, which costs a table lookup per news instead of a PLM forward pass.

:class:`MultimodalRecommender` is what the two kinds built on this encoder share (the two-tower
:mod:`~tinynewsrec.multimodal.two_tower` and the :mod:`~tinynewsrec.multimodal.reranker`): the
training forward over a unique-news batch and the model folder (config.json + model.safetensors).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ..errors import DataError
from ..io import read_safetensors
from ..models.base import Recommender, read_config
from .params import FUSIONS, MODALITIES

#: the fields of a news dict a ``text_encoder`` reads
TOKEN_FIELDS = ("input_ids", "attention_mask", "hidden_states", "start_layer")


@dataclass(frozen=True)
class NewsEncoderConfig:
    """What the multimodal news encoder sees and how it fuses (module docstring)."""

    modality: str = "text_image"  # text | image | text_image
    fusion: str = "hadamard"  # none | hadamard | add | concat | gated (text_image only)
    text_dim: int = 256  # width of a text vector (the text model's news_dim)
    image_dim: int = 64  # width of an image vector (the image encoder's)
    dim: int = 128  # width of the news vector

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {', '.join(MODALITIES)}, got {self.modality!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        if self.modality != "text_image":
            object.__setattr__(self, "fusion", "none")  # one modality: nothing to fuse
        for key in ("text_dim", "image_dim", "dim"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ValueError(f"{key} must be an integer >= 1, got {getattr(self, key)!r}")

    @property
    def uses_text(self) -> bool:
        return self.modality in ("text", "text_image")

    @property
    def uses_image(self) -> bool:
        return self.modality == "image" or (self.modality == "text_image" and self.fusion != "none")


def projection(width: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, dim), nn.LayerNorm(dim))


class MultimodalNewsEncoder(nn.Module):
    """Text and / or image vector -> news vector [N, dim] (module docstring)."""

    def __init__(self, config: NewsEncoderConfig, text_encoder: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.text_encoder = text_encoder
        self.text_proj = projection(config.text_dim, config.dim) if config.uses_text else None
        self.image_proj = projection(config.image_dim, config.dim) if config.uses_image else None
        self.missing_image = None
        if config.uses_image:
            init = torch.ones if config.fusion == "hadamard" else torch.zeros
            self.missing_image = nn.Parameter(init(config.dim))
        self.mix = None  # concat: Linear([t; i]); gated: the gate's W
        if config.fusion in ("concat", "gated"):
            self.mix = nn.Linear(2 * config.dim, config.dim)

    @property
    def dim(self) -> int:
        return self.config.dim

    def text(self, news: dict) -> torch.Tensor:
        """Projected text vectors [N, dim]."""
        if self.text_encoder is not None:
            x = self.text_encoder({k: news[k] for k in TOKEN_FIELDS if k in news})
        elif "text" in news:
            x = news["text"]
        else:
            raise KeyError("the news dict has no 'text' vectors (and this encoder has no text_encoder)")
        return self.text_proj(x.to(self.text_proj[0].weight.dtype))

    def image(self, news: dict) -> torch.Tensor:
        """Projected image vectors [N, dim], ``missing_image`` where ``image_present`` is False."""
        x = self.image_proj(news["image"].to(self.image_proj[0].weight.dtype))
        present = news.get("image_present")
        if present is None:
            return x
        return torch.where(present.bool().unsqueeze(-1), x, self.missing_image.to(x.dtype))

    def forward(self, news: dict) -> torch.Tensor:
        fusion = self.config.fusion
        if not self.config.uses_image:
            return self.text(news)
        if not self.config.uses_text:
            return self.image(news)
        t, i = self.text(news), self.image(news)
        if fusion == "hadamard":
            return t * i
        if fusion == "add":
            return t + i
        both = torch.cat([t, i], dim=-1)
        if fusion == "concat":
            return self.mix(both)
        g = torch.sigmoid(self.mix(both))  # gated
        return g * t + (1 - g) * i


# --- what both multimodal kinds share: the training forward and the model folder -------------


class MultimodalRecommender(Recommender):
    """Base of :class:`~tinynewsrec.multimodal.two_tower.MultimodalNR` and
    :class:`~tinynewsrec.multimodal.reranker.Reranker`: a :class:`MultimodalNewsEncoder` as
    ``news_encoder``, a dataclass ``config`` (whose ``news`` field is the encoder's
    :class:`NewsEncoderConfig`), the training forward over a unique-news batch, and one folder format.

    Training batch (what :func:`tinynewsrec.multimodal.train.collate` builds)::

        news            dict of the U distinct news' inputs (text / image / image_present)
        history         long [B, L]  indices into the U news (padding: any index, masked)
        history_mask    bool [B, L]  True = a clicked news
        candidates      long [B, C]  indices into the U news; column 0 = the click
    """

    #: the model's config dataclass (its ``news`` field: a :class:`NewsEncoderConfig`)
    config_class: ClassVar[type]

    @property
    def news_dim(self) -> int:
        return self.config.news.dim

    def forward(self, batch: dict) -> torch.Tensor:
        """Click logits [B, C] of a training batch (class docstring); each distinct news is encoded
        once. Calling the model (not its parts) keeps a DDP wrapper's hooks."""
        vecs = self.encode_news(batch["news"])
        users = self.encode_user(vecs[batch["history"]], batch["history_mask"])
        return self.score(users, vecs[batch["candidates"]])

    @classmethod
    def config_from_dict(cls, d: dict):
        return cls.config_class(**{**d, "news": NewsEncoderConfig(**d["news"])})

    def save_pretrained(self, folder, **extra) -> None:
        """``folder``/config.json (``{"model": kind, "config": asdict(config), "text_encoder": its class
        name or null, **extra}``) and ``folder``/model.safetensors (every weight, a text encoder's
        too). Use :func:`tinynewsrec.io.atomic_dir` around it."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        text_encoder = self.news_encoder.text_encoder
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))
        meta = {"model": self.kind, "config": asdict(self.config),
                "text_encoder": type(text_encoder).__name__ if text_encoder is not None else None, **extra}
        (folder / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def from_pretrained(cls, folder, text_encoder: nn.Module | None = None):
        """The model :meth:`save_pretrained` wrote (strict weights); a one-line DataError when the
        folder is another kind, a file is missing or corrupt, or it needs a ``text_encoder`` (the
        same module, e.g. a PLM-NR's news encoder, whose weights are then loaded too) not given."""
        folder = Path(folder)
        meta = read_config(folder)
        if meta["model"] != cls.kind:
            raise DataError(f"{folder}/config.json: model is {meta['model']!r}, expected {cls.kind!r}")
        if meta.get("text_encoder") and text_encoder is None:
            raise DataError(f"{folder}: its news encoder computes text vectors with a {meta['text_encoder']}; "
                            "pass that module as text_encoder= to load it")
        try:
            model = cls(cls.config_from_dict(meta["config"]), text_encoder=text_encoder)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{folder}/config.json: not a {cls.kind} config ({e}); "
                            "rerun the stage that wrote it") from None
        weights = read_safetensors(folder / "model.safetensors", stage="train_multimodal")
        try:
            model.load_state_dict(weights, strict=True)
        except RuntimeError as e:
            text = " ".join(str(e).split())
            raise DataError(f"{folder}/model.safetensors: does not fit its config.json ({text[:300]}); "
                            "rerun the stage that wrote it") from None
        return model
