"""Image vectors of the news cards: the encoder of the encode_images stage and the table it writes.

Two kinds of encoder (``image.encoder``):

- ``card-features`` (the default): fixed colour and layout statistics of a card, no learned weights
  and nothing to download, honest about what it is. A card is resized (Pillow, box filter) to a
  192 x 64 grid; then, in numpy over the batch: per cell of an 8 x 2 grid the mean R, G, B and the
  mean HSV saturation and value (80); a histogram of the pixels over 12 hues x 3 saturation levels
  for coloured pixels and 4 value levels for grey ones (40); and 8 globals: the share of dark "ink"
  pixels (text), of white pixels, the colourfulness (Hasler and Suesstrunk, 2003) of the whole card
  and of its left 40 % (where a synthetic card has its picture), the mean saturation and the value
  spread (contrast) of both. 128 numbers, deterministic. On the synthetic cards this is enough to
  read the vividness a picture encodes (:mod:`tinynewsrec.multimodal.cards`); on real pictures it is
  a weak baseline.
- any Hugging Face vision model, by local path or hub id, through ``AutoModel`` and
  ``AutoImageProcessor`` (its Pillow backend, ``backend="pil"``, what ``use_fast=False`` was: torchvision is
  not installed): the vector is the mean
  of the model's ``last_hidden_state`` over its tokens (as DL_News_Rec does for DINOv2; a
  convolutional model's [B, C, H, W] map is averaged over H x W); for CLIP (or any model with a
  ``vision_model`` tower) the vision tower alone. Eval mode, no gradients, batches of
  ``image.batch``, on the GPU when there is one.

:func:`image_table` looks up every news' card as ``<images.path>/<news_id>.png|.jpg|.jpeg|.webp``
(one listing of the folder); a news without a file is *missing* (present 0, a zero row), a file that
does not decode is *corrupt* (counted apart, with the first few ids in a warning; never a crash).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..errors import DataError, ParamError
from ..stage import one_line
from .params import CARD_FEATURES

log = logging.getLogger("tinynewsrec")

#: the file extensions a card may have, in the order they are preferred when a news has several
EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
GRID_W, GRID_H = 192, 64   # what card-features resizes every card to
CELLS_X, CELLS_Y = 8, 2
HUE_BINS, SAT_EDGES, GREY_EDGES = 12, (0.4, 0.7), (0.25, 0.5, 0.75)
CHROMATIC = 0.15           # saturation from which a pixel counts as coloured
LEFT = 0.4                 # the part of the card where a synthetic card has its picture


def _feature_names() -> list[str]:
    names = [f"cell{r}{c}_{k}" for r in range(CELLS_Y) for c in range(CELLS_X) for k in ("r", "g", "b", "sat", "val")]
    names += [f"hue{h}_sat{s}" for h in range(HUE_BINS) for s in range(len(SAT_EDGES) + 1)]
    names += [f"grey_val{v}" for v in range(len(GREY_EDGES) + 1)]
    names += ["ink_share", "white_share", "colourfulness", "left_colourfulness", "saturation", "value_spread",
              "left_saturation", "left_value_spread"]
    return names


#: what each of card-features' numbers is, in order
FEATURE_NAMES = _feature_names()


def _colourfulness(r: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hasler and Suesstrunk's colourfulness of each image (planes [B, H, W] in [0, 1]; about 0 to 1.2)."""
    n = len(r)
    rg = (r - g).reshape(n, -1)
    yb = (0.5 * (r + g) - b).reshape(n, -1)
    return np.hypot(rg.std(1), yb.std(1)) + 0.3 * np.hypot(rg.mean(1), yb.mean(1))


def card_features(images: list[Image.Image]) -> np.ndarray:
    """The 128 colour and layout statistics (:data:`FEATURE_NAMES`) of each image: float32 [B, 128]."""
    if not images:
        return np.zeros((0, len(FEATURE_NAMES)), np.float32)
    small = [im.convert("RGB").resize((GRID_W, GRID_H), Image.Resampling.BOX) for im in images]
    # [B, 6, H, W] (R, G, B, hue, saturation, value: Pillow's own HSV), channel planes contiguous
    planes = np.stack([np.concatenate([np.asarray(x), np.asarray(x.convert("HSV"))], -1) for x in small])
    planes = np.moveaxis(planes, -1, 1).astype(np.float32) / 255.0
    n = len(planes)
    r, g, b_, h, s, v = (planes[:, k] for k in range(6))
    per_pixel = np.concatenate([planes[:, :3], planes[:, 4:]], 1)  # [B, 5, H, W]: R, G, B, S, V
    cells = per_pixel.reshape(n, 5, CELLS_Y, GRID_H // CELLS_Y, CELLS_X, GRID_W // CELLS_X).mean((3, 5))
    cells = cells.transpose(0, 2, 3, 1)  # [B, row, column, (r, g, b, sat, val)]
    coloured = s >= CHROMATIC
    hue_bin = np.minimum((h * HUE_BINS).astype(np.int64), HUE_BINS - 1)
    n_sat = len(SAT_EDGES) + 1
    code = np.where(coloured, hue_bin * n_sat + np.digitize(s, SAT_EDGES),
                    HUE_BINS * n_sat + np.digitize(v, GREY_EDGES))
    n_bins = HUE_BINS * n_sat + len(GREY_EDGES) + 1
    hist = np.bincount((code + n_bins * np.arange(n)[:, None, None]).ravel(), minlength=n * n_bins)
    hist = hist.reshape(n, n_bins) / (GRID_W * GRID_H)
    left = slice(0, round(LEFT * GRID_W))
    flat = lambda a: a.reshape(n, -1)  # noqa: E731
    globals_ = np.stack([
        flat((v < 0.5) & (s < 0.25)).mean(1), flat((v > 0.92) & (s < 0.08)).mean(1),
        _colourfulness(r, g, b_), _colourfulness(r[..., left], g[..., left], b_[..., left]),
        flat(s).mean(1), flat(v).std(1), flat(s[..., left]).mean(1), flat(v[..., left]).std(1),
    ], 1)
    return np.concatenate([cells.reshape(n, -1), hist, globals_], 1).astype(np.float32)


@dataclass
class ImageEncoder:
    """An image encoder: ``encode(images) -> float32 [B, dim]``, and what it is in words."""

    name: str
    description: str
    dim: int
    encode: Callable[[list[Image.Image]], np.ndarray] = field(repr=False)


def load_image_encoder(name: str, device: str | torch.device | None = None) -> ImageEncoder:
    """``card-features`` or a Hugging Face vision model (local path or hub id); a model that cannot be
    loaded is a one-line ParamError naming ``image.encoder``."""
    if name == CARD_FEATURES:
        return ImageEncoder(
            CARD_FEATURES,
            f"{len(FEATURE_NAMES)} fixed colour and layout statistics of the card (per-cell mean RGB, saturation and "
            "value; a hue x saturation histogram; ink, white, colourfulness, contrast); no learned weights",
            len(FEATURE_NAMES), card_features)
    return _hf_encoder(name, device)


def _hf_encoder(name: str, device) -> ImageEncoder:
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, CLIPVisionModel

    try:
        config = AutoConfig.from_pretrained(name)
        processor = AutoImageProcessor.from_pretrained(name, backend="pil")  # = use_fast=False, not deprecated
        if config.model_type == "clip":
            model = CLIPVisionModel.from_pretrained(name)
        else:
            model = AutoModel.from_pretrained(name)
            if hasattr(model, "vision_model"):  # SigLIP, BLIP and the like: the vision tower
                model = model.vision_model
    except (OSError, ValueError, KeyError) as e:
        offline = " (offline: HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise ParamError(f"params.yaml: image.encoder must be {CARD_FEATURES} or a loadable Hugging Face vision model "
                         f"(a local folder or a hub id){offline}; {name!r} could not be loaded: "
                         f"{one_line(e)[:300]}") from None
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device).eval()
    dim = int(getattr(model.config, "hidden_size", 0) or getattr(model.config, "hidden_sizes", [0])[-1])

    @torch.inference_mode()
    def encode(images: list[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, dim), np.float32)
        pixels = processor(images=[im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"]
        hidden = model(pixel_values=pixels.to(device)).last_hidden_state
        pooled = hidden.mean((2, 3)) if hidden.ndim == 4 else hidden.mean(1)
        return pooled.float().cpu().numpy()

    return ImageEncoder(name, f"the mean of {name}'s last hidden states over its tokens ({config.model_type}, "
                              f"{dim} wide)", dim, encode)


# ---- the table -----------------------------------------------------------------------
def find_cards(folder: str | os.PathLike) -> dict[str, Path]:
    """``news_id -> file`` for every ``<news_id>.<ext>`` of :data:`EXTENSIONS` in ``folder`` (one
    listing; a news with several files gets the first extension of :data:`EXTENSIONS`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ParamError(f"params.yaml: images.path must be a folder of news cards (<news_id>.png|jpg|jpeg|webp; "
                         f"data/cards is what render_cards draws), {str(folder)!r} is not one")
    rank = {ext: i for i, ext in enumerate(EXTENSIONS)}
    best: dict[str, tuple[int, Path]] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, ext = os.path.splitext(entry.name)
            r = rank.get(ext.lower())
            if r is not None and (stem not in best or r < best[stem][0]) and entry.is_file():
                best[stem] = (r, Path(entry.path))
    return {stem: path for stem, (_, path) in best.items()}


def _open(path: Path) -> Image.Image | None:
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except Exception:  # noqa: BLE001 - a decoder may raise anything on a broken file; it is counted
        return None


def image_table(folder: str | os.PathLike, news_ids: list[str], news_index: np.ndarray, n_slots: int,
                encoder: ImageEncoder, *, batch: int = 64, progress: bool = True
                ) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(vectors float32 [n_slots, dim], present uint8 [n_slots], counts)`` for the news
    ``news_ids`` at rows ``news_index``, from the cards in ``folder``."""
    files = find_cards(folder)
    vectors = np.zeros((n_slots, encoder.dim), np.float32)
    present = np.zeros(n_slots, np.uint8)
    todo = [(nid, int(row)) for nid, row in zip(news_ids, news_index) if nid in files]
    missing = len(news_ids) - len(todo)
    corrupt: list[str] = []
    log.info("encoding %s of %s news cards from %s with %s (%s without a picture)", f"{len(todo):,}",
             f"{len(news_ids):,}", folder, encoder.name, f"{missing:,}")
    bar = tqdm(total=len(todo), desc=f"encoding cards ({encoder.name})", unit="card", disable=not progress)
    for start in range(0, len(todo), batch):
        chunk = todo[start:start + batch]
        images, rows = [], []
        for nid, row in chunk:
            im = _open(files[nid])
            if im is None:
                corrupt.append(nid)
            else:
                images.append(im)
                rows.append(row)
        if images:
            out = np.asarray(encoder.encode(images), np.float32)
            if out.shape != (len(images), encoder.dim):
                raise DataError(f"image encoder {encoder.name} gave vectors of shape {out.shape}, "
                                f"expected ({len(images)}, {encoder.dim})")
            vectors[rows] = out
            present[rows] = 1
        bar.update(len(chunk))
    bar.close()
    if corrupt:
        log.warning("warning: %s news cards could not be read and count as without a picture (first: %s)",
                    f"{len(corrupt):,}", ", ".join(corrupt[:5]))
    counts = {"news": len(news_ids), "with_picture": int(present.sum()), "missing": missing,
              "corrupt": len(corrupt), "corrupt_examples": corrupt[:5]}
    return vectors, present, counts
