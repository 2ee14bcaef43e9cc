"""HSK distillation (Liu et al., ACL 2021): the three compression axes, the loss, the teacher-free store."""

import math

import numpy as np
import pytest
import torch

from tinynewsrec.distill.hsk import (
    HSKSetting,
    HSKStore,
    cls_token_scores,
    compress,
    hidden_dims,
    hsk_loss,
    importance_keep,
    layer_pairs,
    parse_config_3d,
    select_tokens,
)
from tinynewsrec.errors import DataError, ParamError


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---------------------------------------------------------------- the 3-D string and the layers


def test_parse_config_3d_reads_layers_tokens_hidden_and_refuses_the_rest():
    assert parse_config_3d("1l_10t_0.1h") == (1, 10, 0.1)
    assert parse_config_3d("3l_128t_1h") == (3, 128, 1.0)
    for bad in ("3l_x", "0l_10t_0.1h", "1l_10t_1.5h", "1l_0t_0.1h", "1l_10t_0h", "", "1l10t0.1h"):
        with pytest.raises(ParamError, match="hsk.config"):
            parse_config_3d(bad)


def test_layer_pairs_follow_the_original_indexing_layers():
    assert layer_pairs(2, 6, None, "t_top") == [(0, 0), (1, 3), (2, 6)]
    assert layer_pairs(2, 6, 1, "t_top") == [(2, 6)]
    assert layer_pairs(2, 6, None, "t_top4") == [(s, round(s * 4 / 2)) for s in range(3)] == [(0, 0), (1, 2), (2, 4)]
    assert layer_pairs(4, 6, 2, "t_top") == [(3, round(3 * 1.5)), (4, 6)] == [(3, 4), (4, 6)]  # Python's round
    for keep in (0, 4):
        with pytest.raises(ParamError, match="hsk.keep_layers"):
            layer_pairs(2, 6, keep, "t_top")
    for scheme in ("t_top7", "t_top0", "top"):
        with pytest.raises(ParamError, match="hsk.layer_scheme"):
            layer_pairs(2, 6, None, scheme)


# ---------------------------------------------------------------- tokens


def test_left_first_takes_the_first_k_positions_and_marks_a_short_titles_extra_slots_invalid():
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    pos, valid = select_tokens("left_first", 3, mask)
    assert pos.tolist() == [[0, 1, 2], [0, 1, 0]]
    assert valid.tolist() == [[True, True, True], [True, True, False]]
    pos, valid = select_tokens("left_first", None, mask)  # all tokens
    assert valid.tolist() == mask.bool().tolist() and pos[0].tolist() == [0, 1, 2, 3, 4]


def test_attention_takes_the_top_cls_scores_of_real_tokens_and_no_sep_skips_102():
    att = torch.zeros(2, 2, 5, 5)  # [N, heads, T, T]; the CLS row, mean over heads, is what counts
    att[0, 0, 0] = torch.tensor([1.0, 9.0, 3.0, 7.0, 5.0])
    att[0, 1, 0] = torch.tensor([1.0, 9.0, 3.0, 7.0, 5.0])
    att[0, :, 1:] = 100.0  # other query rows are ignored
    att[1, 0, 0] = torch.tensor([2.0, 1.0, 8.0, 50.0, 60.0])  # padded positions score highest
    att[1, 1, 0] = torch.tensor([2.0, 1.0, 8.0, 50.0, 60.0])
    scores = cls_token_scores(att)
    assert scores[0].tolist() == [1.0, 9.0, 3.0, 7.0, 5.0]
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    ids = torch.tensor([[101, 7, 102, 8, 102], [101, 102, 9, 0, 0]])
    pos, valid = select_tokens("attention", 2, mask, scores, ids)
    assert pos.tolist() == [[1, 3], [0, 2]] and valid.all()  # sorted ascending, padding never taken
    pos, valid = select_tokens("attention", 4, mask, scores, ids)
    assert pos[1].tolist() == [0, 1, 2, 0] and valid[1].tolist() == [True, True, True, False]
    scores_sep = scores.clone()
    scores_sep[0, 2] = scores_sep[0, 4] = 1e3  # [SEP] scores highest
    pos, valid = select_tokens("attention_no_sep", 3, mask, scores_sep, ids)
    assert pos[0].tolist() == [0, 1, 3] and valid[0].all()
    assert pos[1].tolist() == [0, 2, 0] and valid[1].tolist() == [True, True, False]
    picked = ids.gather(1, pos)[valid]
    assert (picked != 102).all()


# ---------------------------------------------------------------- hidden dims


def test_hidden_dims_uniform_follows_the_original_and_rand_is_an_exact_seeded_count():
    assert hidden_dims("uniform_mask", 0.25, 8).tolist() == [round(i / 0.25) for i in range(int(8 * 0.25))] == [0, 4]
    a = hidden_dims("rand_mask", 0.3, 40, seed=1)
    assert len(a) == round(0.3 * 40) == len(set(a.tolist())) and a.tolist() == sorted(a.tolist())
    assert torch.equal(a, hidden_dims("rand_mask", 0.3, 40, seed=1))
    assert not torch.equal(a, hidden_dims("rand_mask", 0.3, 40, seed=2))
    assert hidden_dims("importance_mask_dynamic", 0.1, 8) is None
    assert hidden_dims("rand_mask", 1.0, 8).tolist() == list(range(8))
    with pytest.raises(ParamError, match="hsk.keep_hidden"):
        hidden_dims("rand_mask", 1.5, 8)


def test_importance_mask_keeps_exactly_the_largest_abs_entries_per_news_among_valid_tokens():
    values = torch.tensor([[[0.1, -5.0], [3.0, 0.2], [9.0, 9.0]],      # news 0: slot 2 invalid
                           [[1.0, 2.0], [-4.0, 0.5], [0.3, -0.6]]])   # news 1: all valid
    valid = torch.tensor([[True, True, False], [True, True, True]])
    keep = importance_keep(values, valid, 0.5)  # news 0: round(0.5*2*2) = 2, news 1: round(0.5*3*2) = 3
    assert keep[0].tolist() == [[False, True], [True, False], [False, False]]
    assert keep[1].tolist() == [[True, True], [True, False], [False, False]]  # |x| top 3: 4.0, 2.0, 1.0
    assert keep.sum().item() == 5


# ---------------------------------------------------------------- the loss


def _one_pair(positions, valid, values, keep=None):
    out = {"positions": torch.tensor([positions]), "valid": torch.tensor([valid]), "values": [values]}
    if keep is not None:
        out["keep"] = [keep]
    return out


def test_hsk_loss_is_the_mse_over_kept_entries_only():
    student = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]], requires_grad=True)  # [1, 3, 3]
    dims = torch.tensor([0, 2])
    teacher = torch.tensor([[[0.0, 3.0], [7.0, 100.0]]])  # at positions 2, 0; slot 1 invalid
    comp = _one_pair([[2, 0]], [[True, False]], teacher)
    loss = hsk_loss([student], comp, [(0, 5)], dims)
    assert loss.item() == pytest.approx(((7 - 0) ** 2 + (9 - 3) ** 2) / 2)
    loss.backward()
    assert student.grad is not None and student.grad[0, 0].abs().sum() == 0  # invalid slot: no gradient
    # equal at the kept entries, different elsewhere -> 0
    same = _one_pair([[2, 0]], [[True, True]], torch.tensor([[[7.0, 9.0], [1.0, 3.0]]]))
    assert hsk_loss([student.detach() + torch.tensor([0.0, 50.0, 0.0])], same, [(0, 5)], dims).item() == 0.0
    keep = torch.tensor([[[True, False, False], [False, False, True]]])
    dyn = _one_pair([[1, 2]], [[True, True]], torch.tensor([[[4.0, 0.0, 0.0], [0.0, 0.0, 9.0]]]), keep)
    assert hsk_loss([student.detach()], dyn, [(0, 5)]).item() == 0.0
    none = _one_pair([[0, 0]], [[False, False]], torch.zeros(1, 2, 2))
    z = hsk_loss([student], none, [(0, 5)], dims)
    assert z.item() == 0.0 and not torch.isnan(z)


# ---------------------------------------------------------------- the store


def _teacher(n=6, t=7, h=8, depth=4, heads=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    states = [torch.randn(n, t, h, generator=g) for _ in range(depth + 1)]
    attention = [torch.randn(n, heads, t, t, generator=g) for _ in range(depth)]
    lengths = torch.tensor([7, 3, 5, 2, 6, 4])[:n]
    mask = torch.arange(t).expand(n, t) < lengths[:, None]
    ids = torch.randint(1000, 2000, (n, t), generator=g)
    ids[:, 0] = 101
    ids[torch.arange(n), lengths - 1] = 102
    ids[~mask] = 0
    return states, attention, mask, ids


def sel(compressed: dict, rows) -> dict:
    """The compressed HSK of some of its news (rows)."""
    return {key: (v[:, rows] if key in ("positions", "valid") else [x[rows] for x in v])
            for key, v in compressed.items()}


@pytest.mark.parametrize("dynamic", [False, True])
def test_store_round_trip_sizes_and_refusals(tmp_path, dynamic):
    states, attention, mask, ids = _teacher()
    setting = HSKSetting(keep_layers=2, keep_tokens=4, token_scheme="attention_no_sep", keep_hidden=0.5,
                         hidden_scheme="importance_mask_dynamic" if dynamic else "rand_mask", seed=3)
    pairs = layer_pairs(2, 4, setting.keep_layers, setting.layer_scheme)
    dims = hidden_dims(setting.hidden_scheme, setting.keep_hidden, 8, setting.seed)
    width = 8 if dynamic else len(dims)
    comp = compress(states, pairs, setting, mask, attention, ids, dims)
    news = np.array([3, 10, 11, 20, 25, 40], dtype=np.int64)
    store = HSKStore.create(tmp_path / "hsk", news, pairs, 4, width, dynamic, dims=dims, setting=setting)
    store.write(news[3:], sel(comp, slice(3, 6)))  # second half first
    with pytest.raises(DataError):
        store.close()  # half the news not written yet
    store.write(news[:3], sel(comp, slice(0, 3)))
    store.close()
    back = HSKStore.open(tmp_path / "hsk")
    got = back.batch(news[[4, 0, 2]])
    want = sel(comp, [4, 0, 2])
    assert torch.equal(got["positions"], want["positions"]) and torch.equal(got["valid"], want["valid"])
    for a, b in zip(got["values"], want["values"]):
        assert a.dtype == torch.float32 and torch.allclose(a, b, atol=1e-2, rtol=1e-3)
    if dynamic:
        assert all(torch.equal(a, b) for a, b in zip(got["keep"], want["keep"]))
    per = HSKStore.bytes_per_news(pairs, 4, width, dynamic, 2, slots=back.slots if dynamic else None)
    assert back.nbytes == per * len(news) == back.meta["nbytes"]
    assert 0 < back.meta["bytes_on_disk"] - back.nbytes < 4 * 256  # npy headers only
    if not dynamic:
        assert per == 8 + len(pairs) * (2 * 4 + 2 * 4 * len(dims))
    with pytest.raises(DataError, match="12"):
        back.batch([3, 12])
    (tmp_path / "hsk" / "meta.json").unlink()
    with pytest.raises(DataError, match="incomplete"):
        HSKStore.open(tmp_path / "hsk")


@pytest.mark.parametrize("scheme", ["rand_mask", "importance_mask_dynamic"])
def test_loss_from_the_store_equals_the_online_loss(tmp_path, scheme):
    states, attention, mask, ids = _teacher()
    setting = HSKSetting(keep_layers=None, keep_tokens=3, token_scheme="attention", keep_hidden=0.25,
                         hidden_scheme=scheme, seed=7)
    pairs = layer_pairs(2, 4, None, "t_top")
    dims = hidden_dims(scheme, setting.keep_hidden, 8, setting.seed)
    dynamic = dims is None
    student = [torch.randn(6, 7, 8, requires_grad=True) for _ in range(3)]
    online = hsk_loss(student, compress(states, pairs, setting, mask, attention, ids, dims), pairs, dims)
    news = np.arange(100, 106, dtype=np.int64)
    store = HSKStore.create(tmp_path / "s", news, pairs, 3, 8 if dynamic else len(dims), dynamic, np.float32,
                            dims=dims, setting=setting)
    store.write(news, compress(states, pairs, setting, mask, attention, ids, dims))
    store.close()
    opened = HSKStore.open(tmp_path / "s")
    stored = hsk_loss(student, opened.batch(news), opened.pairs, opened.dims)
    assert online.item() > 0 and abs(stored.item() - online.item()) < 1e-6
    stored.backward()
    assert all(s.grad is not None for s in student)
