"""Length buckets (models/buckets.py): the same outputs, losses and gradients as one padded batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinynewsrec.models.buckets import bucketed, length_buckets
from tinynewsrec.models.plm import make_tiny_bert
from tinynewsrec.models.plmnr import NewsEncoder, NewsTokens
from tinynewsrec.seqrec.common import SeqRecConfig, pad_left
from tinynewsrec.seqrec.train import build_model


def test_length_buckets_partition_the_rows_by_length():
    lengths = torch.tensor([5, 1, 9, 3, 7, 2, 8, 4])
    buckets = length_buckets(lengths, max_buckets=4, min_rows=2)
    assert len(buckets) == 4
    rows = torch.cat([r for r, _ in buckets])
    assert sorted(rows.tolist()) == list(range(8))  # every row exactly once
    assert [w for _, w in buckets] == [2, 4, 7, 9]  # each bucket's longest row, shortest bucket first
    assert [sorted(lengths[r].tolist()) for r, _ in buckets] == [[1, 2], [3, 4], [5, 7], [8, 9]]


def test_length_buckets_keep_small_batches_whole():
    lengths = torch.tensor([3, 0, 6])
    assert [(r.tolist(), w) for r, w in length_buckets(lengths, max_buckets=4, min_rows=32)] == [([0, 1, 2], 6)]
    assert length_buckets(torch.zeros(40, dtype=torch.long), max_buckets=1)[0][1] == 1  # all padding: width 1


def test_bucketed_restores_the_row_order():
    buckets = length_buckets(torch.tensor([4, 1, 3, 2]), max_buckets=2, min_rows=2)
    outputs = [torch.tensor(r.tolist()) * 10 for r, _ in buckets]
    assert bucketed(buckets, outputs).tolist() == [0, 10, 20, 30]


def no_dropout(module: torch.nn.Module) -> torch.nn.Module:
    for m in module.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return module


def grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    module.zero_grad(set_to_none=True)
    return out


def test_news_encoder_buckets_give_the_same_vectors_and_gradients():
    rng = np.random.default_rng(0)
    titles = [[]] + [[101, *rng.integers(1000, 20000, rng.integers(1, 20)).tolist(), 102] for _ in range(130)]
    batch = NewsTokens.from_lists(titles).batch(list(range(1, 131)))
    encoder = no_dropout(NewsEncoder(make_tiny_bert(), news_dim=16, query_dim=8)).train()
    target = torch.randn(130, 16)

    encoder.length_buckets = 1
    whole = encoder(batch)
    (whole * target).sum().backward()
    expected = grads(encoder)
    encoder.length_buckets = 4
    split = encoder(batch)
    (split * target).sum().backward()
    got = grads(encoder)

    assert torch.allclose(split, whole, atol=1e-5)
    assert expected.keys() == got.keys() and expected
    for name in expected:
        assert torch.allclose(got[name], expected[name], atol=1e-4), name


def test_news_encoder_runs_one_padded_batch_outside_training():
    encoder = NewsEncoder(make_tiny_bert(), news_dim=16, query_dim=8).eval()
    calls = []
    encoder._encode = lambda news: calls.append(news["input_ids"].shape) or torch.zeros(len(news["input_ids"]), 16)
    rng = np.random.default_rng(1)
    titles = [[]] + [[101, *rng.integers(1000, 20000, rng.integers(1, 20)).tolist(), 102] for _ in range(80)]
    batch = NewsTokens.from_lists(titles).batch(list(range(1, 81)))
    encoder(batch)
    assert calls == [batch["input_ids"].shape]
    encoder.train()
    calls.clear()
    encoder(batch)
    assert len(calls) == 2 and sum(s[0] for s in calls) == 80 and min(s[1] for s in calls) < batch["input_ids"].shape[1]


@pytest.mark.parametrize("model", ["sasrec", "bert4rec"])
def test_seqrec_buckets_give_the_same_loss_and_gradients(model):
    config = SeqRecConfig(model=model, n_items=60, hidden=16, heads=2, dropout=0.0, max_len=20)
    torch.manual_seed(0)
    net = build_model(config).train()
    rng = np.random.default_rng(0)
    seqs = pad_left([rng.integers(1, 61, rng.integers(2, 30)).tolist() for _ in range(96)], net.train_len)

    losses = {}
    for buckets in (1, 4):
        net.length_buckets = buckets
        loss = net.train_loss(seqs, torch.Generator().manual_seed(5))  # the same Cloze masks both times
        loss.backward()
        losses[buckets] = (loss.detach(), grads(net))
    (whole, expected), (split, got) = losses[1], losses[4]
    assert torch.allclose(split, whole, atol=1e-5)
    assert expected.keys() == got.keys() and expected
    for name in expected:
        assert torch.allclose(got[name], expected[name], atol=1e-4), name
