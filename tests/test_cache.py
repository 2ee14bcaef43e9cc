"""Frozen-layer cache: stored states + top layers == the full PLM, on tiny random BERTs."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from tinynewsrec.errors import DataError
from tinynewsrec.models.cache import FrozenCache, TopLayers, build_frozen_cache
from tinynewsrec.models.plm import freeze_plm, make_tiny_bert
from tinynewsrec.models.plmnr import PLMNR, NewsTokens, PLMNRConfig, collate_train


def random_titles(n: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [[]] + [[101, *rng.integers(1000, 20000, rng.integers(3, 15)).tolist(), 102] for _ in range(n)]


TITLES = random_titles(20)
NEWS = list(range(1, 21))


@pytest.fixture(scope="module")
def plm():
    model = make_tiny_bert(num_layers=3)
    freeze_plm(model, 1)
    return model


def full_states(plm, news):
    tokens = NewsTokens.from_lists(TITLES).batch(news)
    return plm(**tokens).last_hidden_state, tokens["attention_mask"].bool()


@pytest.mark.parametrize("dtype, atol", [(np.float32, 1e-5), (np.float16, 2e-2)])
def test_top_layers_on_cached_states_equal_the_full_plm(plm, tmp_path, dtype, atol):
    build_frozen_cache(plm, TITLES, 2, batch_size=6, out_path=tmp_path / "c", dtype=dtype, progress=False)
    cached = FrozenCache(tmp_path / "c").batch(NEWS)
    top = TopLayers(plm, 2)(cached["hidden_states"], cached["attention_mask"])
    expected, mask = full_states(plm, NEWS)
    assert torch.equal(cached["attention_mask"].bool(), mask)
    assert (top[mask] - expected[mask]).abs().max() < atol


def test_embeddings_only_cache_equals_the_full_plm(plm, tmp_path):
    build_frozen_cache(plm, TITLES, 0, batch_size=32, out_path=tmp_path / "c", dtype=np.float32, progress=False)
    cached = FrozenCache(tmp_path / "c").batch(NEWS)
    top = TopLayers(plm, 0)(cached["hidden_states"], cached["attention_mask"])
    expected, mask = full_states(plm, NEWS)
    assert (top[mask] - expected[mask]).abs().max() < 1e-5


def test_plmnr_scores_with_the_cache_equal_scores_from_tokens(plm, tmp_path):
    build_frozen_cache(plm, TITLES, 2, batch_size=8, out_path=tmp_path / "c", dtype=np.float32, progress=False)
    torch.manual_seed(0)
    model = PLMNR(plm, PLMNRConfig(news_dim=16, news_query_dim=8, user_query_dim=8)).eval()
    rows = [{"history": [1, 2, 3], "candidates": [4, 5, 6]}, {"history": [3, 7], "candidates": [8, 1, 9]}]
    from_tokens = model(collate_train(rows, NewsTokens.from_lists(TITLES)))
    cached_batch = collate_train(rows, FrozenCache(tmp_path / "c"))
    assert "news_states" in cached_batch and "news_tokens" not in cached_batch
    assert torch.allclose(model(cached_batch), from_tokens, atol=1e-4)


def test_a_shallower_cache_runs_the_remaining_frozen_layers(plm, tmp_path):
    build_frozen_cache(plm, TITLES, 1, batch_size=8, out_path=tmp_path / "c", dtype=np.float32, progress=False)
    torch.manual_seed(0)
    model = PLMNR(plm, PLMNRConfig(news_dim=16, news_query_dim=8, user_query_dim=8)).eval()
    vecs_cached = model.news_encoder(FrozenCache(tmp_path / "c").batch(NEWS))
    vecs_tokens = model.news_encoder(NewsTokens.from_lists(TITLES).batch(NEWS))
    assert torch.allclose(vecs_cached, vecs_tokens, atol=1e-5)


def test_a_cache_deeper_than_the_frozen_layers_is_refused(tmp_path):
    plm = make_tiny_bert(num_layers=3)
    build_frozen_cache(plm, TITLES, 2, batch_size=8, out_path=tmp_path / "c", progress=False)
    freeze_plm(plm, 2)  # layer 1 now trains: its cached output would be stale
    model = PLMNR(plm, PLMNRConfig(news_dim=16, news_query_dim=8, user_query_dim=8))
    with pytest.raises(DataError, match="only its first 1 layers are frozen"):
        model.news_encoder(FrozenCache(tmp_path / "c").batch([1, 2]))


def test_cache_stores_unpadded_states_with_offsets_and_a_sidecar(plm, tmp_path):
    build_frozen_cache(plm, TITLES, 2, batch_size=4, out_path=tmp_path / "c", progress=False, source="tiny")
    meta = json.loads((tmp_path / "c" / "cache.json").read_text())
    assert meta["num_tokens"] == sum(map(len, TITLES))
    assert (meta["num_news"], meta["hidden_size"], meta["dtype"], meta["num_frozen_layers"]) == (21, 32, "float16", 2)
    cache = FrozenCache(tmp_path / "c")
    assert isinstance(cache.states, np.memmap) and cache.states.dtype == np.float16
    assert np.diff(cache.offsets).tolist() == [len(t) for t in TITLES]


def test_cache_keyed_by_news_index(plm, tmp_path):
    tokens = pa.array([TITLES[5], TITLES[2]], pa.list_(pa.int32()))
    build_frozen_cache(plm, tokens, 2, 8, tmp_path / "c", dtype=np.float32, progress=False, news_index=[7, 3])
    cache = FrozenCache(tmp_path / "c")
    assert len(cache) == 8
    assert np.diff(cache.offsets)[[3, 7, 1]].tolist() == [len(TITLES[2]), len(TITLES[5]), 0]
    full = FrozenCache(tmp_path / "c").batch([7])["hidden_states"]
    build_frozen_cache(plm, TITLES, 2, 8, tmp_path / "d", dtype=np.float32, progress=False)
    assert torch.allclose(full, FrozenCache(tmp_path / "d").batch([5])["hidden_states"], atol=1e-6)


def test_cache_refuses_a_different_model(plm, tmp_path):
    build_frozen_cache(plm, TITLES, 2, 8, tmp_path / "c", progress=False)
    cache = FrozenCache(tmp_path / "c")
    cache.check_model(plm)
    other = make_tiny_bert(num_layers=3, seed=1)
    with pytest.raises(DataError, match="different model"):
        cache.check_model(other)


def test_cache_ignores_changes_to_the_top_layers(plm, tmp_path):
    build_frozen_cache(plm, TITLES, 2, 8, tmp_path / "c", progress=False)
    changed = make_tiny_bert(num_layers=3)
    with torch.no_grad():
        changed.encoder.layer[2].output.dense.weight.add_(1.0)
    FrozenCache(tmp_path / "c").check_model(changed)


def test_cache_reports_a_missing_folder(tmp_path):
    with pytest.raises(DataError, match="not a readable frozen-layer cache"):
        FrozenCache(tmp_path / "nothing")


def test_cache_reports_a_news_index_it_does_not_hold(plm, tmp_path):
    build_frozen_cache(plm, TITLES, 2, 8, tmp_path / "c", progress=False)
    with pytest.raises(DataError, match="news_index 21"):
        FrozenCache(tmp_path / "c").batch([1, 21])


def test_cache_batch_pads_to_the_longest_requested_news(plm, tmp_path):
    build_frozen_cache(plm, TITLES, 2, 8, tmp_path / "c", progress=False)
    batch = FrozenCache(tmp_path / "c").batch([3, 4])
    assert batch["hidden_states"].shape == (2, max(len(TITLES[3]), len(TITLES[4])), 32)
    assert batch["hidden_states"].dtype == torch.float32
    assert batch["attention_mask"].sum(1).tolist() == [len(TITLES[3]), len(TITLES[4])]
    assert batch["hidden_states"][~batch["attention_mask"].bool()].abs().sum() == 0


def test_cache_pickles_as_its_path_not_its_states(plm, tmp_path):
    import pickle

    build_frozen_cache(plm, TITLES, 2, 8, tmp_path / "c", progress=False)
    cache = FrozenCache(tmp_path / "c")
    blob = pickle.dumps(cache)  # what a spawned DataLoader worker receives
    assert len(blob) < 1000
    assert torch.equal(pickle.loads(blob).batch([3])["hidden_states"], cache.batch([3])["hidden_states"])
