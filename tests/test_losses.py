"""Distillation losses and layer maps: formulas, masks, weights, temperature, training steps."""

import math

import pytest
import torch
from torch import nn

from tinynewsrec.distill.layer_map import layer_map
from tinynewsrec.distill.losses import (
    attention_mse,
    click_ce,
    hidden_mse,
    last_layers_kd_loss,
    layer_param_groups,
    momentum_distill_grads,
    newsbert_loss,
    soft_ce,
    stage1_loss,
    stage2_loss,
    teacher_weights,
    weighted_embedding_mse,
    weighted_teacher_scores,
)
from tinynewsrec.errors import ParamError


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---------------------------------------------------------------- click CE


def test_click_ce_matches_log_softmax_of_clicked_index_0():
    scores = torch.randn(5, 5)
    expected = -torch.log_softmax(scores, dim=-1)[:, 0].mean()
    assert torch.allclose(click_ce(scores), expected)


def test_click_ce_accepts_a_target_tensor():
    scores = torch.randn(4, 5)
    y = torch.tensor([0, 3, 1, 4])
    expected = -torch.log_softmax(scores, dim=-1)[torch.arange(4), y].mean()
    assert torch.allclose(click_ce(scores, y), expected)


# ---------------------------------------------------------------- teacher weights


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_teacher_weights_sum_to_one_per_sample(m):
    w = teacher_weights(torch.randn(m, 6, 5) * 3)
    assert w.shape == (m, 6)
    assert torch.allclose(w.sum(dim=0), torch.ones(6))
    assert (w > 0).all()


@pytest.mark.parametrize("m", [2, 3, 4])
def test_lowest_loss_teacher_gets_the_largest_weight(m):
    scores = torch.randn(m, 8, 5) * 2
    losses = torch.stack([click_ce(scores[i, b : b + 1]) for i in range(m) for b in range(8)]).reshape(m, 8)
    w = teacher_weights(scores)
    assert torch.equal(w.argmax(dim=0), losses.argmin(dim=0))
    # and the weights are softmax(-loss) exactly
    assert torch.allclose(w, torch.softmax(-losses, dim=0), atol=1e-6)


def test_teacher_weights_follow_an_explicit_target():
    # teacher 0 is sure of candidate 0, teacher 1 of candidate 2
    scores = torch.zeros(2, 1, 3)
    scores[0, 0, 0] = 5.0
    scores[1, 0, 2] = 5.0
    assert teacher_weights(scores, 0)[:, 0].argmax() == 0
    assert teacher_weights(scores, torch.tensor([2]))[:, 0].argmax() == 1


def test_teacher_weights_carry_no_gradient():
    scores = torch.randn(3, 4, 5, requires_grad=True)
    assert not teacher_weights(scores).requires_grad


def test_weighted_teacher_scores_is_the_weighted_sum():
    scores = torch.randn(3, 4, 5)
    w = teacher_weights(scores)
    expected = w[0, :, None] * scores[0] + w[1, :, None] * scores[1] + w[2, :, None] * scores[2]
    assert torch.allclose(weighted_teacher_scores(scores, w), expected)
    # a list of M tensors works the same
    assert torch.allclose(weighted_teacher_scores(list(scores), w), expected)


# ---------------------------------------------------------------- soft CE and temperature


def _entropy(scores, tau):
    p = torch.softmax(scores / tau, dim=-1)
    return -(p * p.log()).sum(dim=-1).mean()


@pytest.mark.parametrize("tau", [0.5, 1.0, 3.0])
def test_soft_ce_of_identical_scores_is_the_entropy(tau):
    s = torch.randn(6, 5) * 2
    assert torch.allclose(soft_ce(s, s.clone(), tau), _entropy(s, tau), atol=1e-6)


def test_soft_ce_is_not_scaled_by_tau_squared():
    t, s = torch.randn(4, 5), torch.randn(4, 5)
    p = torch.softmax(t / 2.0, dim=-1)
    expected = -(p * torch.log_softmax(s / 2.0, dim=-1)).sum(-1).mean()
    assert torch.allclose(soft_ce(t, s, tau=2.0), expected)


def test_higher_temperature_flattens_the_target():
    s = torch.randn(6, 5) * 3
    entropies = [soft_ce(s, s, tau).item() for tau in (0.5, 1.0, 2.0, 8.0)]
    assert entropies == sorted(entropies)
    assert entropies[-1] < math.log(5) + 1e-6
    assert math.log(5) - entropies[-1] < 0.05


def test_soft_ce_gradient_is_zero_when_student_equals_teacher():
    t = torch.randn(4, 5)
    s = t.clone().requires_grad_(True)
    soft_ce(t, s, tau=2.0).backward()
    assert s.grad.abs().max() < 1e-6


def test_soft_ce_is_smallest_at_the_teacher():
    t = torch.randn(4, 5)
    at_teacher = soft_ce(t, t)
    for _ in range(5):
        assert soft_ce(t, t + torch.randn(4, 5)) > at_teacher


def test_soft_ce_does_not_train_the_teacher():
    t = torch.randn(4, 5, requires_grad=True)
    s = torch.randn(4, 5, requires_grad=True)
    soft_ce(t, s).backward()
    assert t.grad is None and s.grad is not None


def test_soft_ce_rejects_a_non_positive_temperature():
    with pytest.raises(ParamError, match="tau"):
        soft_ce(torch.randn(2, 3), torch.randn(2, 3), tau=0.0)


# ---------------------------------------------------------------- weighted embedding MSE


def test_weighted_embedding_mse_formula_with_projections():
    m, b, d_s, d_t = 3, 4, 6, 10
    student = torch.randn(b, d_s)
    teachers = torch.randn(m, b, d_t)
    proj = [nn.Linear(d_t, d_s) for _ in range(m)]
    w = torch.softmax(torch.randn(m, b), dim=0)
    per = torch.stack([((student - proj[i](teachers[i])) ** 2).mean(-1) for i in range(m)])
    expected = (w * per).sum(0).mean()
    assert torch.allclose(weighted_embedding_mse(student, teachers, proj, w), expected, atol=1e-6)


def test_masked_history_slots_do_not_change_the_mse():
    b, h, d = 3, 5, 4
    student = torch.randn(b, h, d)
    teachers = torch.randn(2, b, h, d)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    w = torch.full((2, b), 0.5)
    before = weighted_embedding_mse(student, teachers, None, w, mask)
    student2, teachers2 = student.clone(), teachers.clone()
    student2[~mask] = 1e6
    teachers2[:, ~mask] = float("nan")
    after = weighted_embedding_mse(student2, teachers2, None, w, mask)
    assert torch.isfinite(after)
    assert torch.allclose(before, after)


def test_masked_mse_is_a_mean_over_real_slots_per_sample():
    student = torch.zeros(2, 3, 1)
    teacher = torch.zeros(1, 2, 3, 1)
    teacher[0, 0, 0] = 2.0  # sample 0: real slots 0, 1 -> errors 4, 0 -> 2
    teacher[0, 1, 2] = 3.0  # sample 1: real slots 0..2 -> errors 0, 0, 9 -> 3
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    loss = weighted_embedding_mse(student, teacher, None, torch.ones(1, 2), mask)
    assert loss.item() == pytest.approx((2.0 + 3.0) / 2)


def test_a_sample_with_no_real_slot_is_left_out_of_the_mean():
    student = torch.zeros(2, 2, 1)
    teacher = torch.ones(1, 2, 2, 1)
    mask = torch.tensor([[1, 1], [0, 0]])
    loss = weighted_embedding_mse(student, teacher, None, torch.ones(1, 2), mask)
    assert loss.item() == pytest.approx(1.0)


def test_padding_gets_no_gradient():
    student = torch.randn(2, 3, 4, requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    weighted_embedding_mse(student, torch.randn(1, 2, 3, 4), None, torch.ones(1, 2), mask).backward()
    assert (student.grad[~mask.bool()] == 0).all()
    assert (student.grad[mask.bool()] != 0).any()


# ---------------------------------------------------------------- stage 1 and stage 2


def _stage1_batch(m, b=4, c=5, d_s=8, d_t=12):
    title_in, body_in = torch.randn(b, c, 16), torch.randn(b, 16)
    t_titles, t_bodies = torch.randn(m, b, c, d_t), torch.randn(m, b, d_t)
    t_titles[:, :, 0] += t_bodies  # teachers tend to match a body with its own title
    return title_in, body_in, t_titles, t_bodies


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_stage1_loss_is_finite_and_decreases(m):
    d_s, d_t = 8, 12
    title_in, body_in, t_titles, t_bodies = _stage1_batch(m, d_s=d_s, d_t=d_t)
    encoder = nn.Linear(16, d_s)
    proj = nn.ModuleList(nn.Linear(d_t, d_s) for _ in range(m))
    opt = torch.optim.Adam([*encoder.parameters(), *proj.parameters()], lr=0.02)
    totals = []
    for _ in range(15):
        s_title, s_body = encoder(title_in), encoder(body_in)
        scores = (s_title * s_body.unsqueeze(1)).sum(-1)
        loss, parts = stage1_loss(scores, s_title, s_body, t_titles, t_bodies, proj)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(parts["total"])
    assert set(parts) >= {"ce", "soft_ce", "emb_mse", "total"}
    assert all(isinstance(v, float) for v in parts.values())
    assert sum(parts[f"weight_teacher_{i}"] for i in range(m)) == pytest.approx(1.0)
    assert totals[-1] < 0.8 * totals[0]


def test_stage1_loss_is_the_sum_of_its_parts():
    title_in, body_in, t_titles, t_bodies = _stage1_batch(2, d_s=12, d_t=12)
    s_title, s_body = title_in[..., :12], body_in[..., :12]
    scores = (s_title * s_body.unsqueeze(1)).sum(-1)
    loss, parts = stage1_loss(scores, s_title, s_body, t_titles, t_bodies, None)
    t_scores = (t_titles * t_bodies.unsqueeze(2)).sum(-1)
    w = teacher_weights(t_scores)
    mse = torch.stack(
        [((s_title - t_titles[i]) ** 2).mean((-1, -2)) + ((s_body - t_bodies[i]) ** 2).mean(-1) for i in range(2)]
    )
    expected = click_ce(scores) + soft_ce(weighted_teacher_scores(t_scores, w), scores) + (w * mse).sum(0).mean()
    assert torch.allclose(loss, expected, rtol=1e-5)
    assert parts["total"] == pytest.approx(parts["ce"] + parts["soft_ce"] + parts["emb_mse"], rel=1e-5)


def _stage2_batch(m, b=4, h=6, c=5, d_t=12):
    t_hist, t_cand = torch.randn(m, b, h, d_t), torch.randn(m, b, c, d_t)
    t_user = t_hist.mean(2)
    t_cand[:, :, 0] += t_user
    hist_mask = torch.ones(b, h, dtype=torch.bool)
    hist_mask[0, 3:] = False
    hist_mask[1, 1:] = False
    return t_hist, t_cand, t_user, hist_mask


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_stage2_loss_is_finite_and_decreases(m):
    b, h, c, d_s, d_t = 4, 6, 5, 8, 12
    t_hist, t_cand, t_user, hist_mask = _stage2_batch(m, b, h, c, d_t)
    hist_in, cand_in = torch.randn(b, h, 16), torch.randn(b, c, 16)
    encoder = nn.Linear(16, d_s)
    proj = nn.ModuleList(nn.Linear(d_t, d_s) for _ in range(m))
    opt = torch.optim.Adam([*encoder.parameters(), *proj.parameters()], lr=0.02)
    totals = []
    for _ in range(15):
        s_hist, s_cand = encoder(hist_in), encoder(cand_in)
        s_user = (s_hist * hist_mask.unsqueeze(-1)).sum(1) / hist_mask.sum(1, keepdim=True)
        scores = (s_cand * s_user.unsqueeze(1)).sum(-1)
        loss, parts = stage2_loss(scores, s_hist, s_cand, s_user, t_hist, t_cand, t_user, proj, hist_mask)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(parts["total"])
    assert set(parts) >= {"ce", "soft_ce", "news_mse", "user_mse", "total"}
    assert totals[-1] < 0.8 * totals[0]


def test_stage2_loss_weighs_the_click_ce_by_ce_weight():
    t_hist, t_cand, t_user, hist_mask = _stage2_batch(2, d_t=8)
    s_hist, s_cand, s_user = torch.randn(4, 6, 8), torch.randn(4, 5, 8), torch.randn(4, 8)
    scores = (s_cand * s_user.unsqueeze(1)).sum(-1)
    args = (scores, s_hist, s_cand, s_user, t_hist, t_cand, t_user, None, hist_mask)
    _, p = stage2_loss(*args)
    _, p1 = stage2_loss(*args, ce_weight=1.0)
    assert p["total"] == pytest.approx(p["soft_ce"] + 0.2 * p["ce"] + p["news_mse"] + p["user_mse"], rel=1e-5)
    assert p1["total"] - p["total"] == pytest.approx(0.8 * p["ce"], rel=1e-4)


def test_stage2_loss_ignores_padded_history_slots():
    t_hist, t_cand, t_user, hist_mask = _stage2_batch(2, d_t=8)
    s_hist, s_cand, s_user = torch.randn(4, 6, 8), torch.randn(4, 5, 8), torch.randn(4, 8)
    scores = (s_cand * s_user.unsqueeze(1)).sum(-1)
    _, before = stage2_loss(scores, s_hist, s_cand, s_user, t_hist, t_cand, t_user, None, hist_mask)
    s_hist[~hist_mask] = 50.0
    t_hist[:, ~hist_mask] = -50.0
    _, after = stage2_loss(scores, s_hist, s_cand, s_user, t_hist, t_cand, t_user, None, hist_mask)
    assert after["news_mse"] == pytest.approx(before["news_mse"], rel=1e-6)


def test_stage_losses_give_projections_but_not_teachers_a_gradient():
    t_hist, t_cand, t_user, hist_mask = _stage2_batch(2, d_t=8)
    t_user.requires_grad_(True)
    proj = nn.ModuleList(nn.Linear(8, 8) for _ in range(2))
    s_hist, s_cand, s_user = torch.randn(4, 6, 8), torch.randn(4, 5, 8), torch.randn(4, 8)
    scores = (s_cand * s_user.unsqueeze(1)).sum(-1)
    loss, _ = stage2_loss(scores, s_hist, s_cand, s_user, t_hist, t_cand, t_user, proj, hist_mask)
    loss.backward()
    assert t_user.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in proj.parameters())


# ---------------------------------------------------------------- layer maps


@pytest.mark.parametrize(
    "t, s, expected",
    [
        (6, 4, [(1, 2), (2, 3), (3, 5), (4, 6)]),
        (12, 5, [(1, 2), (2, 5), (3, 7), (4, 10), (5, 12)]),
        (12, 4, [(1, 3), (2, 6), (3, 9), (4, 12)]),
        (6, 6, [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6)]),
        (6, 1, [(1, 6)]),
        (6, 2, [(1, 3), (2, 6)]),
    ],
)
def test_uniform_layer_map(t, s, expected):
    assert layer_map(t, s) == expected


def test_uniform_layer_map_invariants_for_all_depths_up_to_24():
    for t in range(1, 25):
        for s in range(1, t + 1):
            pairs = layer_map(t, s)
            assert [j for j, _ in pairs] == list(range(1, s + 1)), (t, s)
            teachers = [tl for _, tl in pairs]
            assert teachers[-1] == t, (t, s)
            assert all(1 <= a < b for a, b in zip(teachers, teachers[1:])), (t, s)
            assert all(abs(tl - j * t / s) <= 0.5 for j, tl in pairs), (t, s)


def test_layer_map_last_k_keeps_the_last_student_layers():
    assert layer_map(12, 4, k=2) == [(3, 9), (4, 12)]
    assert layer_map(6, 4, k=1) == [(4, 6)]
    assert layer_map(6, 2, k=5) == [(1, 3), (2, 6)]


def test_layer_map_last_strategy_matches_last_k_to_last_k():
    assert layer_map(12, 4, k=2, strategy="last") == [(3, 11), (4, 12)]
    assert layer_map(6, 2, k=2, strategy="last") == [(1, 5), (2, 6)]
    assert layer_map(6, 3, strategy="last") == [(1, 4), (2, 5), (3, 6)]


@pytest.mark.parametrize(
    "args, match",
    [((4, 6), "at most 4"), ((0, 1), "teacher_layers"), ((6, 2, 0), "k"), ((6, 2, None, "skip"), "strategy")],
)
def test_layer_map_rejects_bad_depths(args, match):
    with pytest.raises(ParamError, match=match):
        layer_map(*args)


# ---------------------------------------------------------------- last-k layer KD


def test_hidden_mse_uses_the_mapped_layers_and_ignores_padding_tokens():
    student = [torch.randn(3, 4, 8) for _ in range(3)]  # embeddings + 2 layers
    teacher = [torch.randn(3, 4, 8) for _ in range(5)]  # embeddings + 4 layers
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]])
    pairs = [(1, 2), (2, 4)]
    loss = hidden_mse(student, teacher, pairs, None, mask)
    m = mask.bool()
    expected = sum(
        torch.stack([((student[j][n][m[n]] - teacher[t][n][m[n]]) ** 2).mean() for n in range(3)]).mean()
        for j, t in pairs
    )
    assert torch.allclose(loss, expected, atol=1e-6)
    student[2][~m] = 1e4
    assert torch.allclose(hidden_mse(student, teacher, pairs, None, mask), expected, atol=1e-6)


def test_layer_losses_read_only_the_mapped_layers():
    """Layers outside the map may be None (a teacher run from a frozen-layer cache has no
    lower states; a student computes attention scores only where they are matched)."""
    student = [torch.randn(2, 3, 4) for _ in range(3)]
    teacher = [None, None, torch.randn(2, 3, 4), torch.randn(2, 3, 4)]
    pairs = [(2, 3)]
    assert torch.allclose(hidden_mse(student, teacher, pairs), ((student[2] - teacher[3]) ** 2).mean())
    s_attn, t_attn = [None, torch.randn(2, 1, 3, 3)], [None, None, torch.randn(2, 1, 3, 3)]
    assert torch.allclose(attention_mse(s_attn, t_attn, pairs), ((s_attn[1] - t_attn[2]) ** 2).mean())


def test_hidden_mse_projects_the_student_into_the_teacher_space():
    student = [torch.randn(2, 3, 4) for _ in range(2)]
    teacher = [torch.randn(2, 3, 6) for _ in range(3)]
    w_h = nn.Linear(4, 6)
    loss = hidden_mse(student, teacher, [(1, 2)], w_h)
    assert torch.allclose(loss, ((w_h(student[1]) - teacher[2]) ** 2).mean(), atol=1e-6)


def _attention_scores(n=2, heads=2, length=5, real=(3, 5), pad_value=-1e4):
    scores = torch.randn(n, heads, length, length)
    mask = torch.zeros(n, length, dtype=torch.bool)
    for i, r in enumerate(real):
        mask[i, :r] = True
    return scores + torch.where(mask, 0.0, pad_value)[:, None, None, :], mask


@pytest.mark.parametrize("pad_value", [-1e4, torch.finfo(torch.float32).min, float("-inf")])
def test_attention_mse_excludes_additively_masked_keys(pad_value):
    s, mask = _attention_scores(pad_value=pad_value)
    t, _ = _attention_scores(pad_value=pad_value)
    s.requires_grad_(True)
    pairs = mask[:, None, :, None] & mask[:, None, None, :]
    expected = torch.stack([((s[n] - t[n])[pairs[n].expand(2, 5, 5)] ** 2).mean() for n in range(2)]).mean()
    with_mask = attention_mse([s], [t], [(1, 1)], mask)
    assert torch.isfinite(with_mask)
    assert torch.allclose(with_mask, expected.detach(), atol=1e-5)
    with_mask.backward()
    assert torch.isfinite(s.grad).all()


def test_attention_mse_without_mask_drops_large_negative_scores():
    s, mask = _attention_scores()
    t, _ = _attention_scores()
    inferred = attention_mse([s], [t], [(1, 1)], None)
    assert inferred.item() < 100.0  # a single -1e4 difference would be ~1e8
    # it keeps the padded query rows (their keys are real) that the explicit mask drops
    assert inferred.item() != pytest.approx(attention_mse([s], [t], [(1, 1)], mask).item())
    key_only = mask[:, None, None, :].expand(2, 2, 5, 5)
    expected = torch.stack([((s[n] - t[n])[key_only[n]] ** 2).mean() for n in range(2)]).mean()
    assert torch.allclose(inferred, expected, atol=1e-5)


def test_last_layers_kd_loss_composes_hidden_attention_kd_and_0_1_ce():
    b, c, n, length, d = 2, 3, 4, 5, 8
    s_scores, t_scores = torch.randn(b, c), torch.randn(b, c)
    s_hidden = [torch.randn(n, length, d) for _ in range(3)]
    t_hidden = [torch.randn(n, length, d) for _ in range(5)]
    s_attn = [_attention_scores(n, 2, length, (5, 3, 2, 4))[0] for _ in range(2)]
    mask = _attention_scores(n, 2, length, (5, 3, 2, 4))[1]
    t_attn = [_attention_scores(n, 2, length, (5, 3, 2, 4))[0] for _ in range(4)]
    pairs = layer_map(4, 2)
    total, parts = last_layers_kd_loss(s_scores, t_scores, s_hidden, t_hidden, s_attn, t_attn, pairs, mask)
    expected = (
        hidden_mse(s_hidden, t_hidden, pairs, None, mask)
        + attention_mse(s_attn, t_attn, pairs, mask)
        + soft_ce(t_scores, s_scores)
        + 0.1 * click_ce(s_scores)
    )
    assert torch.allclose(total, expected)
    assert parts["attention_mse"] < 100.0
    assert parts["total"] == pytest.approx(expected.item(), rel=1e-6)


# ---------------------------------------------------------------- NewsBERT


def test_newsbert_loss_trains_the_teacher_by_its_click_loss_only():
    b, c, d = 3, 4, 6
    t_cand = torch.randn(b, c, d, requires_grad=True)
    t_user = torch.randn(b, d, requires_grad=True)
    s_cand = torch.randn(b, c, d, requires_grad=True)
    s_user = torch.randn(b, d, requires_grad=True)
    t_scores = (t_cand * t_user.unsqueeze(1)).sum(-1)
    s_scores = (s_cand * s_user.unsqueeze(1)).sum(-1)
    hidden_s = [torch.randn(5, 4, d) for _ in range(2)]
    hidden_t = [torch.randn(5, 4, d) for _ in range(3)]
    total, parts = newsbert_loss(
        s_scores, t_scores, hidden_s, hidden_t, [(1, 2)], s_cand, t_cand, s_user, t_user
    )
    total.backward()
    t_grad_total = t_user.grad.clone()
    t_user.grad = None
    click_ce((t_cand * t_user.unsqueeze(1)).sum(-1)).backward()
    assert torch.allclose(t_grad_total, t_user.grad)
    assert s_user.grad is not None and s_user.grad.abs().sum() > 0
    assert parts["total"] == pytest.approx(parts["teacher_ce"] + parts["student_total"], rel=1e-6)
    expected_student = (
        parts["soft_ce"] + 0.1 * parts["ce"] + parts["hidden_mse"] + parts["news_mse"] + parts["user_mse"]
    )
    assert parts["student_total"] == pytest.approx(expected_student, rel=1e-5)


def test_momentum_distill_grads_mixes_teacher_gradients_by_beta():
    student_layers = nn.ModuleList(nn.Linear(3, 3) for _ in range(2))
    teacher_layers = nn.ModuleList(nn.Linear(3, 3) for _ in range(4))
    for p in [*student_layers.parameters(), *teacher_layers.parameters()]:
        p.grad = torch.randn_like(p)
    before = [p.grad.clone() for p in student_layers.parameters()]
    pairs = layer_map(4, 2)  # (1, 2), (2, 4)
    s_params, t_groups = layer_param_groups(student_layers, teacher_layers, pairs)
    momentum_distill_grads(s_params, t_groups, beta=0.1)
    s_weight0 = student_layers[0].weight
    assert torch.allclose(s_weight0.grad, 0.9 * before[0] + 0.1 * teacher_layers[1].weight.grad)
    assert torch.allclose(student_layers[1].bias.grad, 0.9 * before[3] + 0.1 * teacher_layers[3].bias.grad)


def test_momentum_distill_grads_averages_several_teacher_layers():
    student = nn.Linear(2, 2)
    teachers = nn.ModuleList(nn.Linear(2, 2) for _ in range(2))
    for p in [*student.parameters(), *teachers.parameters()]:
        p.grad = torch.randn_like(p)
    g_s = student.weight.grad.clone()
    s_params, t_groups = layer_param_groups([student], teachers, [(1, 1), (1, 2)])
    momentum_distill_grads(s_params, t_groups, beta=0.5)
    mean_t = (teachers[0].weight.grad + teachers[1].weight.grad) / 2
    assert torch.allclose(student.weight.grad, 0.5 * g_s + 0.5 * mean_t)


def test_momentum_distill_grads_leaves_frozen_parameters_alone():
    student, teacher = nn.Linear(2, 2), nn.Linear(2, 2)
    student.weight.grad = torch.ones(2, 2)  # teacher has no gradient: nothing to mix
    momentum_distill_grads([student.weight, student.bias], [teacher.weight, teacher.bias], beta=0.1)
    assert torch.equal(student.weight.grad, torch.ones(2, 2))
    assert student.bias.grad is None


def test_momentum_distill_grads_rejects_beta_out_of_range():
    with pytest.raises(ParamError, match="beta"):
        momentum_distill_grads([], [], beta=1.5)
