"""ROSITA pruning (models/pruned.py) on tiny random BERTs (hidden 32, 4 heads, FFN 128)."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from tinynewsrec.errors import DataError, ParamError
from tinynewsrec.models.plm import freeze_plm, make_tiny_bert
from tinynewsrec.models.plmnr import PLMNR, PLMNRConfig
from tinynewsrec.models.pruned import (
    FactorisedEmbedding,
    PrunedPLMNR,
    count_parameters,
    factorise_embeddings,
    ffn_scores,
    gradient_sums,
    head_scores,
    load_pruned_plm,
    prune_ffn,
    prune_heads,
    prune_plm,
    pruned_student,
    taylor_importance,
    taylor_score,
    top_indices,
)

VOCAB, HIDDEN, HEADS, FFN, DEPTH = 200, 32, 4, 128, 2
SMALL = PLMNRConfig(news_dim=16, news_query_dim=8, user_query_dim=8)


def tiny_teacher(trainable_layers: int | None = None, seed: int = 0) -> PLMNR:
    plm = make_tiny_bert(num_layers=DEPTH, hidden=HIDDEN, heads=HEADS, vocab_size=VOCAB, seed=seed)
    if trainable_layers is not None:
        freeze_plm(plm, trainable_layers)
    torch.manual_seed(seed)
    return PLMNR(plm, SMALL).eval()


def tiny_batch(seed: int = 0, num_news: int = 6, length: int = 7) -> dict:
    """A unique-news batch (layout of plmnr.collate_train): 2 users, 3 history slots, 3 candidates."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (num_news, length), generator=g)
    lengths = torch.randint(3, length + 1, (num_news,), generator=g)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    return {
        "news_tokens": {"input_ids": ids * mask, "attention_mask": mask},
        "history": torch.tensor([[0, 1, 2], [3, 4, 0]]),
        "history_mask": torch.tensor([[True, True, True], [True, True, False]]),
        "candidates": torch.tensor([[3, 5, 0], [1, 2, 5]]),
        "candidate_mask": torch.ones(2, 3, dtype=torch.bool),
    }


def random_scores(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"heads": [torch.rand(HEADS, generator=g) for _ in range(DEPTH)],
            "ffn": [torch.rand(FFN, generator=g) for _ in range(DEPTH)], "batches": 1}


def hidden_states(plm, batch: dict) -> torch.Tensor:
    tokens = batch["news_tokens"]
    with torch.no_grad():
        return plm(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state


@pytest.mark.parametrize("rank", [None, HIDDEN])
def test_pruning_that_keeps_everything_changes_nothing(rank):
    teacher, batch = tiny_teacher(), tiny_batch()
    student = pruned_student(teacher, random_scores(), keep_heads=HEADS, ffn_dim=FFN, num_layers=DEPTH,
                             embedding_rank=rank).eval()
    with torch.no_grad():
        torch.testing.assert_close(student.encode_news(batch["news_tokens"]),
                                   teacher.encode_news(batch["news_tokens"]), atol=1e-5, rtol=0)
        torch.testing.assert_close(student(batch), teacher(batch), atol=1e-5, rtol=0)


def test_pruning_heads_equals_masking_them():
    plm, batch = tiny_teacher().plm, tiny_batch()
    pruned, masked = copy.deepcopy(plm), copy.deepcopy(plm)
    keep = {0: [1, 3], 1: [0, 1, 2]}
    d = HIDDEN // HEADS
    for i, heads in keep.items():
        prune_heads(pruned.encoder.layer[i], heads)
        with torch.no_grad():
            for h in set(range(HEADS)) - set(heads):  # the dropped heads' context columns contribute 0
                masked.encoder.layer[i].attention.output.dense.weight[:, h * d:(h + 1) * d] = 0
    assert pruned.encoder.layer[0].attention.self.query.weight.shape == (2 * d, HIDDEN)
    assert pruned.encoder.layer[0].attention.output.dense.weight.shape == (HIDDEN, 2 * d)
    torch.testing.assert_close(hidden_states(pruned, batch), hidden_states(masked, batch), atol=1e-5, rtol=0)


def test_prune_heads_refuses_to_keep_no_head():
    with pytest.raises(ValueError, match="at least one"):
        prune_heads(tiny_teacher().plm.encoder.layer[0], [])


def test_pruning_ffn_neurons_equals_zeroing_their_output_columns():
    plm, batch = tiny_teacher().plm, tiny_batch()
    pruned, masked = copy.deepcopy(plm), copy.deepcopy(plm)
    keep = sorted(torch.randperm(FFN, generator=torch.Generator().manual_seed(1))[:40].tolist())
    drop = sorted(set(range(FFN)) - set(keep))
    for i in range(DEPTH):
        prune_ffn(pruned.encoder.layer[i], keep)
        with torch.no_grad():
            masked.encoder.layer[i].output.dense.weight[:, drop] = 0
    assert pruned.encoder.layer[0].intermediate.dense.weight.shape == (40, HIDDEN)
    assert pruned.encoder.layer[0].output.dense.weight.shape == (HIDDEN, 40)
    torch.testing.assert_close(hidden_states(pruned, batch), hidden_states(masked, batch), atol=1e-5, rtol=0)


def test_svd_embedding_is_exact_at_full_rank_and_small_at_low_rank():
    plm = tiny_teacher().plm
    ids = torch.randint(0, VOCAB, (3, 5), generator=torch.Generator().manual_seed(0))
    emb = plm.embeddings.word_embeddings
    full = FactorisedEmbedding.from_weight(emb.weight, rank=10 * HIDDEN)  # clipped to min(V, H)
    assert full.rank == HIDDEN
    with torch.no_grad():
        torch.testing.assert_close(full(ids), emb(ids), atol=1e-5, rtol=0)
        torch.testing.assert_close(full.weight, emb.weight, atol=1e-5, rtol=0)
    low = factorise_embeddings(plm, 8)
    assert plm.embeddings.word_embeddings is low and low(ids).shape == (3, 5, HIDDEN)
    assert count_parameters(low) == VOCAB * 8 + 8 * HIDDEN
    assert low.weight.shape == (VOCAB, HIDDEN)


def test_taylor_score_and_its_aggregation_by_hand():
    # L = w . x for w = (2, -3): dL/dw = x; batches x = (1, 2) and (-1, 1)
    w = torch.tensor([2.0, -3.0], requires_grad=True)
    batches = [torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 1.0])]
    (g_abs,), n = gradient_sums(lambda x: (w * x).sum(), [w], batches)
    (g_sum,), _ = gradient_sums(lambda x: (w * x).sum(), [w], batches, absolute=False)
    assert n == 2 and w.grad is None
    assert torch.equal(g_abs, torch.tensor([2.0, 3.0])) and torch.equal(g_sum, torch.tensor([0.0, 3.0]))
    assert torch.equal(taylor_score(w, g_abs), torch.tensor([4.0, 9.0]))
    assert torch.equal(taylor_score(w, g_sum), torch.tensor([0.0, 9.0]))
    # heads: attention output dense score [H=2, all_head=4], 2 heads of 2 columns
    s_attn = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    assert torch.equal(head_scores(s_attn, 2), torch.tensor([14.0, 22.0]))
    # neurons: intermediate [I=3, H=2] row sums + output [H=2, I=3] column sums
    s_in = torch.tensor([[1.0, 1.0], [0.0, 2.0], [3.0, 0.5]])
    s_out = torch.tensor([[1.0, 0.0, 2.0], [1.0, 4.0, 0.0]])
    assert torch.equal(ffn_scores(s_in, s_out), torch.tensor([4.0, 6.0, 5.5]))
    assert top_indices(torch.tensor([1.0, 3.0, 3.0, 0.0, 3.0]), 2) == [1, 2]  # ties: lower index


def test_taylor_importance_leaves_the_teacher_as_it_was():
    teacher = tiny_teacher(trainable_layers=1).train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    flags = {k: p.requires_grad for k, p in teacher.named_parameters()}
    scores = taylor_importance(teacher, [tiny_batch(0), tiny_batch(1)])
    assert scores["batches"] == 2 and teacher.training
    assert [s.shape for s in scores["heads"]] == [(HEADS,)] * DEPTH
    assert [s.shape for s in scores["ffn"]] == [(FFN,)] * DEPTH
    assert all(s.sum() > 0 for s in scores["heads"] + scores["ffn"])  # the frozen layer 0 is scored too
    assert teacher.news_encoder.num_frozen_layers == 1
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert {k: p.requires_grad for k, p in teacher.named_parameters()} == flags
    assert all(p.grad is None for p in teacher.parameters())


def test_pruned_student_round_trips_through_its_folder(tmp_path):
    teacher, batch = tiny_teacher(trainable_layers=1), tiny_batch()
    student = pruned_student(teacher, random_scores(), keep_heads=2, ffn_dim=48, num_layers=1, embedding_rank=8)
    assert all(p.requires_grad for p in student.parameters()) and student.news_encoder.num_frozen_layers == -1
    assert student.pruning["heads_per_layer"] == [2] and len(student.pruning["heads"][0]) == 2
    assert count_parameters(student) < count_parameters(teacher)
    student.save_pretrained(tmp_path, method="rosita")
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["model"] == "pruned_plmnr" and meta["method"] == "rosita" and meta["num_layers"] == 1
    assert meta["pruning"] == {"heads_per_layer": [2], "ffn_per_layer": [48], "embedding_rank": 8}
    # plm/config.json keeps the unpruned widths (so AutoModel.from_pretrained cannot load it): ours does
    plm_config = json.loads((tmp_path / "plm" / "config.json").read_text())
    assert plm_config["num_attention_heads"] == HEADS and plm_config["intermediate_size"] == FFN
    loaded = PrunedPLMNR.from_pretrained(tmp_path).eval()
    assert not any(p.requires_grad for p in loaded.plm.parameters())
    student.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch), student(batch), atol=1e-6, rtol=0)
    trainable = PrunedPLMNR.from_pretrained(tmp_path, trainable_layers=None)
    assert all(p.requires_grad for p in trainable.plm.parameters())
    assert isinstance(load_pruned_plm(tmp_path / "plm").embeddings.word_embeddings, FactorisedEmbedding)


def test_broken_folders_give_a_data_error_naming_them(tmp_path):
    student = pruned_student(tiny_teacher(), random_scores(), keep_heads=2, ffn_dim=48, num_layers=1)
    student.save_pretrained(tmp_path)
    weights = tmp_path / "plm" / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match=str(tmp_path)):
        PrunedPLMNR.from_pretrained(tmp_path)
    weights.write_bytes(good)
    config = tmp_path / "plm" / "config.json"
    meta = json.loads(config.read_text())
    meta["pruning"]["ffn_per_layer"] = [40]
    config.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=str(tmp_path)):
        PrunedPLMNR.from_pretrained(tmp_path)
    (tmp_path / "heads.safetensors").unlink()
    with pytest.raises(DataError, match=str(tmp_path)):
        PrunedPLMNR.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "limits, key",
    [
        ({"keep_heads": 0}, r"rosita\.keep_heads"),
        ({"keep_heads": HEADS + 1}, r"rosita\.keep_heads"),
        ({"ffn_dim": FFN + 1}, r"rosita\.ffn_dim"),
        ({"num_layers": DEPTH + 1}, r"student\.layers"),
        ({"embedding_rank": 0}, r"rosita\.embedding_rank"),
    ],
)
def test_prune_plm_refuses_sizes_the_teacher_does_not_have(limits, key):
    plm = tiny_teacher().plm
    args = {"keep_heads": 2, "ffn_dim": 64, "num_layers": 1, "embedding_rank": None, **limits}
    with pytest.raises(ParamError, match=key):
        prune_plm(plm, random_scores(), **args)
    assert len(plm.encoder.layer) == DEPTH  # nothing was cut
