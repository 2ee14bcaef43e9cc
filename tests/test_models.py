"""PLM loading/freezing and the PLM-NR model, on tiny random BERTs (hidden 32)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from tinynewsrec.errors import DataError, ParamError
from tinynewsrec.models.plm import (
    freeze_plm,
    load_plm,
    make_tiny_bert,
    num_frozen_layers,
    run_layers,
)
from tinynewsrec.models.plmnr import (
    PLMNR,
    AttentionPooling,
    NewsEncoder,
    NewsTokens,
    PLMNRConfig,
    UserEncoder,
    click_loss,
    collate_train,
)

SMALL = PLMNRConfig(news_dim=16, news_query_dim=8, user_query_dim=8)


def random_titles(n: int, seed: int = 0) -> list[list[int]]:
    """news_index 0 is padding (no tokens); 1..n are [CLS] w1..wk [SEP] with k in 3..14."""
    rng = np.random.default_rng(seed)
    return [[]] + [[101, *rng.integers(1000, 20000, rng.integers(3, 15)).tolist(), 102] for _ in range(n)]


def tiny_plmnr(num_layers: int = 3, trainable_layers: int = 1, seed: int = 0) -> PLMNR:
    plm = make_tiny_bert(num_layers=num_layers, seed=seed)
    freeze_plm(plm, trainable_layers)
    torch.manual_seed(seed)
    return PLMNR(plm, SMALL).eval()


@pytest.fixture(scope="module")
def saved_tiny_bert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_bert")
    make_tiny_bert(num_layers=3, seed=1).save_pretrained(folder)
    return folder


# --- PLM --------------------------------------------------------------------------------


def test_load_plm_keeps_the_first_layers(saved_tiny_bert):
    full = load_plm(str(saved_tiny_bert))
    student = load_plm(str(saved_tiny_bert), num_layers=2)
    assert len(student.encoder.layer) == 2 and student.config.num_hidden_layers == 2
    for a, b in zip(student.encoder.layer.parameters(), full.encoder.layer[:2].parameters()):
        assert torch.equal(a, b)


def test_load_plm_drops_the_pooler(saved_tiny_bert):
    assert load_plm(str(saved_tiny_bert)).pooler is None


@pytest.mark.parametrize("layers", [0, 4])
def test_load_plm_rejects_a_depth_the_plm_does_not_have(saved_tiny_bert, layers):
    with pytest.raises(ParamError, match=r"student\.layers.*between 1 and 3"):
        load_plm(str(saved_tiny_bert), num_layers=layers)


def test_load_plm_reports_a_folder_without_a_model(tmp_path):
    with pytest.raises(ParamError, match="config.json"):
        load_plm(str(tmp_path))


def test_freeze_plm_trains_only_the_last_layers():
    plm = make_tiny_bert(num_layers=3)
    freeze_plm(plm, 2)
    assert [any(p.requires_grad for p in layer.parameters()) for layer in plm.encoder.layer] == [False, True, True]
    assert all(p.requires_grad for p in plm.encoder.layer[1].parameters())
    assert not any(p.requires_grad for p in plm.embeddings.parameters())
    assert num_frozen_layers(plm) == 1


def test_freeze_plm_zero_freezes_everything():
    plm = make_tiny_bert(num_layers=2)
    freeze_plm(plm, 0)
    assert not any(p.requires_grad for p in plm.parameters())
    assert num_frozen_layers(plm) == 2


def test_freeze_plm_beyond_depth_trains_all_layers_but_not_embeddings():
    plm = make_tiny_bert(num_layers=2)
    freeze_plm(plm, 5)
    assert all(p.requires_grad for p in plm.encoder.parameters())
    assert not any(p.requires_grad for p in plm.embeddings.parameters())
    assert num_frozen_layers(plm) == 0


def test_freeze_plm_rejects_negative():
    with pytest.raises(ParamError, match="trainable_layers"):
        freeze_plm(make_tiny_bert(), -1)


def test_run_layers_equals_bert_forward_including_in_two_pieces():
    plm = make_tiny_bert(num_layers=3)
    tokens = NewsTokens.from_lists(random_titles(5)).batch([1, 2, 3, 4, 5])
    expected = plm(**tokens).last_hidden_state
    emb = plm.embeddings(input_ids=tokens["input_ids"])
    mask = tokens["attention_mask"]
    assert torch.allclose(run_layers(plm, emb, mask), expected, atol=1e-6)
    two_pieces = run_layers(plm, run_layers(plm, emb, mask, 0, 1), mask, 1)
    assert torch.allclose(two_pieces, expected, atol=1e-6)


def test_make_tiny_bert_is_deterministic_per_seed():
    a, b, c = make_tiny_bert(seed=3), make_tiny_bert(seed=3), make_tiny_bert(seed=4)
    w = lambda m: m.encoder.layer[0].attention.self.query.weight  # noqa: E731
    assert torch.equal(w(a), w(b)) and not torch.equal(w(a), w(c))


@pytest.mark.slow
def test_real_default_minilm_truncated_to_two_layers():
    plm = load_plm("default", num_layers=2)
    assert plm.config.hidden_size == 384
    assert len(plm.encoder.layer) == 2
    assert num_frozen_layers(plm) == 0  # 2 trainable of 2 layers


# --- attention pooling and encoders -------------------------------------------------------


def test_attention_pooling_ignores_padded_positions():
    torch.manual_seed(0)
    pool = AttentionPooling(8, 4)
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    changed = x.clone()
    changed[mask == 0] = torch.randn(int((mask == 0).sum()), 8) * 100
    assert torch.equal(pool(x, mask), pool(changed, mask))


def test_attention_pooling_all_padding_row_is_zero_not_nan():
    pool = AttentionPooling(8, 4)
    out = pool(torch.randn(2, 3, 8), torch.tensor([[0, 0, 0], [1, 1, 0]]))
    assert torch.isfinite(out).all()
    assert torch.equal(out[0], torch.zeros(8))


def test_attention_pooling_is_a_softmax_weighted_sum():
    torch.manual_seed(0)
    pool = AttentionPooling(8, 4)
    x = torch.randn(1, 3, 8)
    logits = pool.query(torch.tanh(pool.proj(x[0, :2]))).squeeze(-1)
    expected = torch.softmax(logits, 0) @ x[0, :2]
    assert torch.allclose(pool(x, torch.tensor([[1, 1, 0]])), expected.unsqueeze(0), atol=1e-6)


def test_news_encoder_ignores_padding_of_shorter_titles():
    encoder = NewsEncoder(make_tiny_bert(), news_dim=16, query_dim=8).eval()
    titles = random_titles(6)
    short = min(range(1, 7), key=lambda i: len(titles[i]))
    tokens = NewsTokens.from_lists(titles)
    batch = tokens.batch([short, 1, 2, 3, 4, 5, 6])
    assert batch["attention_mask"][0].eq(0).any()  # the short title is padded in this batch
    assert torch.allclose(encoder(tokens.batch([short])), encoder(batch)[:1], atol=1e-5)


def test_news_encoder_output_shape():
    encoder = NewsEncoder(make_tiny_bert(), news_dim=16, query_dim=8)
    assert encoder(NewsTokens.from_lists(random_titles(3)).batch([1, 2, 3])).shape == (3, 16)


def test_user_encoder_empty_history_gets_the_learned_default():
    enc = UserEncoder(16, 8)
    with torch.no_grad():
        enc.empty_user.fill_(0.5)
    users = enc(torch.randn(2, 4, 16), torch.tensor([[0, 0, 0, 0], [1, 1, 0, 0]]).bool())
    assert torch.equal(users[0], torch.full((16,), 0.5))
    assert not torch.equal(users[1], torch.full((16,), 0.5))


# --- PLM-NR -------------------------------------------------------------------------------


def train_rows() -> pa.Table:
    return pa.table(
        {
            "history": pa.array([[1, 2, 3, 4], [2, 5], []], pa.list_(pa.int32())),
            "candidates": pa.array([[6, 7, 8], [1, 9, 2], [11, 12, 13]], pa.list_(pa.int32())),
        }
    )


def test_plmnr_scores_one_row_per_sample_one_column_per_candidate():
    model = tiny_plmnr()
    scores = model(collate_train(train_rows(), NewsTokens.from_lists(random_titles(13))))
    assert scores.shape == (3, 3)
    assert torch.isfinite(scores).all()


def test_click_loss_is_cross_entropy_with_the_click_at_index_0():
    scores = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    expected = -(torch.log_softmax(scores, dim=1)[:, 0]).mean()
    assert torch.allclose(click_loss(scores), expected)
    assert click_loss(torch.tensor([[50.0, 0.0, 0.0]])) < 1e-6


def test_unique_news_batching_equals_encoding_every_occurrence():
    model = tiny_plmnr()
    titles = random_titles(13)
    tokens = NewsTokens.from_lists(titles)
    scores = model(collate_train(train_rows(), tokens))
    # naive: encode each history and candidate list on its own (duplicates encoded again)
    rows = train_rows().to_pylist()
    for row, (hist, cands) in enumerate((r["history"], r["candidates"]) for r in rows):
        cand_vecs = model.news_encoder(tokens.batch(cands))
        if hist:
            hist_vecs = model.news_encoder(tokens.batch(hist))
            user = model.user_encoder(hist_vecs[None], torch.ones(1, len(hist), dtype=torch.bool))[0]
        else:
            user = model.user_encoder.empty_user
        assert torch.allclose(scores[row], cand_vecs @ user, atol=1e-4)


def test_collate_train_encodes_each_distinct_news_once():
    batch = collate_train(train_rows(), NewsTokens.from_lists(random_titles(13)))
    assert batch["news_index"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13]
    assert batch["news_tokens"]["input_ids"].shape[0] == 12
    news = batch["news_index"]
    assert news[batch["candidates"]].tolist() == [[6, 7, 8], [1, 9, 2], [11, 12, 13]]
    assert (news[batch["history"]] * batch["history_mask"]).tolist() == [[1, 2, 3, 4], [2, 5, 0, 0], [0, 0, 0, 0]]
    assert batch["history_mask"].sum(1).tolist() == [4, 2, 0]


def test_collate_train_keeps_the_most_recent_clicks():
    batch = collate_train(train_rows(), NewsTokens.from_lists(random_titles(13)), history_len=3)
    hist = batch["news_index"][batch["history"]] * batch["history_mask"]
    assert hist.tolist() == [[2, 3, 4], [2, 5, 0], [0, 0, 0]]


def test_collate_train_accepts_rows_as_dicts():
    tokens = NewsTokens.from_lists(random_titles(13))
    a = collate_train(train_rows(), tokens)
    b = collate_train(train_rows().to_pylist(), tokens)
    for key in ("news_index", "history", "history_mask", "candidates", "candidate_mask"):
        assert torch.equal(a[key], b[key])


def test_collate_train_pads_titles_to_the_longest_in_the_batch():
    titles = random_titles(13)
    batch = collate_train(train_rows(), NewsTokens.from_lists(titles))
    longest = max(len(titles[i]) for i in batch["news_index"].tolist())
    assert batch["news_tokens"]["input_ids"].shape[1] == longest
    lengths = [len(titles[i]) for i in batch["news_index"].tolist()]
    assert batch["news_tokens"]["attention_mask"].sum(1).tolist() == lengths


def test_collate_train_rejects_a_padding_candidate():
    rows = [{"history": [1], "candidates": [2, 0, 3]}]
    with pytest.raises(DataError, match="candidate news_index 0"):
        collate_train(rows, NewsTokens.from_lists(random_titles(3)))


def test_news_tokens_from_a_table_keyed_by_news_index():
    table = pa.table(
        {
            "news_index": pa.array([3, 1], pa.int32()),
            "title_ids": pa.array([[101, 7, 102], [101, 5, 6, 102]], pa.list_(pa.int32())),
        }
    )
    tokens = NewsTokens(table)
    assert tokens.batch([1, 3])["input_ids"].tolist() == [[101, 5, 6, 102], [101, 7, 102, 0]]
    with pytest.raises(DataError, match="news_index 4"):
        tokens.batch([4])


def test_only_the_top_layers_and_heads_get_gradients():
    model = tiny_plmnr(num_layers=3, trainable_layers=1).train()
    loss = click_loss(model(collate_train(train_rows(), NewsTokens.from_lists(random_titles(13)))))
    loss.backward()
    for name, p in model.named_parameters():
        top_or_head = not name.startswith("news_encoder.plm.") or ".layer.2." in name
        assert p.requires_grad == top_or_head, name
        if top_or_head:  # empty_user too: the third sample has no history
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def test_frozen_bottom_stays_in_eval_mode_when_training():
    model = tiny_plmnr(num_layers=3, trainable_layers=1).train()
    plm = model.plm
    assert not plm.embeddings.training and not plm.encoder.layer[1].training
    assert plm.encoder.layer[2].training and model.user_encoder.training


def test_checkpoint_round_trip_gives_the_same_scores(tmp_path):
    model = tiny_plmnr()
    batch = collate_train(train_rows(), NewsTokens.from_lists(random_titles(13)))
    model.save_pretrained(tmp_path / "teacher", trained_from="test")
    loaded = PLMNR.from_pretrained(tmp_path / "teacher").eval()
    assert torch.allclose(model(batch), loaded(batch), atol=1e-6)
    assert loaded.config == SMALL


def test_news_tokens_rejects_a_duplicated_news_index():
    ids = pa.array([[101, 102], [101, 102]], pa.list_(pa.int32()))
    table = pa.table({"news_index": pa.array([2, 2], pa.int32()), "title_ids": ids})
    with pytest.raises(DataError, match="unique"):
        NewsTokens(table)


def test_save_pretrained_writes_the_given_gathered_state_not_the_local_one(tmp_path):
    """Under FSDP / ZeRO-3 the main process's own tensors are shards; the state gathered by
    full_state_dict is what must be written."""
    from tinynewsrec.models.plmnr import PLMNR, PLMNRConfig

    model = PLMNR(make_tiny_bert(num_layers=2, hidden=32, seed=0), PLMNRConfig(news_dim=8, news_query_dim=4,
                                                                               user_query_dim=4))
    gathered = {k: torch.full_like(v, 0.5) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.save_pretrained(tmp_path / "m", state_dict=gathered)
    loaded = PLMNR.from_pretrained(tmp_path / "m")
    for k, v in loaded.state_dict().items():
        if v.is_floating_point():
            assert torch.all(v == 0.5), k


def test_a_resume_point_saved_with_a_sharded_optimizer_restores_weights_and_restarts_adam(tmp_path, caplog):
    from tinynewsrec.train.checkpoint import Checkpointer

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    Checkpointer(tmp_path, "fp").save(model, optimizer, {"epoch": 1}, optimizer_sharded=True)
    fresh = torch.nn.Linear(3, 2)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=0.1)
    with caplog.at_level("WARNING", logger="tinynewsrec"):
        assert Checkpointer(tmp_path, "fp").load(fresh, fresh_opt) == {"epoch": 1}
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in saved.items())
    assert fresh_opt.state_dict()["state"] == {} and "Adam restarts" in caplog.text
