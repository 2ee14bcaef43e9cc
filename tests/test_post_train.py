"""post_train (dp, fp, none): the library pieces, and the stage entry point on the tiny synthetic
world with a tiny random BERT (3 layers, hidden 32; the top 2 train, the frozen cache holds 1)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tinynewsrec.errors import DataError
from tinynewsrec.models.cache import FrozenCache, frozen_fingerprint
from tinynewsrec.models.plm import freeze_plm, load_plm, load_tokenizer, make_tiny_bert
from tinynewsrec.models.plmnr import PLMNR, NewsEncoder, NewsTokens
from tinynewsrec.params import load_params
from tinynewsrec.train.common import build_caches
from tinynewsrec.train.post_train import (
    MaskedNewsBatches,
    NewsText,
    TitleBodyBatches,
    TitleBodyMatcher,
    checkpoint_steps,
    dp_step,
    mask_tokens,
    news_with_body,
    sample_candidates,
)
from conftest import load_stage, write_params

TRAINABLE = 2
FROZEN = 3 - TRAINABLE


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("default")


def set_params(folder, plm_dir, **post_train):
    write_params(folder, data={"size": "tiny"}, plm={"name": str(plm_dir), "trainable_layers": TRAINABLE},
                 post_train={"batch_size": 32, "lr": 1e-3, "save_every": 20, **post_train},
                 teacher={"ids": [0, 1, 2, 3]},
                 student={"method": "no_kd"})  # Tiny-NewsRec's stage 1 would refuse post_train fp / none


@pytest.fixture(scope="module")
def world(tmp_path_factory, tokenizer):
    """The tiny world's data (download + split) and its frozen title/body caches."""
    root = tmp_path_factory.mktemp("world")
    plm_dir = root / "tiny_bert"
    make_tiny_bert(num_layers=3, hidden=32).save_pretrained(plm_dir)
    tokenizer.save_pretrained(plm_dir)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        set_params(root, plm_dir)
        load_stage("download").main()
        load_stage("split").main()
        build_caches(load_params(), pq.read_table("data/tokens/news.parquet"), progress=False)
    return root


def run_stage(world, workdir, **post_train):
    (workdir / "data").symlink_to(world / "data")
    set_params(workdir, world / "tiny_bert", **post_train)
    load_stage("post_train").main()
    return json.loads((workdir / "models/post_train/config.json").read_text())


def raw_plm(world):
    return load_plm(str(world / "tiny_bert"), trainable_layers=TRAINABLE)


def top_layer(plm):
    return torch.cat([p.flatten() for p in plm.encoder.layer[-1].parameters()])


# --- the stage ------------------------------------------------------------------------------


def test_dp_stage_keeps_m_loadable_checkpoints_with_the_frozen_layers_unchanged(world, workdir):
    meta = run_stage(world, workdir, method="dp", save_every=2)
    tokens = pq.read_table(world / "data/tokens/news.parquet")
    with_body, skipped = news_with_body(tokens)
    steps = -(-len(with_body) // 32)
    assert meta["global_steps"] == [steps - 6, steps - 4, steps - 2, steps]  # the last 4, 2 apart
    folders = sorted(p.name for p in (workdir / "models/post_train").iterdir() if p.is_dir())
    assert folders == ["step_0", "step_1", "step_2", "step_3"]
    raw = raw_plm(world)
    loaded = [PLMNR.from_pretrained(workdir / f"models/post_train/step_{i}") for i in range(4)]
    for model in loaded:
        assert frozen_fingerprint(model.plm, FROZEN) == frozen_fingerprint(raw, FROZEN)
        FrozenCache(world / "data/cache/frozen/title").check_model(model.plm)  # the cache stays valid
    assert not torch.equal(top_layer(loaded[0].plm), top_layer(raw))
    assert not torch.equal(top_layer(loaded[0].plm), top_layer(loaded[3].plm))
    config = json.loads((workdir / "models/post_train/step_3/config.json").read_text())
    assert (config["method"], config["global_step"]) == ("dp", steps)
    summary = json.loads((workdir / "metrics/post_train.json").read_text())
    assert summary["news_skipped"] == skipped > 0 and summary["steps"] == steps
    assert 0 <= summary["accuracy"] <= 1 and summary["loss"] > 0
    assert (workdir / "metrics/post_train/metrics.json").exists()


def test_fp_stage_spaces_a_short_run_evenly_and_trains_only_the_top(world, workdir):
    meta = run_stage(world, workdir, method="fp", batch_size=64)
    steps = -(-pq.read_table(world / "data/tokens/news.parquet").num_rows // 64)
    assert steps < 4 * 20
    assert meta["global_steps"] == checkpoint_steps(steps, 20, 4) == [-(-(i + 1) * steps // 4) for i in range(4)]
    raw = raw_plm(world)
    newest = PLMNR.from_pretrained(workdir / "models/post_train/step_3")
    assert frozen_fingerprint(newest.plm, FROZEN) == frozen_fingerprint(raw, FROZEN)
    assert not torch.equal(top_layer(newest.plm), top_layer(raw))
    assert json.loads((workdir / "metrics/post_train.json").read_text())["method"] == "fp"


def test_none_stage_writes_the_raw_plm_m_times(world, workdir):
    meta = run_stage(world, workdir, method="none")
    assert meta["global_steps"] == [0, 0, 0, 0]
    raw = raw_plm(world).state_dict()
    for i in range(4):
        plm = PLMNR.from_pretrained(workdir / f"models/post_train/step_{i}").plm.state_dict()
        assert plm.keys() == raw.keys() and all(torch.equal(plm[k], raw[k]) for k in raw)


def test_dp_without_the_frozen_cache_names_the_stage_to_run(world, workdir):
    (workdir / "data/tokens").mkdir(parents=True)
    (workdir / "data/tokens/news.parquet").symlink_to(world / "data/tokens/news.parquet")
    set_params(workdir, world / "tiny_bert", method="dp")
    with pytest.raises(DataError, match="cache_frozen"):
        load_stage("post_train").main()
    assert not (workdir / "models").exists()


# --- dp -------------------------------------------------------------------------------------


def test_checkpoints_are_the_last_m_steps_or_evenly_spaced():
    assert checkpoint_steps(149, 20, 4) == [89, 109, 129, 149]
    assert checkpoint_steps(80, 20, 4) == [20, 40, 60, 80]
    assert checkpoint_steps(10, 20, 4) == [3, 5, 8, 10]
    assert checkpoint_steps(2, 20, 4) == [1, 1, 2, 2]


def test_news_with_an_empty_body_are_skipped_and_counted():
    table = pa.table({"news_index": pa.array([1, 2, 3], pa.int32()),
                      "body_ids": pa.array([[101, 7, 102], [101, 102], [101, 8, 9, 102]], pa.list_(pa.int32()))})
    news, skipped = news_with_body(table)
    assert news.tolist() == [1, 3] and skipped == 1


def test_negatives_are_other_titles_of_the_batch():
    cand = sample_candidates(32, 32, 9, np.random.default_rng(0))
    assert cand.shape == (32, 10)
    assert (cand[:, 0] == np.arange(32)).all()
    assert not (cand[:, 1:] == np.arange(32)[:, None]).any()
    assert all(len(set(row)) == 10 for row in cand.tolist())


def test_a_small_batch_is_topped_up_with_other_titles():
    titles = NewsTokens.from_lists([[]] + [[101, 1000 + i, 102] for i in range(20)])
    collate = TitleBodyBatches(np.arange(1, 21), np.arange(1, 21), titles, titles, negatives=9, seed=0)
    batch = collate([0, 1, 2])
    assert batch["titles"]["input_ids"].shape[0] == 10  # 3 own titles + 7 others
    assert batch["candidates"].shape == (3, 10)
    assert batch["titles"]["input_ids"][:3, 1].tolist() == [1000, 1001, 1002]
    assert len(set(batch["titles"]["input_ids"][:, 1].tolist())) == 10


def test_dp_loss_falls_on_a_fixed_batch():
    rng = np.random.default_rng(0)
    titles = [[]] + [[101, *rng.integers(1000, 20000, 6).tolist(), 102] for _ in range(16)]
    bodies = [[]] + [[101, *t[1:-1], *rng.integers(1000, 20000, 10).tolist(), 102] for t in titles[1:]]
    news = np.arange(1, 17)
    collate = TitleBodyBatches(news, news, NewsTokens.from_lists(titles), NewsTokens.from_lists(bodies), 5, seed=0)
    batch = collate(list(range(16)))
    plm = make_tiny_bert(num_layers=2, hidden=32)
    freeze_plm(plm, 1)
    torch.manual_seed(0)
    model = TitleBodyMatcher(NewsEncoder(plm, news_dim=16, query_dim=8))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)

    def eval_loss():
        with torch.no_grad():
            return dp_step(model.eval(), batch)

    before, _ = eval_loss()
    model.train()
    for _ in range(20):
        loss, _ = dp_step(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after, parts = eval_loss()
    assert after < 0.3 * before
    assert parts["accuracy"] > 0.9


# --- fp -------------------------------------------------------------------------------------


def test_mask_tokens_selects_15_percent_and_splits_80_10_10(tokenizer):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (400, 60), generator=g)
    ids[:, 0], ids[:, 49] = tokenizer.cls_token_id, tokenizer.sep_token_id
    mask = torch.ones_like(ids)
    ids[:, 50:], mask[:, 50:] = tokenizer.pad_token_id, 0
    masked, labels = mask_tokens(ids, mask, mask_id=tokenizer.mask_token_id, vocab_size=len(tokenizer),
                                 special_ids=tokenizer.all_special_ids, probability=0.15, generator=g)
    selected = labels != -100
    assert torch.equal(labels[selected], ids[selected])
    assert not selected[:, [0, 49]].any() and not selected[:, 50:].any()  # never [CLS], [SEP], padding
    assert abs(selected.sum().item() / (400 * 48) - 0.15) < 0.01
    n = selected.sum().item()
    as_mask = (masked[selected] == tokenizer.mask_token_id).sum().item() / n
    kept = (masked[selected] == ids[selected]).sum().item() / n
    assert abs(as_mask - 0.8) < 0.02 and abs(kept - 0.1) < 0.015 and abs(1 - as_mask - kept - 0.1) < 0.015
    assert torch.equal(masked[~selected], ids[~selected])


def test_fp_batches_use_the_tokenizers_real_mask_id(tokenizer):
    table = pa.table({"news_index": pa.array([1, 2], pa.int32()),
                      "title_ids": pa.array([tokenizer("stocks rally")["input_ids"]] * 2, pa.list_(pa.int32())),
                      "body_ids": pa.array([tokenizer("markets rose sharply on friday after the report")["input_ids"],
                                            [101, 102]], pa.list_(pa.int32()))})
    text = NewsText(table)
    collate = MaskedNewsBatches(text, np.array([1, 2]), tokenizer, len(tokenizer), 0.5, seed=0)
    batch = collate([0, 1])
    plain = text.batch([1, 2])["input_ids"]
    mask_id = tokenizer.convert_tokens_to_ids("[MASK]")
    assert collate.mask_id == mask_id == tokenizer.mask_token_id == 103
    selected = batch["labels"] != -100
    assert (batch["input_ids"][selected] == mask_id).any()
    assert torch.equal(batch["labels"][selected], plain[selected])
    assert torch.equal(batch["input_ids"][~selected], plain[~selected])


def test_news_text_is_title_then_body_with_segments(tokenizer):
    title = tokenizer("stocks rally")["input_ids"]
    body = tokenizer("markets rose")["input_ids"]
    table = pa.table({"news_index": pa.array([1, 2], pa.int32()),
                      "title_ids": pa.array([title, title], pa.list_(pa.int32())),
                      "body_ids": pa.array([body, [101, 102]], pa.list_(pa.int32()))})
    batch = NewsText(table).batch([1, 2])
    full = title + body[1:]
    assert batch["input_ids"][0].tolist() == full
    assert batch["input_ids"][1, : len(title)].tolist() == title and batch["attention_mask"][1].sum() == len(title)
    assert batch["token_type_ids"][0].tolist() == [0] * len(title) + [1] * (len(body) - 1)
    assert batch["token_type_ids"][1].sum() == 0
