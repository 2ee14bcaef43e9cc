"""The synthetic news cards: the generator's latent world behind them, what a picture encodes, the
seeded draw, the measured headroom, and the render_cards stage on the tiny world."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import load_stage, write_params
from tinynewsrec.data import mind
from tinynewsrec.data.synthetic import APPEAL_NOISE, generate, hidden_appeal, latent_world, utility
from tinynewsrec.errors import DataError
from tinynewsrec.multimodal import cards
from tinynewsrec.multimodal.image_encoder import FEATURE_NAMES, card_features


def make_tiny_mind(folder: Path) -> Path:
    """generate(tiny, seed 42) + the MIND parser: ``folder/raw`` (TSV) and ``folder/data/mind`` (parquet)."""
    generate(folder / "raw", "tiny", seed=42, progress=False)
    mind.ingest({"train": folder / "raw" / "train", "dev": folder / "raw" / "dev"}, folder / "data" / "mind",
                progress=False)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_mind(tmp_path_factory.mktemp("tiny_mind"))


@pytest.fixture(scope="module")
def latent():
    return latent_world("tiny", 42)


def tsv_column(path: Path, column: int) -> list[str]:
    return [line.split("\t")[column] for line in path.read_text(encoding="utf-8").splitlines()]


def news_table(folder: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(folder / "data" / "mind" / s / "news.parquet") for s in ("train", "dev")])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731 (no ties in continuous values)
    return float(np.corrcoef(rank(a), rank(b))[0, 1])


# ---- the latent world ----------------------------------------------------------------------------
def test_latent_world_is_the_world_generate_writes(tiny, latent):
    numbers = {int(n): i for i, n in enumerate(latent.news.number)}
    for split in ("train", "dev"):
        ids = tsv_column(tiny / "raw" / split / "news.tsv", 0)
        at = [numbers[int(x[1:])] for x in ids]  # a KeyError: an id the latent world does not have
        assert at == sorted(at)  # news.tsv is in publication order, as the generator's news
        categories = [latent.world.cat_names[latent.news.cat[i]] for i in at]
        assert tsv_column(tiny / "raw" / split / "news.tsv", 1) == categories
    users = set(latent.users.number.tolist())
    written = {int(u[1:]) for s in ("train", "dev") for u in tsv_column(tiny / "raw" / s / "behaviors.tsv", 1)}
    assert written and written <= users


def test_hidden_appeal_is_the_text_invisible_noise(latent):
    noise = hidden_appeal(latent)
    assert abs(noise.std() - APPEAL_NOISE) < 0.1 and abs(noise.mean()) < 0.1
    assert np.corrcoef(noise, latent.world.cat_appeal[latent.news.cat])[0, 1] ** 2 < 0.05


def test_utility_orders_candidates_as_the_true_click_probabilities(tiny, latent):
    dev = tiny / "data" / "mind" / "dev"
    behaviors, news = pq.read_table(dev / "behaviors.parquet"), pq.read_table(dev / "news.parquet")
    oracle = pq.read_table(tiny / "raw" / "dev" / "oracle.parquet")
    assert behaviors.column("impression_id").to_pylist() == oracle.column("impression_id").to_pylist()
    slot = dict(zip(news.column("news_index").to_pylist(), cards.news_positions(latent, news.column("news_id"))))
    users = cards.user_positions(latent, behaviors.column("user_id"))
    for u, cands, probs in zip(users, behaviors.column("candidates").to_pylist(), oracle.column("probs").to_pylist()):
        order = np.argsort(utility(latent, np.full(len(cands), u), np.array([slot[c] for c in cands])))
        assert np.all(np.diff(np.array(probs)[order]) >= -1e-6)


# ---- the plan and the cards -----------------------------------------------------------------------
@pytest.mark.parametrize("share", [0.0, 0.3, 0.7, 1.0])
def test_cover_share_is_respected(latent, share):
    cover = cards.plan_cards(latent, share, seed=42).cover
    sd = np.sqrt(share * (1 - share) / len(cover))
    assert abs(cover.mean() - share) <= 4 * sd


def test_raising_cover_share_only_adds_covers(latent):
    low, high = cards.plan_cards(latent, 0.3, 42).cover, cards.plan_cards(latent, 0.7, 42).cover
    assert np.all(high[low]) and high.sum() > low.sum()


def test_same_seed_draws_the_same_card_bytes(tiny, latent, tmp_path):
    news = news_table(tiny).slice(0, 12)
    for name, seed in (("a", 42), ("b", 42), ("c", 7)):
        cards.render_cards(news, latent, cards.plan_cards(latent, 0.7, seed), tmp_path / name, progress=False)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(files) == 12 and files == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert any((tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes() for f in files)


@pytest.mark.slow
def test_forked_workers_write_the_same_bytes(tiny, latent, tmp_path):
    news, plan = news_table(tiny).slice(0, 210), cards.plan_cards(latent, 0.7, 42)  # two chunks of 200
    one = cards.render_cards(news, latent, plan, tmp_path / "one", progress=False)
    two = cards.render_cards(news, latent, plan, tmp_path / "two", workers=2, progress=False)
    assert one == two
    assert all(p.read_bytes() == (tmp_path / "two" / p.name).read_bytes() for p in (tmp_path / "one").iterdir())


def test_a_card_has_imminds_size_and_a_picture_only_with_a_cover(latent):
    plan = cards.plan_cards(latent, 0.5, 42)
    with_cover, without = int(np.flatnonzero(plan.cover)[0]), int(np.flatnonzero(~plan.cover)[0])
    a, b = (cards.card_of(plan, i, "Storm brings heavy rain to the coast", "weather") for i in (with_cover, without))
    assert a.size == b.size == (610, 195)
    f = card_features([a, b])
    col = FEATURE_NAMES.index
    assert f[1, col("left_saturation")] == 0 and f[1, col("white_share")] > 0.9 and f[1, col("ink_share")] > 0
    assert f[0, col("left_saturation")] > 0 and f[0, col("white_share")] < f[1, col("white_share")]


def test_a_pictures_vividness_rises_with_the_appeal_noise(latent):
    plan = cards.plan_cards(latent, 1.0, 42)
    images = [cards.card_of(plan, i, "Local team wins the final", "sports") for i in range(50)]
    saturation = card_features(images)[:, FEATURE_NAMES.index("left_saturation")]
    assert spearman(saturation, plan.q[:50]) > 0.8


def test_the_hue_follows_the_category_not_the_appeal(latent):
    plan = cards.plan_cards(latent, 1.0, 42)
    assert np.array_equal(plan.hue, cards.category_hue(latent.news.cat))
    assert len(np.unique(cards.category_hue(np.arange(15)).round(3))) == 15


def test_a_long_title_is_wrapped_with_an_ellipsis():
    lines = cards.wrap(" ".join(["headline"] * 60), 22, 300, 4)
    assert len(lines) == 4 and lines[-1].endswith("...")
    assert all(cards._font(22).getlength(line) <= 300 for line in lines)
    assert cards.wrap("Short title", 22, 300, 4) == ["Short title"]


def test_ids_of_another_world_are_a_one_line_error(latent):
    with pytest.raises(DataError, match="stale"):
        cards.news_positions(latent, ["N0"])
    with pytest.raises(DataError, match="synthetic"):
        cards.news_positions(latent, ["item-7"])


# ---- headroom --------------------------------------------------------------------------------------
def test_headroom_shows_what_the_picture_adds(tiny, latent):
    mind_dir = tiny / "data" / "mind" / "dev"
    auc = cards.headroom(latent, cards.plan_cards(latent, 0.7, 42), pq.read_table(mind_dir / "behaviors.parquet"),
                         pq.read_table(mind_dir / "news.parquet"))
    assert auc["impressions"] == pq.read_metadata(mind_dir / "behaviors.parquet").num_rows
    assert auc["oracle_auc"] > auc["oracle_auc_without_visual"] >= auc["oracle_auc_without_hidden"] - 0.01
    assert 0.5 < auc["oracle_auc_without_hidden"] < auc["oracle_auc"] < 1


def test_headroom_without_covers_has_no_visual_part(tiny, latent):
    mind_dir = tiny / "data" / "mind" / "dev"
    auc = cards.headroom(latent, cards.plan_cards(latent, 0.0, 42), pq.read_table(mind_dir / "behaviors.parquet"),
                         pq.read_table(mind_dir / "news.parquet"))
    assert auc["oracle_auc"] == auc["oracle_auc_without_visual"] and auc["candidates_with_cover"] == 0


# ---- the stage ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_render_cards_stage_draws_every_news_once(tiny, workdir):
    shutil.copytree(tiny / "data", workdir / "data")
    write_params(workdir, data={"source": "synthetic", "size": "tiny", "seed": 42})
    load_stage("render_cards").main()
    ids = set(news_table(workdir).column("news_id").to_pylist())
    assert {p.stem for p in (workdir / "data" / "cards").glob("*.png")} == ids
    metrics = json.loads((workdir / "metrics" / "cards.json").read_text())
    assert metrics["cards"] == len(ids) == metrics["with_cover"] + metrics["text_only"]
    assert metrics["headroom"]["oracle_auc"] > metrics["headroom"]["oracle_auc_without_visual"]
    assert "seconds" not in json.dumps(metrics)


def test_render_cards_stage_draws_nothing_for_a_real_mind(tiny, workdir):
    shutil.copytree(tiny / "data", workdir / "data")
    write_params(workdir, data={"source": "mind-small"})
    load_stage("render_cards").main()
    assert [p.name for p in (workdir / "data" / "cards").iterdir()] == ["README.txt"]
    assert "images.path" in (workdir / "data" / "cards" / "README.txt").read_text()
    metrics = json.loads((workdir / "metrics" / "cards.json").read_text())
    assert metrics["rendered"] is False and metrics["cards"] == 0
