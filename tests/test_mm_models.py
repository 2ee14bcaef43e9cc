"""The multimodal news encoder (fusion), the two-tower model and the Transformer re-ranker, on tiny
random weights: masks per sample, candidates scored alone, save / load, the evaluator's path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tinynewsrec.errors import DataError
from tinynewsrec.evaluate import DevImpressions, score_impressions
from tinynewsrec.multimodal.fusion import MultimodalNewsEncoder, NewsEncoderConfig
from tinynewsrec.multimodal.params import FUSIONS, MODALITIES
from tinynewsrec.multimodal.reranker import Reranker, RerankerConfig
from tinynewsrec.multimodal.two_tower import MultimodalNR, MultimodalNRConfig

D, DT, DI = 16, 12, 8


def news_config(modality="text_image", fusion="hadamard") -> NewsEncoderConfig:
    return NewsEncoderConfig(modality=modality, fusion=fusion, text_dim=DT, image_dim=DI, dim=D)


def reranker(dropout: float = 0.0, history_len: int = 6, seed: int = 0, **kw) -> Reranker:
    torch.manual_seed(seed)
    config = RerankerConfig(news=news_config(), layers=2, heads=4, ffn=32, dropout=dropout,
                            history_len=history_len, **kw)
    return Reranker(config).eval()


def scores(model, history, mask, candidates):
    with torch.no_grad():
        return model.score(model.encode_user(history, mask), candidates)


def batch_of_three(seed: int = 0):
    """3 users with 4, 2 and 5 clicks (left-aligned and zero-padded, as the evaluator pads), 3 candidates each."""
    g = torch.Generator().manual_seed(seed)
    history = torch.randn(3, 5, D, generator=g)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    for row, n in enumerate((4, 2, 5)):
        mask[row, :n] = True
    history = history.masked_fill(~mask[..., None], 0.0)
    return history, mask, torch.randn(3, 3, D, generator=g)


# --- (a) no sample's padding reaches another sample ---------------------------------------


@pytest.mark.parametrize("train_mode", [False, True], ids=["eval", "train-dropout0"])
def test_changing_one_samples_history_leaves_the_others_scores_unchanged(train_mode):
    model = reranker(dropout=0.0).train(train_mode)
    history, mask, candidates = batch_of_three()
    before = scores(model, history, mask, candidates)
    # sample 1: other clicks, and a different length (1 click instead of 2)
    history2, mask2 = history.clone(), mask.clone()
    history2[1] = torch.randn(5, D)
    mask2[1] = False
    mask2[1, 0] = True
    after = scores(model, history2, mask2, candidates)
    assert not torch.allclose(before[1], after[1], atol=1e-4)  # sample 1 did change
    assert torch.allclose(before[[0, 2]], after[[0, 2]], atol=1e-6)


def test_the_last_samples_mask_is_not_the_batchs():
    """The seed code's bug: the LAST sample's padding mask for the whole batch. Sample 2 (the last
    and the longest) loses clicks: the batch's width and its mask change, the others' scores do not."""
    model = reranker()
    history, mask, candidates = batch_of_three()
    before = scores(model, history, mask, candidates)
    mask2 = mask.clone()
    mask2[2, 1:] = False
    after = scores(model, history, mask2, candidates)
    assert torch.allclose(before[[0, 1]], after[[0, 1]], atol=1e-6)


# --- (b) a candidate is scored with the history alone ------------------------------------


def test_a_candidates_score_does_not_depend_on_the_other_candidates():
    model = reranker()
    history, mask, candidates = batch_of_three()
    before = scores(model, history, mask, candidates)
    changed = candidates.clone()
    changed[0, 1:] = torch.randn(2, D)  # the other candidates of row 0 replaced
    permuted = candidates[:, [0, 2, 1]]  # ... or reordered
    assert torch.allclose(scores(model, history, mask, changed)[0, 0], before[0, 0], atol=1e-6)
    assert torch.allclose(scores(model, history, mask, permuted), before[:, [0, 2, 1]], atol=1e-6)


def test_chunked_scoring_equals_one_pass():
    one = reranker(chunk=1024)
    small = reranker(chunk=2)
    small.load_state_dict(one.state_dict())
    history, mask, candidates = batch_of_three()
    assert torch.allclose(scores(one, history, mask, candidates), scores(small, history, mask, candidates), atol=1e-6)


# --- (c) padded history slots are never read ---------------------------------------------


def test_the_content_of_padded_history_slots_has_no_effect():
    model = reranker()
    history, mask, candidates = batch_of_three()
    before = scores(model, history, mask, candidates)
    noisy = torch.where(mask[..., None], history, torch.randn_like(history) * 100)
    noisy[0, 4, 0] = float("nan")  # not even a NaN in a padded slot gets through
    assert torch.allclose(scores(model, noisy, mask, candidates), before, atol=1e-6)


def test_where_the_padding_sits_does_not_matter():
    """Left-aligned (the evaluator's) or right-aligned histories give the same scores."""
    model = reranker()
    history, mask, candidates = batch_of_three()
    right = torch.zeros_like(history)
    right_mask = torch.zeros_like(mask)
    for row in range(3):
        n = int(mask[row].sum())
        right[row, 5 - n :] = history[row, :n]
        right_mask[row, 5 - n :] = True
    assert torch.allclose(scores(model, right, right_mask, candidates), scores(model, history, mask, candidates),
                          atol=1e-6)


def test_only_the_last_history_len_clicks_count_and_an_empty_history_is_scored():
    model = reranker(history_len=3)
    history, mask, candidates = batch_of_three()
    older = history.clone()
    older[2, :2] = torch.randn(2, D)  # sample 2 has 5 clicks: its 2 oldest fall outside history_len 3
    assert torch.allclose(scores(model, older, mask, candidates), scores(model, history, mask, candidates), atol=1e-6)
    empty = scores(model, history, torch.zeros_like(mask), candidates)
    assert torch.isfinite(empty).all() and empty.shape == (3, 3)


# --- (d) fusion ---------------------------------------------------------------------------


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("fusion", FUSIONS)
def test_fusion_output_shape(modality, fusion):
    encoder = MultimodalNewsEncoder(news_config(modality, fusion))
    out = encoder({"text": torch.randn(5, DT), "image": torch.randn(5, DI)})
    assert out.shape == (5, D) and torch.isfinite(out).all()


def test_each_fusion_is_its_formula():
    news = {"text": torch.randn(4, DT), "image": torch.randn(4, DI)}
    encoders = {f: MultimodalNewsEncoder(news_config("text_image", f)) for f in FUSIONS}
    base = encoders["hadamard"]
    for e in encoders.values():  # the same projections everywhere
        e.text_proj.load_state_dict(base.text_proj.state_dict())
        if e.image_proj is not None:
            e.image_proj.load_state_dict(base.image_proj.state_dict())
    t, i = base.text(news), base.image(news)
    assert torch.allclose(encoders["hadamard"](news), t * i)
    assert torch.allclose(encoders["add"](news), t + i)
    assert torch.allclose(encoders["none"](news), t)
    assert torch.allclose(encoders["concat"](news), encoders["concat"].mix(torch.cat([t, i], -1)))
    g = torch.sigmoid(encoders["gated"].mix(torch.cat([t, i], -1)))
    assert torch.allclose(encoders["gated"](news), g * t + (1 - g) * i)


def test_a_single_modality_reads_only_its_own_vectors():
    text_only = MultimodalNewsEncoder(news_config("text", "gated"))
    image_only = MultimodalNewsEncoder(news_config("image", "gated"))
    assert text_only.config.fusion == "none" and image_only.config.fusion == "none"
    assert text_only.image_proj is None and image_only.text_proj is None
    assert text_only({"text": torch.randn(2, DT)}).shape == (2, D)
    assert image_only({"image": torch.randn(2, DI)}).shape == (2, D)


@pytest.mark.parametrize("modality", ["image", "text_image"])
def test_a_news_without_a_picture_gets_the_missing_image_vector(modality):
    encoder = MultimodalNewsEncoder(news_config(modality, "add"))
    with torch.no_grad():
        encoder.missing_image.copy_(torch.randn(D))
    news = {"text": torch.randn(3, DT), "image": torch.randn(3, DI), "image_present": torch.tensor([True, False, True])}
    image = encoder.image(news)
    assert torch.equal(image[1], encoder.missing_image)
    assert torch.allclose(image[[0, 2]], encoder.image_proj(news["image"][[0, 2]]))
    # the picture-less news' output ignores its (zero) image row entirely
    other = dict(news, image=news["image"].clone())
    other["image"][1] = torch.randn(DI)
    assert torch.equal(encoder(other)[1], encoder(news)[1])


# --- (e) save / load ---------------------------------------------------------------------


def test_two_tower_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = MultimodalNR(MultimodalNRConfig(news=news_config("text_image", "gated"), user_query_dim=8)).eval()
    model.save_pretrained(tmp_path / "m", row="two_tower-text_image")
    meta = json.loads((tmp_path / "m/config.json").read_text())
    assert meta["model"] == "multimodal_nr" and meta["row"] == "two_tower-text_image"
    loaded = MultimodalNR.from_pretrained(tmp_path / "m").eval()
    news = {"text": torch.randn(6, DT), "image": torch.randn(6, DI),
            "image_present": torch.tensor([1, 0, 1, 1, 0, 1]).bool()}
    with torch.no_grad():
        a, b = model.encode_news(news), loaded.encode_news(news)
        mask = torch.tensor([[True, True, False], [False, False, False]])
        hist, cand = a[torch.tensor([[0, 1, 0], [0, 0, 0]])], torch.tensor([[2, 3], [4, 5]])
        assert torch.equal(a, b)
        assert torch.equal(model.score(model.encode_user(hist, mask), a[cand]),
                           loaded.score(loaded.encode_user(hist, mask), b[cand]))


def test_reranker_save_load_round_trip(tmp_path):
    model = reranker()
    model.save_pretrained(tmp_path / "r")
    assert json.loads((tmp_path / "r/config.json").read_text())["model"] == "reranker"
    loaded = Reranker.from_pretrained(tmp_path / "r").eval()
    assert loaded.config == model.config
    history, mask, candidates = batch_of_three()
    assert torch.equal(scores(model, history, mask, candidates), scores(loaded, history, mask, candidates))


def test_a_missing_or_corrupt_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match="no config.json"):
        Reranker.from_pretrained(tmp_path / "nothing")
    reranker().save_pretrained(tmp_path / "r")
    with pytest.raises(DataError, match="expected 'multimodal_nr'"):
        MultimodalNR.from_pretrained(tmp_path / "r")
    (tmp_path / "r/model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DataError) as e:
        Reranker.from_pretrained(tmp_path / "r")
    assert "\n" not in str(e.value)
    (tmp_path / "r/model.safetensors").unlink()
    with pytest.raises(DataError, match="missing"):
        Reranker.from_pretrained(tmp_path / "r")


# --- (f) the evaluator's generic path ------------------------------------------------------


def hand_made_dev() -> DevImpressions:
    """3 impressions: 2 clicks and 3 candidates; no click and 2 candidates; 4 clicks and 4 candidates."""
    history = [[1, 2], [], [3, 4, 5, 6]]
    candidates = [[7, 8, 9], [2, 10], [1, 11, 12, 8]]
    labels = [[1, 0, 0], [0, 1], [0, 0, 1, 0]]
    off = lambda lists: np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)  # noqa: E731
    flat = lambda lists, dtype: np.array([v for x in lists for v in x], dtype=dtype)  # noqa: E731
    return DevImpressions(impression_ids=np.array([10, 11, 12], dtype=np.int64),
                          candidates=flat(candidates, np.int32), labels=flat(labels, np.int8),
                          offsets=off(candidates), history=flat(history, np.int32), history_offsets=off(history))


@pytest.mark.parametrize("kind", ["two_tower", "reranker"])
@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_score_impressions_equals_scoring_each_impression_directly(kind, batch_size):
    torch.manual_seed(0)
    model = reranker() if kind == "reranker" else MultimodalNR(MultimodalNRConfig(news=news_config())).eval()
    news_vecs = torch.randn(13, D)
    news_vecs[0] = 0
    dev = hand_made_dev()
    flat = score_impressions(model, news_vecs, dev, batch_size=batch_size, progress=False, fast=True)
    expected = []
    for i in range(len(dev)):
        h, c, _ = dev.impression(i)
        h_t = torch.as_tensor(h.astype(np.int64)).reshape(1, -1)
        with torch.no_grad():
            users = model.encode_user(news_vecs[h_t], torch.ones_like(h_t, dtype=torch.bool))
            expected.append(model.score(users, news_vecs[torch.as_tensor(c.astype(np.int64))][None])[0])
    assert np.allclose(flat, torch.cat(expected).numpy(), atol=1e-5)


# --- (h) end to end inside a PLM-NR --------------------------------------------------------


def test_a_plmnr_news_encoder_computes_the_text_vectors(tmp_path):
    from tinynewsrec.models.plm import freeze_plm, make_tiny_bert
    from tinynewsrec.models.plmnr import PLMNR, PLMNRConfig

    plm = make_tiny_bert(num_layers=2, hidden=32, seed=0)
    freeze_plm(plm, 1)
    plmnr = PLMNR(plm, PLMNRConfig(news_dim=DT, news_query_dim=8, user_query_dim=8))
    torch.manual_seed(0)
    model = MultimodalNR(MultimodalNRConfig(news=news_config("text_image", "concat")),
                         text_encoder=plmnr.news_encoder).eval()
    ids = torch.tensor([[101, 2000, 2001, 102, 0], [101, 3000, 102, 0, 0], [101, 4000, 4001, 4002, 102]])
    news = {"input_ids": ids, "attention_mask": (ids > 0).long(), "image": torch.randn(3, DI),
            "image_present": torch.tensor([True, False, True])}
    with torch.no_grad():
        out = model.encode_news(news)
        tokens = {"input_ids": ids, "attention_mask": news["attention_mask"]}
        expected = model.news_encoder.text_proj(plmnr.news_encoder(tokens))
    assert out.shape == (3, D)
    assert torch.allclose(model.news_encoder.text(news), expected, atol=1e-6)
    # the folder keeps the PLM-NR's weights and asks for the module when loaded
    model.save_pretrained(tmp_path / "m")
    with pytest.raises(DataError, match="text_encoder="):
        MultimodalNR.from_pretrained(tmp_path / "m")
    other = PLMNR(make_tiny_bert(num_layers=2, hidden=32, seed=1), PLMNRConfig(news_dim=DT, news_query_dim=8,
                                                                              user_query_dim=8))
    loaded = MultimodalNR.from_pretrained(tmp_path / "m", text_encoder=other.news_encoder).eval()
    with torch.no_grad():
        assert torch.allclose(loaded.encode_news(news), out, atol=1e-6)


def test_the_evaluator_fed_known_scores_reproduces_hand_computed_metrics():
    # DL_News_Rec's evaluator fed np.argsort(scores) where ranks were expected; here a row's scores
    # become prediction.txt's ranks (1 = best) and the metrics are computed from those ranks
    import math

    from tinynewsrec.evaluate import rank_and_score

    dev = DevImpressions(np.array([1, 2]), np.array([5, 6, 7, 8, 9, 10, 11], np.int32),
                         np.array([0, 1, 0, 1, 0, 0, 1], np.int8), np.array([0, 4, 7]),
                         np.zeros(0, np.int32), np.array([0, 0, 0]))
    scores = np.array([0.2, 0.9, 0.4, 0.1, 0.5, 0.3, 0.8])
    ranking = rank_and_score(scores, dev)
    assert ranking.ranks.tolist() == [3, 1, 2, 4, 2, 3, 1]
    ndcg1 = (1 + 1 / math.log2(5)) / (1 + 1 / math.log2(3))  # clicks at ranks 1 and 4
    assert ranking.metrics["auc"] == pytest.approx((0.5 + 1.0) / 2, abs=1e-6)
    assert ranking.metrics["mrr"] == pytest.approx(((1 + 1 / 4) / 2 + 1.0) / 2, abs=1e-6)
    assert ranking.metrics["ndcg5"] == pytest.approx((ndcg1 + 1.0) / 2, abs=1e-6)
    assert ranking.metrics["ndcg10"] == pytest.approx((ndcg1 + 1.0) / 2, abs=1e-6)
