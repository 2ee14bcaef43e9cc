"""The synthetic MIND generator: the pipeline's embedded default data source.

It writes the four MIND TSV files (``train/news.tsv``, ``train/behaviors.tsv``,
``dev/news.tsv``, ``dev/behaviors.tsv``, no header, exactly MIND's columns), so the
synthetic source goes through the same parser as real MIND, plus its own truth,
``dev/oracle.parquet``, for measuring headroom (the MIND parser ignores that file).

The simulated world, in MIND's terms (Wu et al., ACL 2020):

* **News** of 15 categories and 60 subcategories (:mod:`.vocabulary`) are published
  uniformly over a 21-day history period (Oct 19 - Nov 8, 2019, MIND's "first weeks")
  and the 7 logged days (Nov 9-15). A title is a template of its category filled with
  the subcategory's topic nouns and named entities (people, teams, companies, shows,
  places) that also appear in MIND's entity JSON; the abstract is one or two sentences
  about the same entities and topics; 4.5% of abstracts are empty, as in MIND.
  Each news has a hidden *appeal*: its category's base rate, its template's
  catchiness (both readable from the text) and a news-specific part no text reveals.
* **Users** have 1-5 latent interests: subcategories with weights, often a favourite
  entity inside one (a team, a person, a company), and most have a home city.
* **History** (as in MIND, one fixed list per user, oldest first, the same in train and
  dev): clicks during the history period, drawn from the user's interests (subcategory,
  favourite entity, home city) and, 12% of the time, from anything popular.
  3.5% of users are cold (empty history).
* **Impressions**: a user (drawn by activity) at a time on day 1-6 (train) or day 7
  (dev) is shown 2 or more candidates published in the last 3-48 hours, partly chosen
  for the user (the production recommender's targeting) and partly popular news.
  Because candidates are that fresh, most dev candidates are news never seen in train.
* **Clicks**: utility = category interest + subcategory interest + favourite entity
  + home city + appeal; each candidate is clicked independently with probability
  ``sigmoid(utility + b)``, ``b`` set per impression so the expected number of clicks
  is the impression's engagement (about one); impressions are redrawn until they have
  at least one click and one non-click (MIND logs only such impressions), so the true
  click probability written to ``oracle.parquet`` is the exact conditional one.
  The calibration gives an oracle AUC near 0.8 and a popularity ranker near 0.55
  (``benchmarks/synthetic_headroom.py``).

Decisions where MIND or the design is silent: news ids ``N<number>`` and user ids
``U<number>`` are random distinct numbers; WikidataIds are made-up ``Q`` numbers derived
from the label; URLs point at example.com; behaviors are in time order with impression
ids ``1..n`` per split; each split's news.tsv holds exactly the news its behaviors
reference (history and candidates), in publication order.
"""

from __future__ import annotations

import json
import logging
import string
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from ..errors import ParamError
from ..io import atomic_path, write_parquet
from . import vocabulary as V

log = logging.getLogger("tinynewsrec")


@dataclass(frozen=True)
class SyntheticSize:
    """How big a synthetic MIND is."""

    news: int
    users: int
    train_impressions: int
    dev_impressions: int
    #: mean number of candidates per impression (MIND-large: about 37)
    candidates: float
    #: mean history length of a non-cold user (MIND: about 33)
    history: float
    #: named people and organisations per subcategory (the finer interests); a subcategory
    #: whose naming recipe allows fewer organisations gets all it allows
    people_per_subcategory: int
    orgs_per_subcategory: int
    #: impressions generated and written at a time (bounds memory)
    chunk_impressions: int = 50_000

    def __post_init__(self) -> None:
        for name, lo in (("news", 100), ("users", 1), ("train_impressions", 1), ("dev_impressions", 1),
                         ("candidates", 2), ("history", 1), ("people_per_subcategory", 2),
                         ("orgs_per_subcategory", 2), ("chunk_impressions", 1)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < lo:
                raise ParamError(f"synthetic size: {name} must be a number >= {lo}, got {value!r}")


SIZES: dict[str, SyntheticSize] = {
    "tiny": SyntheticSize(
        news=400, users=150, train_impressions=600, dev_impressions=200, candidates=8,
        history=10, people_per_subcategory=6, orgs_per_subcategory=4,
    ),
    "demo": SyntheticSize(
        news=5_000, users=2_000, train_impressions=8_000, dev_impressions=2_000, candidates=20,
        history=20, people_per_subcategory=24, orgs_per_subcategory=10,
    ),
    "large": SyntheticSize(
        news=160_000, users=750_000, train_impressions=2_200_000, dev_impressions=376_000,
        candidates=37, history=30, people_per_subcategory=150, orgs_per_subcategory=40,
    ),
}

# ---- the world's constants (one place, named) ----------------------------------------
DAY = 86_400
HISTORY_DAYS = 21            # history period before the logged week
TRAIN_DAYS = (0, 6)          # Nov 9-14 (days 0..5 of the log)
DEV_DAYS = (6, 7)            # Nov 15
LOG_START = (2019, 11, 9)    # day 0
PRE_PERIOD_SHARE = 0.5       # share of news published in the history period
GENERIC_TEMPLATE_SHARE = 0.2
EMPTY_ABSTRACT_SHARE = 0.045
TITLE_CASE_SHARE = 0.6
COLD_USER_SHARE = 0.035
HOME_CITY_SHARE = 0.8
FAVOURITE_SHARE = 0.6        # chance an interest has a favourite entity
ZIPF = 0.9                   # entity popularity within a pool ~ 1 / rank^ZIPF
APPEAL_NOISE = 0.6           # std of the news-specific (text-invisible) appeal
TEMPLATE_APPEAL = 0.35       # std of template catchiness
# click utility weights
W_CATEGORY, W_SUBCATEGORY, W_ENTITY, W_HOME = 1.0, 2.0, 1.2, 0.8
ENGAGEMENT = (1.0, 0.5)      # expected clicks before conditioning: lognormal mean, sigma
# candidate exposure: window of freshness, targeting shares, popularity tilt
WINDOW_HOURS = (3.0, 48.0)
TARGET_ENTITY, TARGET_SUBCATEGORY = 0.08, 0.27
EXPOSURE_TILT = 0.5
HISTORY_EXPLORE, HISTORY_ENTITY, HISTORY_HOME = 0.12, 0.25, 0.05
MAX_REDRAWS = 200

_ENTITY_FIELDS = ("P", "P2", "O", "O2", "G")
_SMALL_WORDS = frozenset(
    "a an and as at but by for from in into of on or over the to vs. with after".split()
)


# ---- world: subcategories, templates, named entities ---------------------------------
@dataclass
class _World:
    cat_names: list[str]
    sub_names: list[str]
    sub_cat: np.ndarray          # int32 [S]
    sub_share: np.ndarray        # float64 [S], share of news
    cat_appeal: np.ndarray       # float64 [C]
    templates: list[str]         # all title templates
    tmpl_uses: np.ndarray        # bool [T, 5] uses P, P2, O, O2, G
    tmpl_appeal: np.ndarray      # float64 [T]
    sub_tmpl: list[np.ndarray]   # per subcategory, its category's (or own) template ids
    generic_tmpl: np.ndarray
    ent_label: list[str]
    ent_type: list[str]
    ent_qid: list[str]
    ent_cum: np.ndarray          # cumulative Zipf weight over entities in pool order
    people: np.ndarray           # int64 [S, 2] start, count in the entity table
    orgs: np.ndarray             # int64 [S, 2]
    places: np.ndarray           # int64 [S, 2]
    city: tuple[int, int]        # the US city pool (home cities)


def _qid(label: str) -> str:
    return f"Q{1000 + zlib.crc32(label.encode()) % 90_000_000}"


def _build_world(size: SyntheticSize, rng: np.random.Generator) -> _World:
    cats = V.CATEGORIES
    sub_specs = [(ci, s) for ci, c in enumerate(cats) for s in c.subcategories]
    sub_cat = np.array([ci for ci, _ in sub_specs], np.int32)
    share = np.array([cats[ci].volume * s.volume / sum(x.volume for x in cats[ci].subcategories)
                      for ci, s in sub_specs])

    templates: list[str] = list(V.GENERIC_TEMPLATES)
    generic = np.arange(len(templates))
    cat_tmpl = []
    for c in cats:
        cat_tmpl.append(np.arange(len(templates), len(templates) + len(c.templates)))
        templates += c.templates
    sub_tmpl = []
    for ci, s in sub_specs:
        if s.templates:
            sub_tmpl.append(np.arange(len(templates), len(templates) + len(s.templates)))
            templates += s.templates
        else:
            sub_tmpl.append(cat_tmpl[ci])
    fields = [{f for _, f, _, _ in string.Formatter().parse(t) if f} for t in templates]
    uses = np.array([[f in fs for f in _ENTITY_FIELDS] for fs in fields], bool)

    labels: list[str] = []
    types: list[str] = []
    used: set[str] = set()

    def pool(names: list[str], kind: str, n: int) -> tuple[int, int]:
        fresh = [x for x in names if x not in used][:n]
        used.update(fresh)
        start = len(labels)
        labels.extend(fresh)
        types.extend([kind] * len(fresh))
        return start, len(fresh)

    place_pool = {}
    for name, values in V.PLACES.items():
        order = rng.permutation(len(values))
        place_pool[name] = pool([values[i] for i in order], "G", len(values))
    people, orgs, places = [], [], []
    for _, s in sub_specs:
        first = rng.choice(len(V.FIRST_NAMES), 4 * size.people_per_subcategory)
        last = rng.choice(len(V.LAST_NAMES), 4 * size.people_per_subcategory)
        names = list(dict.fromkeys(f"{V.FIRST_NAMES[a]} {V.LAST_NAMES[b]}" for a, b in zip(first, last)))
        people.append(pool(names, "P", size.people_per_subcategory))
        left = V.SHARED[s.orgs.left] if isinstance(s.orgs.left, str) else s.orgs.left
        combos = [f"{a} {b}" for a in left for b in s.orgs.right]
        orgs.append(pool([combos[i] for i in rng.permutation(len(combos))], s.orgs.kind,
                         size.orgs_per_subcategory))
        places.append(place_pool[s.places])

    # Zipf popularity inside each pool: the pool's order is random, weight 1/rank^ZIPF
    weight = np.empty(len(labels))
    for start, n in [*people, *orgs, *place_pool.values()]:
        weight[start:start + n] = 1.0 / np.arange(1, n + 1) ** ZIPF
    return _World(
        cat_names=[c.name for c in cats],
        sub_names=[s.name for _, s in sub_specs],
        sub_cat=sub_cat,
        sub_share=share / share.sum(),
        cat_appeal=np.array([c.appeal for c in cats]),
        templates=templates,
        tmpl_uses=uses,
        tmpl_appeal=rng.normal(0.0, TEMPLATE_APPEAL, len(templates)),
        sub_tmpl=sub_tmpl,
        generic_tmpl=generic,
        ent_label=labels,
        ent_type=types,
        ent_qid=[_qid(x) for x in labels],
        ent_cum=np.concatenate(([0.0], np.cumsum(weight))),
        people=np.array(people, np.int64),
        orgs=np.array(orgs, np.int64),
        places=np.array(places, np.int64),
        city=place_pool["us"],
    )


def _draw_from_pool(world: _World, pools: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One Zipf-weighted entity per row of ``pools`` ([n, 2]: start, count)."""
    lo, hi = world.ent_cum[pools[:, 0]], world.ent_cum[pools[:, 0] + pools[:, 1]]
    v = lo + rng.random(len(pools)) * (hi - lo)
    idx = np.searchsorted(world.ent_cum, v, side="right") - 1
    return np.clip(idx, pools[:, 0], pools[:, 0] + pools[:, 1] - 1)


def _other(first: np.ndarray, pools: np.ndarray, rng: np.random.Generator, world: _World) -> np.ndarray:
    """A second entity of the same pools, different from ``first`` where the pool allows."""
    second = _draw_from_pool(world, pools, rng)
    same = second == first
    start, n = pools[:, 0], pools[:, 1]
    second[same] = start[same] + (first[same] - start[same] + 1) % np.maximum(n[same], 1)
    return second


# ---- grouped, time-windowed, weighted sampling ----------------------------------------
_T0 = -(HISTORY_DAYS + 2) * DAY
_SPAN = (HISTORY_DAYS + 12) * DAY


class _Groups:
    """Items grouped by a key, time-sorted inside a group, drawn by weight in a time window."""

    def __init__(self, keys: np.ndarray, items: np.ndarray, times: np.ndarray, weights: np.ndarray):
        order = np.lexsort((times, keys))
        self.items = items[order].astype(np.int32)
        self.sortkey = keys[order].astype(np.int64) * _SPAN + (times[order] - _T0)
        self.cum = np.concatenate(([0.0], np.cumsum(weights[order])))
        self.n_groups = int(keys.max()) + 1 if len(keys) else 0

    def sample(self, groups: np.ndarray, t_lo: np.ndarray | int, t_hi: np.ndarray | int,
               rng: np.random.Generator) -> np.ndarray:
        """One item per query published in ``[t_lo, t_hi)`` of group ``groups``; -1 if none."""
        if np.ndim(t_lo) == 0 and np.ndim(t_hi) == 0:  # one window for all: bounds per group
            base = np.arange(self.n_groups + 1, dtype=np.int64) * _SPAN - _T0
            lo = np.searchsorted(self.sortkey, base + t_lo)
            hi = np.searchsorted(self.sortkey, base + t_hi)
            g = np.minimum(groups, self.n_groups)  # a group without items: an empty window
            lo, hi = lo[g], hi[g]
        else:
            base = groups.astype(np.int64) * _SPAN - _T0
            lo = np.searchsorted(self.sortkey, base + t_lo)
            hi = np.searchsorted(self.sortkey, base + t_hi)
        v = self.cum[lo] + rng.random(len(groups)) * (self.cum[hi] - self.cum[lo])
        pos = np.clip(np.searchsorted(self.cum, v, side="right") - 1, lo, np.maximum(hi - 1, lo))
        picked = self.items[np.minimum(pos, len(self.items) - 1)]
        return np.where(hi > lo, picked, -1)


# ---- news ----------------------------------------------------------------------------
@dataclass
class _News:
    time: np.ndarray      # int64 seconds from day 0 (Nov 9, 2019, 00:00), sorted
    sub: np.ndarray       # int32
    cat: np.ndarray       # int32
    tmpl: np.ndarray      # int32
    ent: np.ndarray       # int64 [N, 5] entities of P, P2, O, O2, G (drawn, whether used or not)
    title_ent: np.ndarray  # int64 [N, 5] the same, -1 where the title template does not use it
    appeal: np.ndarray    # float64
    number: np.ndarray    # int64, the digits of the news id


def _publish_news(world: _World, size: SyntheticSize, rng: np.random.Generator) -> _News:
    n = size.news
    n_pre = int(round(n * PRE_PERIOD_SHARE))
    t = np.concatenate([rng.integers(-HISTORY_DAYS * DAY, 0, n_pre),
                        rng.integers(0, DEV_DAYS[1] * DAY, n - n_pre)])
    t.sort()
    sub = rng.choice(len(world.sub_names), n, p=world.sub_share).astype(np.int32)
    cat = world.sub_cat[sub]
    # template: generic or the subcategory's own, uniformly
    n_own = np.array([len(x) for x in world.sub_tmpl])
    own_table = np.full((len(n_own), n_own.max()), -1)
    for s, ids in enumerate(world.sub_tmpl):
        own_table[s, : len(ids)] = ids
    own = own_table[sub, (rng.random(n) * n_own[sub]).astype(np.int64)]
    generic = world.generic_tmpl[rng.integers(0, len(world.generic_tmpl), n)]
    tmpl = np.where(rng.random(n) < GENERIC_TEMPLATE_SHARE, generic, own).astype(np.int32)

    p1 = _draw_from_pool(world, world.people[sub], rng)
    p2 = _other(p1, world.people[sub], rng, world)
    o1 = _draw_from_pool(world, world.orgs[sub], rng)
    o2 = _other(o1, world.orgs[sub], rng, world)
    g = _draw_from_pool(world, world.places[sub], rng)
    ent = np.stack([p1, p2, o1, o2, g], axis=1)
    title_ent = np.where(world.tmpl_uses[tmpl], ent, -1).astype(np.int32)
    appeal = world.cat_appeal[cat] + world.tmpl_appeal[tmpl] + rng.normal(0.0, APPEAL_NOISE, n)
    number = rng.permutation(max(100_000, 4 * n))[:n] + 1
    return _News(t, sub, cat, tmpl, ent, title_ent, appeal, number)


# ---- users and their histories -------------------------------------------------------
K_MAX = 5
_NONE = -2  # "no favourite": never equal to an entity, nor to -1 (an unused title slot)


@dataclass
class _Users:
    sub: np.ndarray       # int32 [U, 5], -1 padded
    weight: np.ndarray    # float64 [U, 5], 0 where padded; rows sum to 1
    fav: np.ndarray       # int32 [U, 5] favourite entity of each interest, _NONE if none
    home: np.ndarray      # int32 [U] home city entity, _NONE if none
    activity: np.ndarray  # float64 [U], impressions are drawn proportionally
    number: np.ndarray    # int64 [U], the digits of the user id
    k: np.ndarray         # int64 [U], number of interests
    cum: np.ndarray       # float64 [U * 5], running sum of all weights (user u's run ends at u + 1)
    cat: np.ndarray       # int32 [U, 5], category of each interest, -1 padded


def _make_users(world: _World, size: SyntheticSize, rng: np.random.Generator) -> _Users:
    n, n_sub = size.users, len(world.sub_names)
    k = 1 + rng.binomial(K_MAX - 1, 0.4, n)
    sub = np.empty((n, K_MAX), np.int32)
    log_share = np.log(world.sub_share)
    for start in range(0, n, 100_000):  # Gumbel top-k: distinct interests per user
        stop = min(n, start + 100_000)
        keys = log_share + rng.gumbel(size=(stop - start, n_sub))
        sub[start:stop] = np.argsort(-keys, axis=1)[:, :K_MAX]
    active = np.arange(K_MAX) < k[:, None]
    sub = np.where(active, sub, -1)
    weight = np.where(active, rng.gamma(1.0, 1.0, (n, K_MAX)), 0.0)
    weight /= weight.sum(axis=1, keepdims=True)
    safe = np.maximum(sub, 0).ravel()
    person = rng.random(n * K_MAX) < 0.55
    pools = np.where(person[:, None], world.people[safe], world.orgs[safe])
    fav = _draw_from_pool(world, pools, rng).reshape(n, K_MAX)
    fav = np.where(active & (rng.random((n, K_MAX)) < FAVOURITE_SHARE), fav, _NONE)
    city = np.broadcast_to(np.array(world.city), (n, 2))
    home = np.where(rng.random(n) < HOME_CITY_SHARE, _draw_from_pool(world, city, rng), _NONE)
    activity = rng.lognormal(0.0, 1.0, n)
    number = rng.permutation(max(100_000, 4 * n))[:n] + 1
    cat = np.where(active, world.sub_cat[np.maximum(sub, 0)], -1).astype(np.int32)
    return _Users(sub, weight.astype(np.float32), fav.astype(np.int32), home.astype(np.int32),
                  activity, number, k, np.cumsum(weight.ravel()), cat)


def _pick_interest(users: _Users, who: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each row of ``who``, one interest slot drawn by the user's interest weights."""
    slot = np.searchsorted(users.cum, who + rng.random(len(who)), side="right") - K_MAX * who
    return np.clip(slot, 0, users.k[who] - 1)


def _histories(world: _World, news: _News, users: _Users, size: SyntheticSize,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each user's clicks in the history period, oldest first: (offsets [U+1], news [H])."""
    n_users, n_sub = size.users, len(world.sub_names)
    pre = news.time < 0
    idx = np.flatnonzero(pre)
    weight = np.exp(news.appeal[idx])
    by_sub = _Groups(np.concatenate([news.sub[idx], np.full(len(idx), n_sub)]),
                     np.concatenate([idx, idx]), np.concatenate([news.time[idx]] * 2),
                     np.concatenate([weight, weight]))
    e_news = np.repeat(idx, 5)
    e_key = news.title_ent[idx].ravel()
    keep = e_key >= 0
    by_ent = _Groups(e_key[keep], e_news[keep], news.time[e_news[keep]],
                     np.exp(news.appeal[e_news[keep]]))

    cold = rng.random(n_users) < COLD_USER_SHARE
    r = 1.5  # negative binomial: gamma-Poisson, a long tail like MIND's histories
    length = 1 + rng.poisson(rng.gamma(r, (size.history - 1) / r, n_users))
    length = np.where(cold, 0, length)
    parts_user, parts_news = [], []
    for start in range(0, n_users, 100_000):
        stop = min(n_users, start + 100_000)
        want_len = length[start:stop]
        who = np.repeat(np.arange(start, stop), want_len + np.ceil(0.4 * want_len).astype(np.int64))
        m = len(who)
        slot = _pick_interest(users, who, rng)
        group = users.sub[who, slot].astype(np.int64)
        mode = rng.random(m)
        group[mode < HISTORY_EXPLORE] = n_sub
        lo, hi = -HISTORY_DAYS * DAY, 0
        picked = by_sub.sample(group, lo, hi, rng)
        fav = users.fav[who, slot]
        home = users.home[who]
        want = np.where((mode >= HISTORY_EXPLORE) & (mode < HISTORY_EXPLORE + HISTORY_ENTITY), fav, -1)
        want = np.where(mode >= 1 - HISTORY_HOME, home, want)
        ask = want >= 0
        by_e = by_ent.sample(want[ask], lo, hi, rng)
        picked[np.flatnonzero(ask)[by_e >= 0]] = by_e[by_e >= 0]
        lost = picked < 0
        if lost.any():  # a subcategory with no news in the period: anything popular
            picked[lost] = by_sub.sample(np.full(lost.sum(), n_sub), lo, hi, rng)
        # distinct news per user, at most the drawn length; news indices are in publication
        # order, so sorting by them puts each history oldest first
        seg, picked = _dedupe_and_trim(who - start, picked, len(news.time), want_len, rng)
        key = np.sort(seg * len(news.time) + picked)
        parts_user.append(start + key // len(news.time))
        parts_news.append(key % len(news.time))
    h_user = np.concatenate(parts_user)
    h_news = np.concatenate(parts_news).astype(np.int32)
    offsets = np.zeros(n_users + 1, np.int64)
    np.cumsum(np.bincount(h_user, minlength=n_users), out=offsets[1:])
    return offsets, h_news


# ---- impressions and clicks ----------------------------------------------------------
_HOUR_WEIGHT = np.array([2, 1.2, 0.8, 0.6, 0.7, 1.5, 3.5, 5.5, 6, 5.5, 5, 5, 5.5, 5, 4.5, 4.5,
                         5, 5.5, 6, 6.5, 6, 5, 4, 3])


def _impression_times(n: int, days: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    day = rng.integers(days[0], days[1], n)
    hour = rng.choice(24, n, p=_HOUR_WEIGHT / _HOUR_WEIGHT.sum())
    return np.sort(day * DAY + hour * 3600 + rng.integers(0, 3600, n))


def _segment_sum(values: np.ndarray, seg: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(seg, weights=values, minlength=n)


def _utility(world: _World, news: _News, users: _Users, who: np.ndarray, cand: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Click utility of each (user, candidate) pair, and its category-interest part."""
    u_sub, u_w = users.sub[who], users.weight[who]
    u_cat = users.cat[who]
    cat_interest = (u_w * (u_cat == news.cat[cand][:, None])).sum(axis=1)
    sub_interest = (u_w * (u_sub == news.sub[cand][:, None])).sum(axis=1)
    t_ent = news.title_ent[cand]
    fav = users.fav[who]  # people and organisations: compare with P, P2, O, O2 (-1 never matches)
    entity = (t_ent[:, :4, None] == fav[:, None, :]).any(axis=(1, 2))
    home = users.home[who]
    at_home = t_ent[:, 4] == home
    utility = (W_CATEGORY * cat_interest + W_SUBCATEGORY * sub_interest + W_ENTITY * entity
               + W_HOME * at_home + news.appeal[cand])
    return utility, cat_interest


def _click_probabilities(utility: np.ndarray, seg: np.ndarray, counts: np.ndarray,
                         engagement: np.ndarray) -> np.ndarray:
    """``sigmoid(utility + b)`` with ``b`` per impression so that clicks sum to ``engagement``."""
    n = len(counts)
    top = np.full(n, -np.inf)
    np.maximum.at(top, seg, utility)
    lse = top + np.log(_segment_sum(np.exp(utility - top[seg]), seg, n))
    b = np.log(engagement) - lse
    for _ in range(8):  # Newton on sum(sigmoid(u + b)) = engagement
        p = _sigmoid(utility + b[seg])
        f = _segment_sum(p, seg, n) - engagement
        slope = _segment_sum(p * (1 - p), seg, n)
        b -= f / np.maximum(slope, 1e-12)
    return np.clip(_sigmoid(utility + b[seg]), 1e-6, 1 - 1e-6)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for any x


def _draw_clicks(p: np.ndarray, seg: np.ndarray, counts: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Labels with at least one click and one non-click per impression (where it has two
    candidates), and each candidate's exact click probability given that condition."""
    n = len(counts)
    labels = rng.random(len(p)) < p
    redo = np.arange(len(p))  # slots of the impressions still to be (re)drawn
    for _ in range(MAX_REDRAWS):
        clicks = np.bincount(seg[redo][labels[redo]], minlength=n)
        bad = (clicks == 0) | ((clicks == counts) & (counts > 1))
        redo = redo[bad[seg[redo]]]
        if len(redo) == 0:
            break
        labels[redo] = rng.random(len(redo)) < p[redo]
    else:  # practically unreachable: force the most and the least likely candidate
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        clicks = np.bincount(seg[labels], minlength=n)
        for i in np.flatnonzero((clicks == 0) | ((clicks == counts) & (counts > 1))):
            sl = slice(starts[i], starts[i] + counts[i])
            labels[sl] = False
            labels[starts[i] + np.argmax(p[sl])] = True
    p_none = np.exp(_segment_sum(np.log1p(-p), seg, n))
    p_all = np.where(counts > 1, np.exp(_segment_sum(np.log(p), seg, n)), 0.0)
    cond = (p - p_all[seg]) / (1.0 - p_none[seg] - p_all[seg])
    cond = np.where(counts[seg] > 1, cond, 1.0)
    return labels, cond


def _prime_at_least(n: int) -> int:
    n = max(n, 2)
    while any(n % d == 0 for d in range(2, int(n**0.5) + 1)):
        n += 1
    return n


def _dedupe_and_trim(seg: np.ndarray, item: np.ndarray, n_items: int, keep: np.ndarray,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Distinct items per segment, in random order, at most ``keep[segment]`` of them.

    One sort does it all: items are relabelled by a random bijection per segment,
    ``h = (a * item + b) mod p`` (p prime), so sorting ``(segment, h)`` both brings repeats
    together and shuffles each segment; the first ``keep`` are a random subset.
    """
    if len(seg) == 0:
        return seg, item
    p = _prime_at_least(n_items)
    table = rng.integers(1, p, 1024)
    inverse = np.array([pow(int(a), -1, p) for a in table])
    which = rng.integers(0, len(table), len(keep))
    shift = rng.integers(0, p, len(keep))
    key = seg.astype(np.int64) * p + (table[which][seg] * item + shift[seg]) % p
    key.sort()
    distinct = np.empty(len(key), bool)
    distinct[0] = True
    np.not_equal(key[1:], key[:-1], out=distinct[1:])
    seg, h = np.divmod(key[distinct], p)
    rank = np.arange(len(seg)) - np.searchsorted(seg, np.arange(len(keep)))[seg]
    kept = rank < keep[seg]
    seg, h = seg[kept], h[kept]
    return seg, (inverse[which][seg] * (h - shift[seg])) % p


@dataclass
class _Chunk:
    counts: np.ndarray    # candidates per impression
    cand: np.ndarray      # news indices, impression by impression
    labels: np.ndarray    # bool
    probs: np.ndarray     # true click probability
    cat_interest: np.ndarray


def _impressions(world: _World, news: _News, users: _Users, groups: _Groups, size: SyntheticSize,
                 who: np.ndarray, when: np.ndarray, rng: np.random.Generator) -> _Chunk:
    n, n_sub = len(who), len(world.sub_names)
    sigma = 0.6
    counts = np.exp(rng.normal(np.log(size.candidates) - sigma**2 / 2, sigma, n))
    target = np.clip(np.rint(counts), 2, 8 * size.candidates).astype(np.int64)
    # draw a few more than wanted: repeats of a news within an impression are dropped below
    seg = np.repeat(np.arange(n), target + np.ceil(0.3 * target).astype(np.int64))
    s_user, s_time = who[seg], when[seg]
    m = len(seg)
    window = (rng.uniform(*WINDOW_HOURS, m) * 3600).astype(np.int64)
    lo = s_time - window
    slot = _pick_interest(users, s_user, rng)
    mode = rng.random(m)
    group = np.where(mode < TARGET_ENTITY + TARGET_SUBCATEGORY, users.sub[s_user, slot], n_sub)
    cand = groups.sample(group, lo, s_time, rng)
    fav = users.fav[s_user, slot]
    ask = (mode < TARGET_ENTITY) & (fav >= 0)
    by_e = groups.sample(n_sub + 1 + fav[ask], lo[ask], s_time[ask], rng)
    cand[np.flatnonzero(ask)[by_e >= 0]] = by_e[by_e >= 0]
    for lo_fallback in (lo, s_time - 7 * DAY, np.full(m, _T0)):
        lost = cand < 0
        if not lost.any():
            break
        cand[lost] = groups.sample(np.full(lost.sum(), n_sub), lo_fallback[lost], s_time[lost], rng)
    # one slot per news and impression, in random order, at most ``target`` of them
    seg, cand = _dedupe_and_trim(seg, cand, len(news.time), target, rng)
    counts = np.bincount(seg, minlength=n)

    utility, cat_interest = _utility(world, news, users, who[seg], cand)
    engagement = rng.lognormal(np.log(ENGAGEMENT[0]) - ENGAGEMENT[1] ** 2 / 2, ENGAGEMENT[1], n)
    engagement = np.clip(engagement, 0.2, 0.5 * counts)
    p = _click_probabilities(utility, seg, counts, engagement)
    labels, probs = _draw_clicks(p, seg, counts, rng)
    return _Chunk(counts, cand, labels, probs, cat_interest)


def _candidate_groups(world: _World, news: _News) -> _Groups:
    """Every news, grouped by subcategory (0..S-1), all together (S) and by title entity (S+1+e)."""
    n, n_sub = len(news.time), len(world.sub_names)
    idx = np.arange(n)
    e_news = np.repeat(idx, 5)
    e_key = news.title_ent.ravel()
    keep = e_key >= 0
    keys = np.concatenate([news.sub, np.full(n, n_sub), n_sub + 1 + e_key[keep]])
    items = np.concatenate([idx, idx, e_news[keep]])
    weight = np.exp(EXPOSURE_TILT * news.appeal[items])
    return _Groups(keys, items, news.time[items], weight)


# ---- MIND text -----------------------------------------------------------------------
def _text_table(values: list[str] | np.ndarray | pa.Array) -> pa.Array:
    return values if isinstance(values, pa.Array) else pa.array(values, pa.string())


def _tsv_bytes(columns: list) -> bytes:
    """Tab-join the columns row by row, newline-join the rows (vectorised in Arrow)."""
    lines = pc.binary_join_element_wise(*[_text_table(c) for c in columns], "\t")
    one = pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()), lines)
    return bytes(pc.binary_join(one, "\n")[0].as_buffer()) + b"\n" if len(lines) else b""


def _time_strings(t: np.ndarray) -> pa.Array:
    """MIND's time format, ``11/15/2019 9:05:58 AM`` (no leading zeros on month, day, hour)."""
    day, rest = np.divmod(t, DAY)
    hour, rest = np.divmod(rest, 3600)
    minute, second = np.divmod(rest, 60)
    y, mo, d0 = LOG_START  # all logged days are in November 2019
    as_str = lambda a: pc.cast(pa.array(a), pa.string())  # noqa: E731
    pad = lambda a: pc.utf8_lpad(as_str(a), width=2, padding="0")  # noqa: E731
    date = pc.binary_join_element_wise(pa.scalar(str(mo)), as_str(d0 + day), pa.scalar(str(y)), "/")
    clock = pc.binary_join_element_wise(as_str((hour + 11) % 12 + 1), pad(minute), pad(second), ":")
    ampm = pa.array(np.where(hour < 12, "AM", "PM"))
    return pc.binary_join_element_wise(date, clock, ampm, " ")


def _article(word: str) -> str:
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


def _title_case(text: str) -> str:
    words = text.split(" ")
    out = [words[0][:1].upper() + words[0][1:]]
    for w in words[1:]:
        out.append(w if w.lower() in _SMALL_WORDS or not w[:1].isalpha() else w[:1].upper() + w[1:])
    return " ".join(out)


def _entities_json(text: str, ids: list[int], world: _World, conf: float) -> str:
    low = text.lower()
    found = []
    for e in dict.fromkeys(ids):
        label = world.ent_label[e]
        at = low.find(label.lower())
        if at < 0:
            continue
        found.append({"Label": label, "Type": world.ent_type[e], "WikidataId": world.ent_qid[e],
                      "Confidence": conf, "OccurrenceOffsets": [at],
                      "SurfaceForms": [text[at:at + len(label)]]})
    return json.dumps(found)


def _news_text(world: _World, news: _News, wanted: np.ndarray, rng: np.random.Generator,
               progress: bool) -> dict[str, list[str]]:
    """Title, abstract, entity JSON and URL of each wanted news (one formatted string each)."""
    n = len(news.time)
    draws = {
        "N": rng.integers(0, 1 << 30, n), "N2": rng.integers(1, 1 << 30, n),
        "A": rng.integers(0, 1 << 30, n), "V": rng.integers(0, 1 << 30, n),
        "R": rng.integers(0, 1 << 30, n), "K": rng.integers(3, 13, n),
        "S1": rng.random(n), "S2": rng.random(n), "M": rng.integers(0, 1 << 30, n),
        "a1": rng.integers(0, len(V.ABSTRACT_TEMPLATES), n),
        "a2": rng.integers(0, len(V.ABSTRACT_TEMPLATES), n),
        "two": rng.random(n) < 0.5, "empty": rng.random(n) < EMPTY_ABSTRACT_SHARE,
        "case": rng.random(n) < TITLE_CASE_SHARE,
        "conf": np.round(1.0 - 0.1 * rng.random(n) ** 4, 3),
        "url": rng.integers(0, 36**5, n),
    }
    cats = V.CATEGORIES
    subs = [s for c in cats for s in c.subcategories]
    day0 = 5  # Nov 9, 2019 was a Saturday (WEEKDAYS index 5)
    out: dict[str, list[str]] = {k: [""] * n for k in ("title", "abstract", "url", "title_entities",
                                                   "abstract_entities")}
    for i in tqdm(np.flatnonzero(wanted), desc="writing news text", unit="news", disable=not progress):
        sub, cat = subs[news.sub[i]], cats[news.cat[i]]
        nouns = sub.nouns
        n1 = draws["N"][i] % len(nouns)
        lo_s, hi_s = sub.score
        a, b = lo_s + int(draws["S1"][i] * (hi_s - lo_s + 1)), lo_s + int(draws["S2"][i] * (hi_s - lo_s))
        win, lose = (a, b) if a > b else (b + 1, a) if a == b else (b, a)
        m = draws["M"][i]
        money = f"${1 + m % 99}{'.' + str(m % 10) if m % 3 == 0 else ''} {'million' if m % 4 else 'billion'}"
        e = news.ent[i]
        f = {
            "P": world.ent_label[e[0]], "P2": world.ent_label[e[1]], "O": world.ent_label[e[2]],
            "O2": world.ent_label[e[3]], "G": world.ent_label[e[4]],
            "N": nouns[n1], "N2": nouns[(n1 + draws["N2"][i] % (len(nouns) - 1) + 1) % len(nouns)],
            "A": cat.adjectives[draws["A"][i] % len(cat.adjectives)],
            "V": cat.verbs[draws["V"][i] % len(cat.verbs)],
            "R": _article(sub.roles[draws["R"][i] % len(sub.roles)]),
            "K": str(draws["K"][i]), "S": f"{win}-{lose}", "M": money,
            "D": V.WEEKDAYS[(day0 + news.time[i] // DAY) % 7],
        }
        title = world.templates[news.tmpl[i]].format_map(f).replace("s's ", "s' ")
        title = _title_case(title) if draws["case"][i] else title[:1].upper() + title[1:]
        if draws["empty"][i]:
            abstract = ""
        else:
            parts = [V.ABSTRACT_TEMPLATES[draws["a1"][i]].format_map(f)]
            if draws["two"][i] and draws["a2"][i] != draws["a1"][i]:
                parts.append(V.ABSTRACT_TEMPLATES[draws["a2"][i]].format_map(f))
            abstract = " ".join(p[:1].upper() + p[1:] for p in parts)
        ids = [int(x) for x in e]
        conf = float(draws["conf"][i])
        out["title"][i] = title
        out["abstract"][i] = abstract
        used = [x for x in news.title_ent[i] if x >= 0]
        out["title_entities"][i] = _entities_json(title, used, world, conf)
        out["abstract_entities"][i] = _entities_json(abstract, ids, world, conf)
        code = np.base_repr(int(draws["url"][i]), 36).rjust(5, "0")
        out["url"][i] = f"https://www.example.com/mind/AA{code}.html"
    return out


# ---- the public entry point ----------------------------------------------------------
def _resolve(size: str | SyntheticSize) -> tuple[str, SyntheticSize]:
    if isinstance(size, SyntheticSize):
        return "custom", size
    if size not in SIZES:
        raise ParamError(f"params.yaml: data.size must be one of {', '.join(SIZES)}, got {size!r}")
    return size, SIZES[size]


def generate(out_dir: str | Path, size: str | SyntheticSize = "demo", seed: int = 42,
             progress: bool = True) -> dict:
    """Write a synthetic MIND (train and dev, MIND TSV format) and ``dev/oracle.parquet``.

    Returns a JSON-ready summary: counts per split, mean candidates/clicks/history, the
    share of dev candidates never seen in train. The same seed writes the same bytes.
    """
    name, spec = _resolve(size)
    started = time.perf_counter()
    out = Path(out_dir)
    log.info("generating synthetic MIND (%s, seed %d): %s news, %s users, %s + %s impressions",
             name, seed, f"{spec.news:,}", f"{spec.users:,}", f"{spec.train_impressions:,}",
             f"{spec.dev_impressions:,}")
    seeds = np.random.SeedSequence(seed).spawn(7)
    world = _build_world(spec, np.random.default_rng(seeds[0]))
    news = _publish_news(world, spec, np.random.default_rng(seeds[1]))
    users = _make_users(world, spec, np.random.default_rng(seeds[2]))
    h_off, h_news = _histories(world, news, users, spec, np.random.default_rng(seeds[3]))
    groups = _candidate_groups(world, news)

    n_news = len(news.time)
    news_id = pc.binary_join_element_wise("N", pc.cast(pa.array(news.number), pa.string()), "")
    user_id = pc.binary_join_element_wise("U", pc.cast(pa.array(users.number), pa.string()), "")
    tokens = pc.binary_join_element_wise(  # token 2*i + label: "N123-0", "N123-1"
        news_id.take(np.repeat(np.arange(n_news), 2)), pa.array(np.tile(["0", "1"], n_news)), "-")
    history_str = pc.binary_join(
        pa.ListArray.from_arrays(pa.array(h_off, pa.int64()).cast(pa.int32()), news_id.take(h_news)), " ")

    summary: dict = {"size": name, "seed": seed, "sizes": asdict(spec)}
    referenced = {}
    train_seen = np.zeros(n_news, bool)
    for split, n_imp, days, seq in (("train", spec.train_impressions, TRAIN_DAYS, seeds[4]),
                                    ("dev", spec.dev_impressions, DEV_DAYS, seeds[5])):
        rng = np.random.default_rng(seq)
        who = rng.choice(spec.users, n_imp, p=users.activity / users.activity.sum())
        when = _impression_times(n_imp, days, rng)
        chunk_seeds = seq.spawn((n_imp + spec.chunk_impressions - 1) // spec.chunk_impressions)
        used = np.zeros(n_news, bool)
        n_slots = n_clicks = 0
        oracle_ids, oracle_counts, oracle_p, oracle_c = [], [], [], []
        unseen = 0
        path = out / split / "behaviors.tsv"
        with atomic_path(path) as tmp, open(tmp, "wb") as f, tqdm(
                total=n_imp, desc=f"{split} impressions", unit="imp", disable=not progress) as bar:
            for c, start in enumerate(range(0, n_imp, spec.chunk_impressions)):
                stop = min(n_imp, start + spec.chunk_impressions)
                ch = _impressions(world, news, users, groups, spec, who[start:stop], when[start:stop],
                                  np.random.default_rng(chunk_seeds[c]))
                ids = np.arange(start + 1, stop + 1)
                offsets = np.concatenate(([0], np.cumsum(ch.counts))).astype(np.int32)
                imps = pc.binary_join(pa.ListArray.from_arrays(
                    pa.array(offsets), tokens.take(pa.array(2 * ch.cand + ch.labels))), " ")
                f.write(_tsv_bytes([pc.cast(pa.array(ids), pa.string()), user_id.take(who[start:stop]),
                                    _time_strings(when[start:stop]), history_str.take(who[start:stop]),
                                    imps]))
                used[ch.cand] = True
                n_slots += len(ch.cand)
                n_clicks += int(ch.labels.sum())
                if split == "train":
                    train_seen[ch.cand] = True
                else:
                    unseen += int((~train_seen[ch.cand]).sum())
                    oracle_ids.append(ids)
                    oracle_counts.append(ch.counts)
                    oracle_p.append(ch.probs.astype(np.float32))
                    oracle_c.append(ch.cat_interest.astype(np.float32))
                bar.update(stop - start)
        split_users = np.zeros(spec.users, bool)
        split_users[who] = True
        in_hist = np.repeat(split_users, np.diff(h_off))
        used[h_news[in_hist]] = True
        if split == "train":
            train_seen |= used  # history news of train users are in train's news.tsv too
        referenced[split] = used
        summary[split] = {
            "impressions": n_imp, "users": int(split_users.sum()), "news": int(used.sum()),
            "candidates_per_impression": round(n_slots / max(n_imp, 1), 2),
            "clicks_per_impression": round(n_clicks / max(n_imp, 1), 3),
        }
        if split == "dev":
            offs = pa.array(np.concatenate(([0], np.cumsum(np.concatenate(oracle_counts)))), pa.int32())
            write_parquet(pa.table({
                "impression_id": pa.array(np.concatenate(oracle_ids), pa.int64()),
                "probs": pa.ListArray.from_arrays(offs, pa.array(np.concatenate(oracle_p), pa.float32())),
                "category_interest": pa.ListArray.from_arrays(
                    offs, pa.array(np.concatenate(oracle_c), pa.float32())),
            }), out / "dev" / "oracle.parquet")
            summary["dev_candidates_unseen_in_train"] = round(unseen / max(n_slots, 1), 4)

    wanted = referenced["train"] | referenced["dev"]
    text = _news_text(world, news, wanted, np.random.default_rng(seeds[6]), progress)
    subs = np.array(world.sub_names)
    cats = np.array(world.cat_names)
    for split in ("train", "dev"):
        keep = np.flatnonzero(referenced[split])
        cols = [news_id.take(keep), cats[news.cat[keep]], subs[news.sub[keep]]]
        cols += [[text[k][i] for i in keep] for k in ("title", "abstract", "url", "title_entities",
                                                     "abstract_entities")]
        cols = [c if isinstance(c, pa.Array) else pa.array(list(c), pa.string()) for c in cols]
        with atomic_path(out / split / "news.tsv") as tmp:
            tmp.write_bytes(_tsv_bytes(cols))

    dev_cands = referenced["dev"] & (news.time >= 0) & ~train_seen
    lengths = np.diff(h_off)
    summary.update({
        "news": int(wanted.sum()),
        "users": spec.users,
        "history_per_user": round(float(lengths.mean()), 2),
        "cold_users": round(float((lengths == 0).mean()), 4),
        "empty_abstracts": round(sum(1 for i in np.flatnonzero(wanted) if not text["abstract"][i])
                                 / max(int(wanted.sum()), 1), 4),
        "dev_news_unseen_in_train": int(dev_cands.sum()),
    })  # no wall time here: the summary lands in metrics/data.json, which must be reproducible
    log.info("wrote synthetic MIND to %s in %.1f s (%.0f%% of dev candidates unseen in train)",
             out, time.perf_counter() - started, 100 * summary["dev_candidates_unseen_in_train"])
    return summary


# ---- the latent world, for what the TSV files do not say (news cards, headroom) ----------
@dataclass(frozen=True)
class LatentWorld:
    """The generator's hidden state behind a synthetic MIND: the world, every news (also those no
    behaviors reference, which are never written) and every user, in the generator's order.

    ``news.number[i]`` is the digits of news ``i``'s id ``N<number>``; ``users.number[u]`` those of
    user ``u``'s ``U<number>``. The multimodal branch draws its news cards from it (a card's
    picture encodes the news' text-invisible appeal, :func:`hidden_appeal`).
    """

    world: _World
    news: _News
    users: _Users
    size: SyntheticSize
    seed: int


def latent_world(size: str | SyntheticSize = "demo", seed: int = 42) -> LatentWorld:
    """Rebuild exactly the world, news and users that :func:`generate` builds for ``(size, seed)``
    (the same random streams, drawn in the same order), without writing anything."""
    _, spec = _resolve(size)
    seeds = np.random.SeedSequence(seed).spawn(7)
    world = _build_world(spec, np.random.default_rng(seeds[0]))
    news = _publish_news(world, spec, np.random.default_rng(seeds[1]))
    users = _make_users(world, spec, np.random.default_rng(seeds[2]))
    return LatentWorld(world, news, users, spec, seed)


def hidden_appeal(latent: LatentWorld) -> np.ndarray:
    """Each news' text-invisible appeal (float64 [N], normal with std :data:`APPEAL_NOISE`): its
    appeal less the parts its text reveals (its category's base rate, its template's catchiness)."""
    news, world = latent.news, latent.world
    return news.appeal - world.cat_appeal[news.cat] - world.tmpl_appeal[news.tmpl]


def utility(latent: LatentWorld, who: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """The click utility of each (user ``who[j]``, news ``cand[j]``) pair, generator indices: within
    an impression the true click probabilities are ``sigmoid(utility + b)``, in the same order."""
    who = np.asarray(who, np.int64)
    cand = np.asarray(cand, np.int64)
    return _utility(latent.world, latent.news, latent.users, who, cand)[0]
