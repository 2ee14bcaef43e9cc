"""evaluate: dev metrics, prediction.txt and efficiency of PLM-NR models, on a tiny synthetic world
with tiny random BERTs standing in for the teachers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from conftest import load_stage, write_params
from torch import nn

from tinynewsrec import efficiency, evaluate
from tinynewsrec.errors import DataError
from tinynewsrec.evaluate import (
    AttentionUsers,
    DevImpressions,
    attention_user_encoder,
    encode_news,
    oracle_scores,
    rank_and_score,
    score_impressions,
)
from tinynewsrec.io import atomic_dir
from tinynewsrec.metrics import (
    METRIC_NAMES,
    auc_score,
    mrr_score,
    ndcg_score,
    read_prediction_file,
)
from tinynewsrec.models.plm import load_plm, load_tokenizer, make_tiny_bert
from tinynewsrec.models.plmnr import (
    PLMNR,
    AttentionPooling,
    NewsTokens,
    PLMNRConfig,
    UserEncoder,
    collate_train,
)
from tinynewsrec.params import load_params
from tinynewsrec.recommender import Recommender, load_recommender
from tinynewsrec.train.common import build_caches

SMALL = PLMNRConfig(news_dim=16, news_query_dim=8, user_query_dim=8)


def save_plmnr(bert: Path, folder: str, seed: int) -> None:
    """A fresh PLM-NR whose top PLM layer differs from ``bert``'s (as after fine-tuning)."""
    plm = load_plm(str(bert), trainable_layers=1)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in plm.encoder.layer[-1].parameters():
            p.add_(0.05 * torch.randn_like(p))
    model = PLMNR(plm, SMALL)
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp, kind="test stand-in")


def make_world(folder: Path, teachers: int = 2) -> Path:
    """download + split on the tiny synthetic world, the frozen caches of a 3-layer hidden-32
    BERT (1 trainable layer), and models/post_train/step_i + models/teacher_i stand-ins."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        bert = folder / "tiny_bert"
        make_tiny_bert(num_layers=3, hidden=32, seed=1).save_pretrained(bert)
        load_tokenizer("default").save_pretrained(bert)
        write_params(
            folder,
            data={"size": "tiny", "history_len": 20},
            plm={"name": str(bert), "trainable_layers": 1, "cache_dtype": "float32", "encode_batch": 64},
            teacher={"ids": list(range(teachers))},
            eval={"batch_size": 16, "bench_batch": 8, "bench_news": 24, "models": []},
        )
        load_stage("download").main()
        load_stage("split").main()
        build_caches(load_params(), pq.read_table("data/tokens/news.parquet"), "data/cache/frozen", progress=False)
        for i in range(teachers):
            save_plmnr(bert, f"models/post_train/step_{i}", seed=100 + i)
            save_plmnr(bert, f"models/teacher_{i}", seed=i)
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def evaluated(world):
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(world)
        load_stage("evaluate").main()
    return world


def dev_table(folder: Path) -> pa.Table:
    return pq.read_table(folder / "data/samples/dev.parquet")


# --- the stage --------------------------------------------------------------------------


def test_eval_json_has_every_teacher_and_the_reference_rows(evaluated):
    results = json.loads((evaluated / "metrics/eval.json").read_text())
    assert set(results) == {"teacher_0", "teacher_1", "popularity", "oracle"}
    for row in results.values():
        assert set(row) == set(METRIC_NAMES)
        assert all(0.0 <= v <= 1.0 for v in row.values())
    assert results["oracle"]["auc"] > results["popularity"]["auc"]  # the generator's truth beats counts


def test_efficiency_json_has_positive_costs_per_teacher(evaluated):
    costs = json.loads((evaluated / "metrics/efficiency.json").read_text())
    assert set(costs) == {"teacher_0", "teacher_1"}
    for row in costs.values():
        assert set(row) == {"params", "news_encoder_params", "size_mb", "news_per_s", "user_latency_ms", "layers"}
        assert all(v > 0 for v in row.values())
        assert row["news_encoder_params"] < row["params"]


def test_prediction_files_have_one_line_per_dev_impression_in_dev_order(evaluated):
    dev = dev_table(evaluated)
    sizes = np.array([len(c) for c in dev.column("candidates").to_pylist()])
    for name in ("teacher_0", "teacher_1", "popularity", "oracle"):
        ids, ranks, offsets = read_prediction_file(evaluated / f"data/eval/prediction_{name}.txt")
        assert np.array_equal(ids, dev.column("impression_id").to_numpy())
        assert np.array_equal(np.diff(offsets), sizes)
        for i in range(len(ids)):
            assert sorted(ranks[offsets[i]:offsets[i + 1]]) == list(range(1, sizes[i] + 1))


def test_prediction_txt_is_the_best_teachers(evaluated):
    results = json.loads((evaluated / "metrics/eval.json").read_text())
    best = max(("teacher_0", "teacher_1"), key=lambda n: results[n]["auc"])
    submitted = (evaluated / "data/eval/prediction.txt").read_bytes()
    assert submitted == (evaluated / f"data/eval/prediction_{best}.txt").read_bytes()


def test_one_impression_scored_by_hand_equals_the_stage(world, tmp_path, monkeypatch):
    folder = tmp_path / "one"
    shutil.copytree(world, folder, ignore=shutil.ignore_patterns("tiny_bert"))
    dev = dev_table(folder)
    rows = dev.to_pylist()
    row = next(i for i, r in enumerate(rows) if 0 < sum(r["labels"]) < len(r["labels"]) > 2 and r["history"])
    pq.write_table(dev.slice(row, 1), folder / "data/samples/dev.parquet")
    monkeypatch.chdir(folder)
    load_stage("evaluate").main()
    stage = json.loads((folder / "metrics/eval.json").read_text())["teacher_0"]

    imp = dev.slice(row, 1).to_pylist()[0]
    model = PLMNR.from_pretrained(folder / "models/teacher_0").eval()
    tokens = NewsTokens(pq.read_table(folder / "data/tokens/news.parquet"))
    with torch.no_grad():
        history = model.news_encoder(tokens.batch(imp["history"]))
        user = model.user_encoder(history[None], torch.ones(1, len(history), dtype=torch.bool))[0]
        scores = (model.news_encoder(tokens.batch(imp["candidates"])) @ user).numpy()
    y = np.array(imp["labels"])
    by_hand = {"auc": auc_score(y, scores), "mrr": mrr_score(y, scores),
               "ndcg5": ndcg_score(y, scores, 5), "ndcg10": ndcg_score(y, scores, 10)}
    assert stage == pytest.approx(by_hand, abs=2e-6)


def test_eval_json_is_what_the_leaderboard_computes_from_prediction_txt(evaluated):
    """MIND's scorer reads only the ranks and scores each candidate 1/rank (sklearn's AUC):
    eval.json must agree with it for every row, the popularity ranker's tied counts included."""
    from sklearn.metrics import roc_auc_score

    results = json.loads((evaluated / "metrics/eval.json").read_text())
    dev = dev_table(evaluated)
    labels = dev.column("labels").to_pylist()
    for name in ("teacher_0", "popularity", "oracle"):
        _, ranks, offsets = read_prediction_file(evaluated / f"data/eval/prediction_{name}.txt")
        aucs = []
        for i, y in enumerate(labels):
            if 0 < sum(y) < len(y):
                aucs.append(roc_auc_score(y, 1.0 / ranks[offsets[i]:offsets[i + 1]]))
        assert results[name]["auc"] == pytest.approx(np.mean(aucs), abs=1e-6), name


def test_impression_metrics_average_to_eval_json(evaluated):
    results = json.loads((evaluated / "metrics/eval.json").read_text())
    table = pq.read_table(evaluated / "data/eval/impressions.parquet")
    assert np.array_equal(table.column("impression_id").to_numpy(), dev_table(evaluated).column("impression_id").to_numpy())
    for name, row in results.items():
        for metric, value in row.items():
            assert np.nanmean(table.column(f"{name}/{metric}").to_numpy()) == pytest.approx(value, abs=1e-6)


def test_any_model_folder_named_in_eval_models_is_a_row(world, tmp_path, monkeypatch):
    folder = tmp_path / "rows"
    shutil.copytree(world, folder, ignore=shutil.ignore_patterns("tiny_bert"))
    shutil.copytree(folder / "models/teacher_1", folder / "models/pruned_student")
    monkeypatch.chdir(folder)
    write_params(folder, **{k: v for k, v in yaml.safe_load((world / "params.yaml").read_text()).items()
                            if k != "eval"}, eval={"batch_size": 16, "bench_batch": 8, "bench_news": 24,
                                                     "models": ["pruned_student"]})
    load_stage("evaluate").main()
    results = json.loads((folder / "metrics/eval.json").read_text())
    assert results["pruned_student"] == results["teacher_1"]  # the same weights, another row
    assert "pruned_student" in json.loads((folder / "metrics/efficiency.json").read_text())


def test_a_model_folder_of_an_unknown_kind_is_a_one_line_error(world, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "config.json").write_text('{"model": "hologram"}')
    with pytest.raises(DataError, match="model kind 'hologram'.*known kinds: .*plmnr"):
        load_recommender(folder)


def test_a_missing_teacher_names_the_stage_to_run(world, tmp_path, monkeypatch):
    folder = tmp_path / "w"
    shutil.copytree(world, folder, ignore=shutil.ignore_patterns("tiny_bert", "models"))
    monkeypatch.chdir(folder)
    with pytest.raises(DataError, match="models/teacher_0.*finetune_teacher"):
        load_stage("evaluate").main()


# --- the library --------------------------------------------------------------------------


def test_scores_equal_the_models_forward_on_the_same_impressions(world):
    table = dev_table(world).slice(0, 12)
    tokens = NewsTokens(pq.read_table(world / "data/tokens/news.parquet"))
    model = PLMNR.from_pretrained(world / "models/teacher_1").eval()
    dev = DevImpressions.from_table(table)
    with torch.no_grad():
        vecs = encode_news(model.news_encoder, tokens, dev.news_index(), batch_size=7, progress=False)
        forward = model(collate_train(table, tokens))
        mask = collate_train(table, tokens)["candidate_mask"]
    scores = score_impressions(model, vecs, dev, batch_size=5, progress=False)
    np.testing.assert_allclose(scores, forward[mask].numpy(), rtol=1e-5, atol=1e-5)


def test_encoded_table_has_zeros_where_no_news_was_encoded(world):
    tokens = NewsTokens(pq.read_table(world / "data/tokens/news.parquet"))
    model = PLMNR.from_pretrained(world / "models/teacher_0").eval()
    vecs = encode_news(model.news_encoder, tokens, [3, 5, 0], n_slots=9, progress=False)
    assert vecs.shape == (9, SMALL.news_dim)
    assert torch.all(vecs[[0, 1, 2, 4, 6, 7, 8]] == 0)
    assert torch.all(vecs[[3, 5]].abs().sum(dim=1) > 0)


def test_dev_impressions_keep_the_last_history_clicks():
    table = pa.table({
        "impression_id": pa.array([7, 8], pa.int64()),
        "history": pa.array([[1, 2, 3, 4], []], pa.list_(pa.int32())),
        "candidates": pa.array([[5, 6], [6, 7, 8]], pa.list_(pa.int32())),
        "labels": pa.array([[1, 0], [0, 0, 1]], pa.list_(pa.int8())),
    })
    dev = DevImpressions.from_table(table, history_len=2)
    assert dev.impression(0)[0].tolist() == [3, 4]
    assert dev.impression(1)[0].tolist() == []
    assert dev.impression(1)[1].tolist() == [6, 7, 8]
    assert dev.news_index().tolist() == [3, 4, 5, 6, 7, 8]


def test_oracle_scores_are_matched_by_impression_id():
    dev = DevImpressions.from_table(pa.table({
        "impression_id": pa.array([2, 1], pa.int64()),
        "history": pa.array([[], []], pa.list_(pa.int32())),
        "candidates": pa.array([[5, 6], [6, 7, 8]], pa.list_(pa.int32())),
        "labels": pa.array([[1, 0], [0, 0, 1]], pa.list_(pa.int8())),
    }))
    oracle = pa.table({"impression_id": pa.array([1, 2, 3], pa.int64()),
                       "probs": pa.array([[0.1, 0.2, 0.3], [0.9, 0.8], [0.5]], pa.list_(pa.float32()))})
    np.testing.assert_allclose(oracle_scores(oracle, dev), [0.9, 0.8, 0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="impression 2"):
        oracle_scores(oracle.slice(0, 1), dev)


def test_bench_batches_have_a_fixed_width_and_the_asked_news_count():
    tokens = NewsTokens.from_lists([[], [101, 7, 102], [101, 8, 9, 10, 102], [101, 102]])
    batches = efficiency.bench_batches(tokens, [1, 2, 3], num_news=7, batch_size=3, pad_len=6)
    assert [tuple(b["input_ids"].shape) for b in batches] == [(3, 6), (3, 6), (1, 6)]
    assert batches[0]["attention_mask"].sum(dim=1).tolist() == [3, 5, 2]
    assert batches[1]["input_ids"][0].tolist() == [101, 7, 102, 0, 0, 0]  # cycled: news 1 again


def test_parameter_count_is_news_plus_user_encoder():
    model = PLMNR(make_tiny_bert(num_layers=2), SMALL)
    total = efficiency.count_parameters(model)
    assert total == efficiency.count_parameters(model.news_encoder) + efficiency.count_parameters(model.user_encoder)
    assert total == sum(p.numel() for p in model.state_dict().values())


def test_latency_inputs_index_a_compact_table_with_the_same_vectors():
    vecs = torch.arange(1, 41, dtype=torch.float32).reshape(10, 4)
    vecs[0] = 0
    history, candidates = [np.array([7, 2]), np.array([], dtype=np.int64)], [np.array([9, 2]), np.array([4])]
    news, local_h, local_c = efficiency.latency_inputs(history, candidates)
    table = efficiency.compact_table(vecs, news)
    assert len(table) == len(news) + 1 and torch.all(table[0] == 0)
    for original, local in zip(history + candidates, local_h + local_c):
        assert torch.equal(table[torch.from_numpy(local)], vecs[torch.from_numpy(original.astype(np.int64))])


# --- fast scoring (PLM-NR: attention logits once per news) ---------------------------------


def random_plmnr(seed: int = 0) -> PLMNR:
    """A tiny PLM-NR with random user-encoder weights and a non-zero cold-user vector."""
    torch.manual_seed(seed)
    model = PLMNR(make_tiny_bert(num_layers=2, hidden=32, seed=seed), SMALL).eval()
    with torch.no_grad():
        for p in model.user_encoder.parameters():
            p.normal_()
    return model


def random_dev(seed: int = 0, n: int = 60, n_news: int = 40, max_history: int = 9) -> DevImpressions:
    """Impressions in a random order: histories of 0, 1 and ``max_history`` clicks among them,
    one history of padding only ([0, 0]: a cold user) and one with padding inside; 1..8 candidates."""
    rng = np.random.default_rng(seed)
    h_len = rng.integers(0, max_history + 1, n)
    h_len[:4] = [0, 1, max_history, 2]
    h_len = h_len[rng.permutation(n)]
    history = rng.integers(1, n_news, int(h_len.sum())).astype(np.int32)
    h_off = np.concatenate([[0], np.cumsum(h_len)]).astype(np.int64)
    two = np.flatnonzero(h_len == 2)[0]
    history[h_off[two] : h_off[two + 1]] = 0
    longest = np.flatnonzero(h_len == max_history)[0]
    history[h_off[longest] + 3] = 0
    c_len = rng.integers(1, 9, n)
    c_off = np.concatenate([[0], np.cumsum(c_len)]).astype(np.int64)
    labels = (rng.random(int(c_off[-1])) < 0.3).astype(np.int8)
    return DevImpressions(np.arange(100, 100 + n, dtype=np.int64), rng.integers(1, n_news, int(c_off[-1])).astype(np.int32),
                          labels, c_off, history, h_off)


def random_vecs(n_news: int = 40, seed: int = 1) -> torch.Tensor:
    vecs = torch.randn(n_news, SMALL.news_dim, generator=torch.Generator().manual_seed(seed))
    vecs[0] = 0  # the padding row, as encode_news leaves it
    return vecs


def close(got, expected) -> bool:
    """Equal up to float32 rounding: the error of a dot product grows with |u| |n|, so the
    absolute tolerance is 1e-6 of the largest score (~8 ulps of it; measured: <= 2e-6 on scores
    up to 24 over 8 seeds)."""
    got, expected = torch.as_tensor(got), torch.as_tensor(expected)
    return torch.allclose(got, expected, rtol=1e-6, atol=1e-6 * float(expected.abs().max()))


def test_fast_scores_equal_the_per_slot_path():
    model, dev, vecs = random_plmnr(), random_dev(), random_vecs()
    assert attention_user_encoder(model) is model.user_encoder
    fast = score_impressions(model, vecs, dev, batch_size=4, progress=False)
    per_slot = score_impressions(model, vecs, dev, batch_size=5, progress=False, fast=False)
    assert fast.dtype == np.float32 and fast.shape == dev.candidates.shape
    assert close(fast, per_slot)
    assert rank_and_score(fast, dev).metrics == rank_and_score(per_slot, dev).metrics  # at 6 decimals


@pytest.mark.parametrize("chunk", [1, 3, 10])
def test_fast_path_in_small_dot_steps_gives_the_same_scores(monkeypatch, chunk):
    """Dot-product steps smaller than one impression's candidates (1, 3) or spanning a few (10)."""
    model, dev, vecs = random_plmnr(), random_dev(), random_vecs()
    expected = score_impressions(model, vecs, dev, batch_size=5, progress=False, fast=False)
    monkeypatch.setattr(evaluate, "CPU_DOT_CHUNK", chunk)
    assert close(score_impressions(model, vecs, dev, batch_size=7, progress=False), expected)


def by_hand(model, vecs, dev) -> np.ndarray:
    """Every impression's scores, one impression at a time, by the user encoder itself."""
    out = []
    for i in range(len(dev)):
        history, candidates, _ = dev.impression(i)
        history = torch.from_numpy(history.astype(np.int64))[None]
        with torch.no_grad():
            user = model.user_encoder(vecs[history], history > 0)[0]
        out.append((vecs[torch.from_numpy(candidates.astype(np.int64))] @ user).numpy())
    return np.concatenate(out)


def test_fast_scores_are_in_the_original_impression_and_candidate_order():
    model, dev, vecs = random_plmnr(), random_dev(), random_vecs()
    assert close(score_impressions(model, vecs, dev, batch_size=4, progress=False), by_hand(model, vecs, dev))


def test_fast_path_gives_empty_and_padding_only_histories_the_cold_user_vector():
    model, dev, vecs = random_plmnr(), random_dev(), random_vecs()
    scores = score_impressions(model, vecs, dev, batch_size=4, progress=False)
    cold = [i for i in range(len(dev)) if not (dev.impression(i)[0] > 0).any()]
    assert any(len(dev.impression(i)[0]) == 2 for i in cold) and any(len(dev.impression(i)[0]) == 0 for i in cold)
    got = np.concatenate([scores[dev.offsets[i] : dev.offsets[i + 1]] for i in cold])
    candidates = torch.from_numpy(np.concatenate([dev.impression(i)[1] for i in cold]).astype(np.int64))
    assert close(got, vecs[candidates] @ model.user_encoder.empty_user.detach())


def test_fast_path_on_a_process_share_equals_those_rows_of_the_whole():
    model, dev, vecs = random_plmnr(), random_dev(), random_vecs()
    whole = score_impressions(model, vecs, dev, progress=False)
    rows = np.arange(17, 41)  # one process's contiguous share (_my_rows)
    with evaluate.tqdm(disable=True) as bar:
        share = evaluate._score_fast(model.user_encoder, vecs, dev, rows, 6, bar).numpy()
    assert close(share, whole[dev.offsets[17] : dev.offsets[41]])  # other batches: other rounding


def test_attention_users_compute_each_news_logit_once_as_the_pooling_does():
    model, vecs = random_plmnr(), random_vecs()
    users = AttentionUsers(model.user_encoder, vecs)
    history = torch.tensor([[3, 5, 0], [5, 0, 0], [0, 0, 0]])
    mask = history > 0
    got = users(history, mask)
    assert users.known.nonzero().squeeze(1).tolist() == [3, 5]
    pooling = model.user_encoder.pooling
    with torch.no_grad():
        assert torch.allclose(users.logits[[3, 5]], pooling.query(torch.tanh(pooling.proj(vecs[[3, 5]]))).squeeze(-1))
        assert close(got, model.user_encoder(vecs[history], mask))


class MeanUsers(nn.Module):
    def forward(self, history, mask):
        mask = mask.float().unsqueeze(-1)
        return (history * mask).sum(1) / mask.sum(1).clamp(min=1)


class MeanRecommender(Recommender):
    """Not a PLM-NR: mean of the clicked news, scores scaled by 2."""

    kind = "mean-test"

    def __init__(self):
        super().__init__()
        self.news_encoder, self.user_encoder = nn.Identity(), MeanUsers()

    @property
    def news_dim(self) -> int:
        return SMALL.news_dim

    def score(self, users, candidates):
        return 2 * super().score(users, candidates)


def test_a_recommender_that_is_not_a_plmnr_is_scored_by_its_own_encode_user_and_score():
    model, dev, vecs = MeanRecommender(), random_dev(), random_vecs()
    assert attention_user_encoder(model) is None
    scores = score_impressions(model, vecs, dev, batch_size=4, progress=False)
    for i in (0, 7, 31):
        history, candidates, _ = dev.impression(i)
        kept = history[history > 0].astype(np.int64)
        user = vecs[kept].mean(0) if len(kept) else torch.zeros(SMALL.news_dim)
        expected = 2 * (vecs[torch.from_numpy(candidates.astype(np.int64))] @ user)
        assert torch.allclose(torch.from_numpy(scores[dev.offsets[i] : dev.offsets[i + 1]]), expected, atol=1e-5)


class ScaledPLMNR(PLMNR):
    def score(self, users, candidates):
        return 3 * super().score(users, candidates)


class OtherPooling(AttentionPooling):
    pass


def test_plmnr_variants_that_change_the_user_function_keep_the_generic_path():
    assert attention_user_encoder(ScaledPLMNR(make_tiny_bert(num_layers=1, hidden=32), SMALL)) is None
    model = random_plmnr()
    model.user_encoder.pooling = OtherPooling(SMALL.news_dim, SMALL.user_query_dim)
    assert attention_user_encoder(model) is None
    assert attention_user_encoder(UserEncoder(SMALL.news_dim, SMALL.user_query_dim)) is not None
    scaled = ScaledPLMNR(make_tiny_bert(num_layers=1, hidden=32), SMALL).eval()
    scaled.user_encoder.load_state_dict(random_plmnr().user_encoder.state_dict())
    dev, vecs = random_dev(), random_vecs()
    np.testing.assert_allclose(score_impressions(scaled, vecs, dev, progress=False),
                               3 * score_impressions(random_plmnr(), vecs, dev, progress=False), rtol=1e-5, atol=1e-5)
