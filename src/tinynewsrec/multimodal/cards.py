"""Synthetic news cards, shaped like IM-MIND's, and the measured headroom of what they show.

IM-MIND (Xun et al., ACM MM 2021) gives MIND a 610 x 195 "news card" per news id: the news' cover
picture with its title and source where it has one, else a white card with the title and source
drawn on it. The synthetic source has no pictures, so :func:`render_cards` draws cards of the same
shape from the generator's hidden world (:func:`tinynewsrec.data.synthetic.latent_world`):

- **Which news have a cover picture**: a seeded draw per news, share ``images.cover_share``
  (default 0.7), over the generator's news order with ``SeedSequence([data.seed, CARD_SALT])``: the
  same seed draws the same cards, whichever news a split happens to write.
- **A cover card**: a picture on the left (``4/3 x height`` wide, 260 px at 195), the title (wrapped)
  and a source line on the right. The picture is a generated scene: a background gradient and 2-6
  ellipses, boxes and triangles.
- **What the picture encodes** (the design decision): its *vividness*, colour saturation
  ``0.1 + 0.85 q`` and value contrast ``0.1 + 0.6 q``, with ``q = Phi(noise / APPEAL_NOISE)``, where
  ``noise`` is the news' text-invisible appeal (:func:`~tinynewsrec.data.synthetic.hidden_appeal`):
  the news-specific part of the appeal that already drives clicks in the generator and that no text
  reveals. Its hue is the category's (a fixed palette of the 15 categories; the title gives the
  category too, so the hue adds nothing). The shapes' number, kind, places, sizes and hue offsets
  are random: noise a model must see through. So a model that sees the picture can learn something
  the title does not give, and nothing about the clicks changes (the download stage's outputs are
  untouched; the cards are drawn after the fact from the same hidden world).
- **A text-only card**: white, the title in black (wrapped), the source line in grey.
- The source line is a made-up publisher (a seeded draw, unrelated to clicks) and the category.

:func:`headroom` measures what the picture can add on the dev impressions: the generator's oracle
AUC ranking each impression by the true click utility, by the utility less the visual part
(``noise`` where the news has a cover picture, 0 where not), and by the utility less the whole
text-invisible part. (Within an impression the true click probabilities are ``sigmoid(utility + b)``,
the same order as the utility.)

Rendering is Pillow only (FreeType through ``ImageFont.load_default(size=...)``). A card is drawn
straight into palette indices: the gradient is one of four precomputed ramps of 96 levels whose
colours are the card's palette, the shapes a few draw calls, the text one anti-aliased layer mapped to
ink and grey levels; it is saved as a palette PNG (no quantizer; about 4-6 KB a card, 15 KB in RGB)
in about 4 ms of CPU. Word widths are cached for the wrap. Cards are independent, so forked workers
draw the same bytes.
"""

from __future__ import annotations

import colorsys
import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from ..data.synthetic import APPEAL_NOISE, LatentWorld, hidden_appeal, utility
from ..errors import DataError

#: the salt of the cards' random stream (SeedSequence([seed, CARD_SALT])), apart from the generator's
CARD_SALT = 0x5CA4D
#: one sentence on what a card's picture encodes (metrics/cards.json, the image table's notes)
ENCODES = ("a cover picture's colour saturation and contrast encode the news' text-invisible appeal "
           "(q = Phi(noise / APPEAL_NOISE)); its hue is the category's; the shapes are random noise; "
           "a text-only card has no picture")
#: made-up publishers for the source line (a seeded draw, unrelated to clicks)
PUBLISHERS = ("The Daily Ledger", "Metro Wire", "Northside Post", "Harbor Times", "Valley Courier",
              "Summit Herald", "Coastal Review", "Prairie Gazette", "City Beat", "Evening Dispatch",
              "Lakeside Journal", "Pioneer Press")
#: MIND's category names as a card prints them
CATEGORY_DISPLAY = {"news": "News", "sports": "Sports", "finance": "Money", "lifestyle": "Lifestyle",
                    "health": "Health", "foodanddrink": "Food & Drink", "travel": "Travel", "autos": "Autos",
                    "weather": "Weather", "entertainment": "Entertainment", "music": "Music",
                    "movies": "Movies", "tv": "TV", "video": "Video", "science": "Science"}
MAX_SHAPES = 6
_SHAPE_DRAWS = 7  # kind, x, y, size, aspect, hue offset, light-or-dark
_SCENE_DRAWS = 3 + MAX_SHAPES * _SHAPE_DRAWS  # gradient direction, hue jitter, shape count, shapes
_HUE_OFFSETS = (0.0, 0.0, 0.06, -0.06, 0.5)  # the shapes' hue: mostly the category's, sometimes its complement


def category_hue(index: np.ndarray | int) -> np.ndarray:
    """The palette: category ``i`` (the generator's order of :data:`~tinynewsrec.data.vocabulary.CATEGORIES`)
    gets hue ``i * 0.618... mod 1`` (golden-ratio steps keep neighbours apart)."""
    return (np.asarray(index, np.float64) * 0.6180339887498949) % 1.0


def vividness(noise: np.ndarray) -> np.ndarray:
    """``q = Phi(noise / APPEAL_NOISE)`` in (0, 1): the text-invisible appeal as a uniform quantile."""
    z = np.asarray(noise, np.float64) / (APPEAL_NOISE * math.sqrt(2.0))
    return 0.5 * (1.0 + np.vectorize(math.erf, otypes=[np.float64])(z))


@dataclass(frozen=True)
class CardPlan:
    """Everything random about the cards, per news in the generator's order."""

    cover: np.ndarray      # bool [N]: the news has a cover picture
    noise: np.ndarray      # float64 [N]: the text-invisible appeal
    q: np.ndarray          # float64 [N]: vividness(noise)
    hue: np.ndarray        # float64 [N]: the category's hue
    category: np.ndarray   # int [N]
    publisher: np.ndarray  # int [N], into PUBLISHERS
    scene: np.ndarray      # float64 [N, _SCENE_DRAWS]: uniform draws for the picture

    @property
    def visual(self) -> np.ndarray:
        """The part of the utility a card shows: the noise where there is a cover picture, else 0."""
        return np.where(self.cover, self.noise, 0.0)


def plan_cards(latent: LatentWorld, cover_share: float, seed: int) -> CardPlan:
    """Draw the cards' randomness for every news of ``latent`` (cover first, so that raising
    ``cover_share`` only adds covers)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, CARD_SALT]))
    n = len(latent.news.number)
    cover = rng.random(n) < cover_share
    publisher = rng.integers(0, len(PUBLISHERS), n)
    scene = rng.random((n, _SCENE_DRAWS))
    noise = hidden_appeal(latent)
    cat = latent.news.cat.astype(np.int64)
    return CardPlan(cover, noise, vividness(noise), category_hue(cat), cat, publisher, scene)


def news_positions(latent: LatentWorld, news_ids: pa.Array | list[str]) -> np.ndarray:
    """The generator index of each ``N<number>`` id (vectorised); a DataError when one is not in the
    world (data/mind was made with another size or seed: it is stale)."""
    return _positions(latent.news.number, news_ids, "N", "news")


def user_positions(latent: LatentWorld, user_ids: pa.Array | list[str]) -> np.ndarray:
    """The generator index of each ``U<number>`` user id (vectorised), as :func:`news_positions`."""
    return _positions(latent.users.number, user_ids, "U", "user")


def _positions(numbers: np.ndarray, ids, prefix: str, what: str) -> np.ndarray:
    ids = pa.array(ids, pa.string()) if not isinstance(ids, (pa.Array, pa.ChunkedArray)) else ids
    if len(ids) == 0:
        return np.zeros(0, np.int64)
    ok = pc.all(pc.starts_with(ids, prefix)).as_py()
    digits = pc.utf8_slice_codeunits(ids, 1)
    try:
        wanted = pc.cast(digits, pa.int64()).to_numpy(zero_copy_only=False) if ok else None
    except pa.ArrowInvalid:
        wanted = None
    if wanted is None:
        raise DataError(f"{what} ids are not the synthetic generator's '{prefix}<number>' ids: data/mind does not "
                        f"come from data.source synthetic")
    order = np.argsort(numbers, kind="stable")
    pos = np.clip(np.searchsorted(numbers[order], wanted), 0, len(order) - 1)
    found = numbers[order][pos] == wanted
    if not found.all():
        first = ids[int(np.flatnonzero(~found)[0])].as_py()
        raise DataError(f"{int((~found).sum()):,} {what} ids (first {first}) are not in the synthetic world of this "
                        f"data.size / data.seed: data/mind is stale; rerun the download stage")
    return order[pos]


# ---- drawing -------------------------------------------------------------------------
# A card is drawn straight into palette indices (an 8-bit "L" image) and saved as a palette PNG: no
# quantizer, a small file, and the colours exactly those planned. The palette of one card:
_WHITE = 0
_GRADIENT = 1          # 1 .. _LEVELS: the background gradient, from its first colour to its second
_LEVELS = 96
_SHAPES = _GRADIENT + _LEVELS        # MAX_SHAPES entries: the shapes' colours
_INK = _SHAPES + MAX_SHAPES          # 64 entries: white -> ink (the title), by anti-aliasing coverage
_GREYS = _INK + 64                   # 32 entries: white -> grey (the source line)
_INK_RGB, _GREY_RGB = np.array([20, 20, 20], np.float64), np.array([110, 110, 110], np.float64)
_WHITE_RGB = np.array([255, 255, 255], np.float64)


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=4)
def _ramps(w: int, h: int) -> tuple[Image.Image, ...]:
    """Four gradients of palette indices _GRADIENT .. _GRADIENT + _LEVELS - 1 (left-right,
    top-bottom and the two diagonals), as "L" images (a card copies one and draws its shapes on it)."""
    x = np.linspace(0.0, 1.0, w)[None, :]
    y = np.linspace(0.0, 1.0, h)[:, None]
    ramps = [np.broadcast_to(x, (h, w)), np.broadcast_to(y, (h, w)), (x + y) / 2, (x + 1 - y) / 2]
    return tuple(Image.fromarray((_GRADIENT + np.rint(r * (_LEVELS - 1))).astype(np.uint8), "L") for r in ramps)


@functools.lru_cache(maxsize=4)
def _text_palette() -> np.ndarray:
    """Palette rows of white and of the two text colours' anti-aliasing levels."""
    pal = np.zeros((256, 3))
    pal[_WHITE] = _WHITE_RGB
    a = np.arange(1, 65)[:, None] / 64
    pal[_INK:_INK + 64] = _WHITE_RGB + a * (_INK_RGB - _WHITE_RGB)
    a = np.arange(1, 33)[:, None] / 32
    pal[_GREYS:_GREYS + 32] = _WHITE_RGB + a * (_GREY_RGB - _WHITE_RGB)
    return pal


@dataclass(frozen=True)
class Layout:
    """Where things go on a ``width x height`` card (IM-MIND: 610 x 195)."""

    width: int = 610
    height: int = 195

    @property
    def picture_width(self) -> int:
        return min(round(self.height * 4 / 3), self.width // 2)

    @property
    def margin(self) -> int:
        return max(4, round(0.07 * self.height))

    @property
    def title_size(self) -> int:
        return max(8, round(0.115 * self.height))

    @property
    def source_size(self) -> int:
        return max(7, round(0.075 * self.height))


def _rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return 255 * r, 255 * g, 255 * b


def draw_picture(hue: float, q: float, scene: np.ndarray, w: int, h: int, palette: np.ndarray) -> Image.Image:
    """The cover picture as palette indices (its colours written into ``palette`` [256, 3]): a
    gradient and a few shapes; hue = ``hue``, vividness = ``q`` (saturation ``0.1 + 0.85 q``, value
    contrast ``0.1 + 0.6 q`` between the gradient's ends and from the shapes to the gradient)."""
    sat = 0.1 + 0.85 * q
    span = 0.1 + 0.6 * q
    mid = 0.62
    hue = hue + 0.06 * (scene[1] - 0.5)
    first, second = np.array(_rgb(hue, sat, mid + span / 2)), np.array(_rgb(hue, sat, mid - span / 2))
    a = np.arange(_LEVELS)[:, None] / (_LEVELS - 1)
    palette[_GRADIENT:_GRADIENT + _LEVELS] = first + a * (second - first)
    picture = _ramps(w, h)[int(scene[0] * 4) % 4].copy()
    draw = ImageDraw.Draw(picture)
    for k in range(2 + int(scene[2] * (MAX_SHAPES - 1))):
        kind, x, y, size, aspect, off, light = scene[3 + k * _SHAPE_DRAWS: 3 + (k + 1) * _SHAPE_DRAWS]
        radius = (0.12 + 0.25 * size) * h
        rx, ry = radius * (0.6 + 0.8 * aspect), radius
        cx, cy = x * w, y * h
        palette[_SHAPES + k] = _rgb(hue + _HUE_OFFSETS[int(off * len(_HUE_OFFSETS)) % len(_HUE_OFFSETS)], sat,
                                    mid + (span / 2 + 0.1) * (1 if light < 0.5 else -1))
        box = (cx - rx, cy - ry, cx + rx, cy + ry)
        if kind < 0.4:
            draw.ellipse(box, fill=_SHAPES + k)
        elif kind < 0.75:
            draw.rectangle(box, fill=_SHAPES + k)
        else:
            draw.polygon([(cx, cy - ry), (cx + rx, cy + ry), (cx - rx, cy + ry)], fill=_SHAPES + k)
    return picture


@functools.lru_cache(maxsize=1 << 16)
def _length(size: int, text: str) -> float:
    return _font(size).getlength(text)


def wrap(text: str, size: int, width: float, max_lines: int) -> list[str]:
    """Greedy word wrap at font size ``size`` into lines no wider than ``width`` (a line's width is
    taken as its words' widths plus the spaces: words recur, so their widths are cached); the last
    line kept ends with an ellipsis when the text does not fit in ``max_lines``."""
    space = _length(size, " ")
    lines: list[str] = []
    line, used = [], 0.0
    for word in text.split():
        w = _length(size, word)
        if not line or used + space + w <= width:
            used += (space if line else 0.0) + w
            line.append(word)
            continue
        lines.append(" ".join(line))
        line, used = [word], w
        if len(lines) == max_lines:
            break
    else:
        if line:
            lines.append(" ".join(line))
        return lines
    last = lines[-1]
    while last and _length(size, last + "...") > width:
        last = last.rsplit(" ", 1)[0] if " " in last else last[:-1]
    lines[-1] = last + "..."
    return lines


@functools.lru_cache(maxsize=4)
def _coverage_luts(layout: Layout) -> tuple[np.ndarray, int]:
    """Index of each anti-aliasing coverage 1..255 in ink and in grey, and the first row of the source line."""
    c = np.arange(256)
    lut = np.stack([_INK + (c * 64 + 255) // 256 - 1, _GREYS + (c * 32 + 255) // 256 - 1]).astype(np.uint8)
    lut[:, 0] = _WHITE
    return lut, layout.height - layout.margin - round(1.3 * layout.source_size)


def draw_card(title: str, source: str, *, cover: bool, hue: float = 0.0, q: float = 0.5,
              scene: np.ndarray | None = None, layout: Layout = Layout()) -> Image.Image:
    """One news card (a palette image): with a cover picture (``hue``, ``q``, ``scene``) on the left,
    or text only; the title in black (wrapped), the source line in grey."""
    w, h, m = layout.width, layout.height, layout.margin
    palette = _text_palette().copy()
    x0 = m
    if cover:
        pw = layout.picture_width
        picture = draw_picture(hue, q, scene, pw, h, palette)
        x0 = pw + m
    # the text: anti-aliased coverage on a layer of its own, then mapped to the two text colours
    text = Image.new("L", (w - x0, h), 0)
    draw = ImageDraw.Draw(text)
    line_h = round(layout.title_size * 1.25)
    room = h - 2 * m - round(layout.source_size * 1.6)
    for i, line in enumerate(wrap(title, layout.title_size, w - x0 - m, max(1, room // line_h))):
        draw.text((0, m + i * line_h), line, fill=255, font=_font(layout.title_size))
    draw.text((0, h - m - layout.source_size), source, fill=255, font=_font(layout.source_size))
    lut, split = _coverage_luts(layout)
    cov = np.asarray(text)
    index = np.empty((h, w), np.uint8)
    index[:, :x0] = _WHITE
    if cover:
        index[:, :layout.picture_width] = np.asarray(picture)
    index[:split, x0:] = lut[0][cov[:split]]
    index[split:, x0:] = lut[1][cov[split:]]
    card = Image.frombytes("P", (w, h), index.tobytes())
    card.putpalette(np.rint(palette).astype(np.uint8).tobytes())
    return card


def source_line(plan: CardPlan, i: int, category: str) -> str:
    return f"{PUBLISHERS[int(plan.publisher[i])]} | {CATEGORY_DISPLAY.get(category, category.title())}"


def card_of(plan: CardPlan, i: int, title: str, category: str, layout: Layout = Layout()) -> Image.Image:
    """The card of generator news ``i``."""
    return draw_card(title, source_line(plan, i, category), cover=bool(plan.cover[i]), hue=float(plan.hue[i]),
                     q=float(plan.q[i]), scene=plan.scene[i], layout=layout)


def render_cards(news: pa.Table, latent: LatentWorld, plan: CardPlan, out_dir: str | os.PathLike, *,
                 layout: Layout = Layout(), workers: int = 1, progress: bool = True) -> dict:
    """Write ``<news_id>.png`` into ``out_dir`` for every row of ``news`` (news_id, title, category;
    a news id twice is drawn once). Returns the counts (cards, with cover, text-only).

    A card is drawn in palette indices and saved as a palette PNG (about 4-6 KB; 15 KB in RGB, and
    slower to write). Every card depends only on its own row of ``plan``, so ``workers`` > 1 forked
    processes write the same bytes."""
    global _JOB
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = news.column("news_id").combine_chunks()
    keep = pc.index_in(pc.unique(ids), value_set=ids)  # the first row of each id, in table order
    ids = ids.take(keep)
    titles = news.column("title").combine_chunks().take(keep).to_pylist()
    cats = news.column("category").combine_chunks().take(keep).to_pylist()
    pos = news_positions(latent, ids)
    names = ids.to_pylist()
    chunks = [range(start, min(start + 200, len(names))) for start in range(0, len(names), 200)]
    _JOB = (plan, layout, out_dir, names, titles, cats, pos)
    try:
        with tqdm(total=len(names), desc="drawing news cards", unit="card", disable=not progress) as bar:
            if workers > 1 and len(chunks) > 1:
                import multiprocessing

                with multiprocessing.get_context("fork").Pool(min(workers, len(chunks))) as pool:
                    for done in pool.imap_unordered(_draw_rows, chunks):
                        bar.update(done)
            else:
                for rows in chunks:
                    bar.update(_draw_rows(rows))
    finally:
        _JOB = None
    with_cover = int(plan.cover[pos].sum())
    return {"cards": len(names), "with_cover": with_cover, "text_only": len(names) - with_cover}


_JOB: tuple | None = None  # what render_cards' (forked) workers draw


def save_card(card: Image.Image, path: str | os.PathLike) -> None:
    """A card as a palette PNG (it is drawn in palette indices)."""
    card.save(path, format="PNG")


def _draw_rows(rows: range) -> int:
    plan, layout, out_dir, names, titles, cats, pos = _JOB
    for j in rows:
        save_card(card_of(plan, int(pos[j]), titles[j] or "", cats[j] or "", layout), out_dir / f"{names[j]}.png")
    return len(rows)


# ---- headroom ------------------------------------------------------------------------
def headroom(latent: LatentWorld, plan: CardPlan, behaviors: pa.Table, news: pa.Table) -> dict:
    """The generator's oracle AUC on the dev impressions (MIND AUC, :func:`tinynewsrec.metrics.evaluate_impressions`),
    ranking each impression's candidates by the true click utility (``oracle_auc``), by the utility less
    the visual part (``oracle_auc_without_visual``: what the picture shows), and by the utility less the
    whole text-invisible part (``oracle_auc_without_hidden``). ``behaviors``: user_id, candidates (news_index), labels;
    ``news``: news_id, news_index of (at least) every candidate."""
    from ..metrics import evaluate_impressions

    labelled = behaviors.filter(pc.invert(pc.is_null(behaviors.column("labels"))))
    cands = labelled.column("candidates").combine_chunks()
    offsets = cands.offsets.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]
    slots = cands.flatten().to_numpy().astype(np.int64)
    labels = labelled.column("labels").combine_chunks().flatten().to_numpy().astype(np.int64)
    index = news.column("news_index").to_numpy().astype(np.int64)
    gen = np.full(int(index.max()) + 1 if len(index) else 1, -1, np.int64)
    gen[index] = news_positions(latent, news.column("news_id").combine_chunks())
    cand = gen[np.minimum(slots, len(gen) - 1)]
    if len(slots) and (slots.max() >= len(gen) or (cand < 0).any()):
        raise DataError("a dev candidate has no row in the news table given to headroom")
    who = np.repeat(user_positions(latent, labelled.column("user_id").combine_chunks()), np.diff(offsets))
    full = utility(latent, who, cand)
    scores = {"oracle_auc": full, "oracle_auc_without_visual": full - plan.visual[cand],
              "oracle_auc_without_hidden": full - plan.noise[cand]}
    out = {name: round(float(evaluate_impressions(s, labels, offsets, progress=False)["auc"]), 4)
           for name, s in scores.items()}
    out["impressions"] = int(len(offsets) - 1)
    out["candidates_with_cover"] = round(float(plan.cover[cand].mean()), 4) if len(cand) else 0.0
    return out
