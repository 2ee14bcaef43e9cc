"""Student distillation: both Tiny-NewsRec stages and the baselines through their stage entry
points on the tiny synthetic world (tiny random 3-layer BERT, hidden 32), and each method's
loss falling over a few steps on a fixed batch."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from tinynewsrec.distill.layer_map import layer_map
from tinynewsrec.distill.students import (
    NewsBERTPair, Stage1Student, Stage2Student, LastLayersKDStudent, attention_scores, build_student, encoder_states,
)
from tinynewsrec.errors import DataError, ParamError
from tinynewsrec.teacher_emb import read_teacher_emb
from tinynewsrec.models.cache import FrozenCache
from tinynewsrec.models.plm import load_plm
from tinynewsrec.models.plmnr import PLMNR, NewsTokens, collate_train
from tinynewsrec.params import load_params
from tinynewsrec.train.distill import DistillPaths, read_teachers
from tinynewsrec.train.post_train import TitleBodyBatches, news_with_body
from conftest import load_stage
from test_evaluate import SMALL, make_world

STAGE1 = {"epochs": 1, "batch_size": 8, "lr": 1e-3, "negatives": 3, "max_steps_per_epoch": 3}
STAGE2 = {"epochs": 1, "batch_size": 8, "lr": 1e-3, "max_steps_per_epoch": 3}


def set_student(folder, **student):
    """Rewrite the world's params.yaml with these student params (the rest as make_world left it)."""
    import yaml

    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["student"] = {**params.get("student", {}), "layers": 2, "teacher": 1, **student}
    params["stage1"] = {**params.get("stage1", {}), **STAGE1}
    params["stage2"] = {**params.get("stage2", {}), **STAGE2}
    params["plm"]["news_dim"] = SMALL.news_dim  # the stand-in teachers' size
    params["eval"]["models"] = ["student"]
    (folder / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """make_world's data, caches, post-trained steps and 2 teachers, plus their exports."""
    root = make_world(tmp_path_factory.mktemp("world"), teachers=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for i in ("0", "1"):
            load_stage("export_teacher_emb").main([i])
    return root


def copy_world(world, tmp_path, monkeypatch, ignore=None, **student):
    """A scratch copy of the world (the current folder) with these student params."""
    folder = tmp_path / "w"
    shutil.copytree(world, folder, ignore=ignore)
    monkeypatch.chdir(folder)
    set_student(folder, **student)
    return folder


def run_student(world, tmp_path, monkeypatch, **student):
    """Copy the world, set the student params and run distill_stage1 and distill_stage2."""
    folder = copy_world(world, tmp_path, monkeypatch, **student)
    load_stage("distill_stage1").main()
    load_stage("distill_stage2").main()
    return folder


def config(folder):
    return json.loads((folder / "config.json").read_text())


# --- through the stages -------------------------------------------------------------------------


def test_tinynewsrec_runs_both_stages_and_the_student_is_evaluated(world, tmp_path, monkeypatch):
    folder = run_student(world, tmp_path, monkeypatch, method="tinynewsrec")
    stage1 = config(folder / "models/student_stage1")
    assert stage1["model"] == "plmnr" and stage1["num_layers"] == 2 and stage1["stage"] == "distill_stage1"
    assert stage1["steps"] == STAGE1["max_steps_per_epoch"] and stage1["teachers"] == [0, 1]
    student = config(folder / "models/student")
    assert student["method"] == "tinynewsrec" and student["num_layers"] == 2 and student["stage"] == "distill_stage2"
    assert student["steps"] == STAGE2["max_steps_per_epoch"] and np.isfinite(student["train_loss"])
    summary = json.loads((folder / "metrics/student/metrics.json").read_text())
    assert {"weight_teacher_0", "weight_teacher_1", "news_mse", "user_mse", "soft_ce"} <= set(summary["train"])
    assert (folder / "metrics/student/plots/metrics").is_dir()
    assert not (folder / ".cache/checkpoints/student").exists()  # the resume point is dropped

    # stage 2 starts from the stage-1 student: its PLM moved on from there, not from the raw PLM
    s1 = PLMNR.from_pretrained(folder / "models/student_stage1")
    s2 = PLMNR.from_pretrained(folder / "models/student")
    raw = load_plm(str(folder / "tiny_bert"), num_layers=2)
    w = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(s1.plm.state_dict()[w], raw.state_dict()[w])
    assert not torch.equal(s2.plm.state_dict()[w], s1.plm.state_dict()[w])

    load_stage("evaluate").main()
    results = json.loads((folder / "metrics/eval.json").read_text())
    costs = json.loads((folder / "metrics/efficiency.json").read_text())
    assert {"teacher_0", "teacher_1", "student", "popularity"} <= set(results)
    assert 0.0 <= results["student"]["auc"] <= 1.0
    assert costs["student"]["layers"] == 2 and costs["teacher_0"]["layers"] == 3
    assert costs["student"]["params"] < costs["teacher_0"]["params"]
    assert (folder / "data/eval/prediction_student.txt").exists()


@pytest.mark.parametrize("method", ["no_kd", "last_layers_kd", "newsbert"])
def test_baselines_skip_stage1_and_train_a_student(world, tmp_path, monkeypatch, method):
    folder = run_student(world, tmp_path, monkeypatch, method=method)
    assert config(folder / "models/student_stage1") == {
        "model": "unused", "method": method, "reason": f"student.method {method} has no first distillation stage"}
    student = config(folder / "models/student")
    assert student["method"] == method and student["num_layers"] == 2 and np.isfinite(student["train_loss"])
    if method != "no_kd":
        assert student["teacher"] == 1 and student["layer_map"] == [[1, 2], [2, 3]]
    summary = json.loads((folder / "metrics/student/metrics.json").read_text())["train"]
    expected = {"no_kd": {"accuracy"}, "last_layers_kd": {"hidden_mse", "attention_mse", "soft_ce"},
                "newsbert": {"teacher_ce", "hidden_mse", "news_mse", "user_mse"}}[method]
    assert expected <= set(summary)


def test_last_layers_kd_teacher_reads_the_cache_when_the_matched_layers_are_above_it(world, tmp_path, monkeypatch, caplog):
    caplog.set_level("INFO", logger="tinynewsrec")
    folder = run_student(world, tmp_path, monkeypatch, method="last_layers_kd", distill_layers=1)
    assert config(folder / "models/student")["layer_map"] == [[2, 3]]
    assert "the teacher reads the frozen-layer cache" in caplog.text


def test_a_one_layer_student_of_a_three_layer_teacher(world, tmp_path, monkeypatch):
    folder = run_student(world, tmp_path, monkeypatch, method="tinynewsrec", layers=1)
    assert config(folder / "models/student")["num_layers"] == 1


def test_stage2_tinynewsrec_after_a_skipped_stage1_names_the_stage_to_rerun(world, tmp_path, monkeypatch):
    folder = run_student(world, tmp_path, monkeypatch, method="no_kd")
    set_student(folder, method="tinynewsrec")
    with pytest.raises(DataError, match="distill_stage1"):
        load_stage("distill_stage2").main()


def test_too_deep_a_student_names_the_param(world, tmp_path, monkeypatch):
    folder = copy_world(world, tmp_path, monkeypatch, method="tinynewsrec", layers=4)
    with pytest.raises(ParamError, match=r"student\.layers.*between 1 and 3"):
        load_stage("distill_stage1").main()
    assert not (folder / "models/student_stage1").exists()


def test_a_teacher_outside_teacher_ids_names_the_param(world, tmp_path, monkeypatch):
    copy_world(world, tmp_path, monkeypatch, method="last_layers_kd", teacher=5)
    with pytest.raises(ParamError, match=r"student\.teacher must be one of teacher\.ids \[0, 1\]"):
        load_stage("distill_stage2").main()


def test_missing_teacher_embeddings_name_the_export_stage(world, tmp_path, monkeypatch):
    copy_world(world, tmp_path, monkeypatch, ignore=shutil.ignore_patterns("teacher_emb"), method="tinynewsrec")
    with pytest.raises(DataError, match="teacher_0.safetensors is missing.*export_teacher_emb"):
        load_stage("distill_stage1").main()


def test_the_export_carries_the_teachers_user_encoder(world):
    tensors, meta = read_teacher_emb(world / "data/teacher_emb/teacher_1.safetensors")
    teacher = PLMNR.from_pretrained(world / "models/teacher_1")
    for k, v in teacher.user_encoder.state_dict().items():
        assert torch.equal(tensors[f"user_encoder.{k}"], v)
    _, users = read_teachers(DistillPaths(teacher_emb=world / "data/teacher_emb"), [0, 1], ("news",), 2,
                             user_encoders=True)
    assert all(not p.requires_grad for u in users for p in u.parameters())
    assert all(torch.equal(a, b) for a, b in zip(users[1].state_dict().values(),
                                                  teacher.user_encoder.state_dict().values()))


# --- the models ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parts(world):
    """The tiny world's tokens, samples, cache and teachers, loaded once."""
    tokens = pq.read_table(world / "data/tokens/news.parquet")
    samples = pq.read_table(world / "data/samples/train.parquet", columns=["history", "candidates"])
    return {
        "world": world,
        "tokens": tokens,
        "titles": NewsTokens(tokens, "title_ids"),
        "samples": samples,
        "cache": FrozenCache(world / "data/cache/frozen/title"),
    }


def student_of(parts, layers=2, seed=0):
    torch.manual_seed(seed)
    plm = load_plm(str(parts["world"] / "tiny_bert"), num_layers=layers, trainable_layers=layers)
    return PLMNR(plm, SMALL)


def teacher_of(parts, trainable=0):
    return PLMNR.from_pretrained(parts["world"] / "models/teacher_1", trainable_layers=trainable)


def click_batch(parts, teacher_states=None, teacher_news=None, n=8):
    batch = collate_train(parts["samples"].slice(0, n), parts["titles"], history_len=20)
    if teacher_states is not None:
        batch["teacher_states"] = teacher_states.batch(batch["news_index"].numpy())
    if teacher_news is not None:
        batch["teacher_news"] = teacher_news[:, batch["news_index"]]
    return batch


def falls(module, batch, steps=12, lr=3e-3):
    """Loss before and after ``steps`` Adam steps on one fixed batch (dropout off)."""
    torch.manual_seed(0)
    trainable = list({id(p): p for p in module.parameters() if p.requires_grad}.values())
    opt = torch.optim.Adam(trainable, lr=lr)
    module.train()
    for m in module.modules():  # no dropout: the same function at every step
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    losses, parts = [], []
    for _ in range(steps):
        loss, part = module(batch)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        parts.append(part)
    falls.parts = parts[0], parts[-1]
    return losses[0], losses[-1]


def test_encoder_states_match_the_news_encoder_and_hf_attention(parts):
    student = student_of(parts).eval()
    batch = parts["titles"].batch([1, 2, 3, 4])
    with torch.no_grad():
        vecs, hidden, attn = encoder_states(student.news_encoder, batch, [1, 2])
        torch.testing.assert_close(vecs, student.news_encoder(batch))
        out = student.plm(**batch, output_hidden_states=True)
        for j in range(3):
            torch.testing.assert_close(hidden[j], out.hidden_states[j], rtol=1e-5, atol=1e-5)
        # softmax(scores + padding mask) is the eager attention's probabilities
        student.plm.config._attn_implementation = "eager"
        probs = student.plm(**batch, output_attentions=True).attentions
        additive = (1.0 - batch["attention_mask"][:, None, None, :].float()) * torch.finfo(torch.float32).min
        for j in (1, 2):
            torch.testing.assert_close(torch.softmax(attn[j - 1] + additive, dim=-1), probs[j - 1],
                                       rtol=1e-5, atol=1e-6)
        assert attention_scores(student.plm.encoder.layer[0], hidden[0]).shape == (4, 2, hidden[0].shape[1],
                                                                                   hidden[0].shape[1])


def test_encoder_states_from_the_cache_start_at_its_layer(parts):
    teacher = teacher_of(parts).eval()
    news = [1, 2, 3]
    with torch.no_grad():
        v_cache, h_cache, _ = encoder_states(teacher.news_encoder, parts["cache"].batch(news), [3])
        v_ids, h_ids, _ = encoder_states(teacher.news_encoder, parts["titles"].batch(news), [3])
    assert h_cache[0] is None and h_cache[1] is None and h_cache[2] is not None
    torch.testing.assert_close(v_cache, v_ids, rtol=1e-4, atol=1e-5)
    real = parts["titles"].batch(news)["attention_mask"].bool()  # padded tokens' states differ (and are masked)
    torch.testing.assert_close(h_cache[3][real], h_ids[3][real], rtol=1e-4, atol=1e-5)


def test_stage1_loss_falls(parts):
    tokens = parts["tokens"]
    body_news, _ = news_with_body(tokens)
    all_news = tokens.column("news_index").to_numpy()
    pools = []

    class Recorder:
        def batch(self, idx):
            pools.append(np.asarray(idx))
            return parts["titles"].batch(idx)

    batches = TitleBodyBatches(body_news, all_news, Recorder(), NewsTokens(tokens, "body_ids"), 3, 0)
    batch = batches(np.arange(8))
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(2, len(parts["titles"]), 12, generator=gen)  # 2 teachers, d_t = 12 != d_s
    batch["teacher_titles"] = table[:, torch.from_numpy(pools[-1])[batch["candidates"]]]
    batch["teacher_bodies"] = table[:, batch["news_index"]]
    first, last = falls(Stage1Student(student_of(parts), 2, 12), batch)
    assert last < 0.8 * first


def test_stage2_and_no_kd_losses_fall(parts):
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(2, len(parts["titles"]), SMALL.news_dim, generator=gen)
    users = [PLMNR.from_pretrained(parts["world"] / f"models/teacher_{i}").user_encoder for i in (0, 1)]
    distilled = Stage2Student(student_of(parts), users, SMALL.news_dim, tau=1.0, ce_weight=0.2)
    first, last = falls(distilled, click_batch(parts, teacher_news=table))
    assert last < 0.8 * first
    assert all(not p.requires_grad for p in distilled.teacher_users.parameters())
    first, last = falls(Stage2Student(student_of(parts)), click_batch(parts))
    assert last < 0.8 * first


def test_last_layers_kd_loss_falls_and_the_teacher_stays_frozen(parts):
    teacher = teacher_of(parts)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    module = LastLayersKDStudent(student_of(parts), teacher, layer_map(3, 2, k=1, strategy="last"))
    first, last = falls(module, click_batch(parts, teacher_states=parts["cache"]))
    assert last < first  # its soft CE cannot go below the teacher's entropy, so the total falls less
    start, end = falls.parts
    assert end["hidden_mse"] < 0.8 * start["hidden_mse"] and end["attention_mse"] < 0.8 * start["attention_mse"]
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_newsbert_loss_falls_with_shared_heads(parts):
    teacher = teacher_of(parts, trainable=1)
    student = student_of(parts)
    pair = NewsBERTPair(student, teacher, layer_map(3, 2, k=1, strategy="last"))
    assert student.news_encoder.pooling is teacher.news_encoder.pooling
    assert student.user_encoder is teacher.user_encoder
    first, last = falls(pair, click_batch(parts, teacher_states=parts["cache"]))
    assert last < 0.8 * first


def test_build_student_keeps_the_first_layers_all_trainable_and_embeddings_frozen(parts):
    student = build_student(str(parts["world"] / "tiny_bert"), 2, SMALL.news_dim, seed=0)
    full = load_plm(str(parts["world"] / "tiny_bert"))
    assert len(student.plm.encoder.layer) == 2
    for name, value in student.plm.state_dict().items():
        torch.testing.assert_close(value, full.state_dict()[name])
    assert all(p.requires_grad for p in student.plm.encoder.parameters())
    assert not any(p.requires_grad for p in student.plm.embeddings.parameters())


# --- the registry: a new method, NewsBERT's momentum distillation ---------------------------------


def test_a_method_added_as_one_module_trains_through_the_stages(world, tmp_path, monkeypatch, toy_method):
    folder = run_student(world, tmp_path, monkeypatch, method=toy_method)
    assert config(folder / "models/student_stage1")["model"] == "unused"  # no stage 1: the registry says so
    student = config(folder / "models/student")
    assert student["method"] == toy_method and student["toy"] is True and student["ce_weight"] == 0.5
    assert student["steps"] == STAGE2["max_steps_per_epoch"] and np.isfinite(student["train_loss"])
    assert PLMNR.from_pretrained(folder / "models/student").plm.config.hidden_size == 32


def newsbert_step(world, tmp_path, monkeypatch, **student):
    """NewsBERT's training step built by its method module in a copy of the world."""
    from accelerate import Accelerator

    from tinynewsrec.distill.methods import MethodInputs, get_method
    from tinynewsrec.train.distill import read_tokens

    copy_world(world, tmp_path, monkeypatch, method="newsbert", **student)
    params = load_params()
    tokens = read_tokens(DistillPaths())
    n_slots = int(tokens.column("news_index").to_numpy().max()) + 1
    inputs = MethodInputs(params, Accelerator(), DistillPaths(), tokens, n_slots, 0.1)
    return params, get_method("newsbert").build_stage2(inputs)


def test_newsbert_momentum_reaches_every_matched_student_tensor(world, tmp_path, monkeypatch, parts):
    from tinynewsrec.distill.losses import layer_param_groups

    # uniform 3 -> 2 matches teacher layers 2 and 3, while only 1 teacher layer trains by plm.trainable_layers
    params, step = newsbert_step(world, tmp_path, monkeypatch, layer_map="uniform")
    assert params.plm.trainable_layers == 1 and step.info["layer_map"] == [[1, 2], [2, 3]]
    assert step.info["teacher_trainable_layers"] == 2
    pair = step.module
    s_params, t_groups = layer_param_groups(pair.student.plm.encoder.layer, pair.teacher.plm.encoder.layer,
                                            [(1, 2), (2, 3)])
    assert len(s_params) == len(list(pair.student.plm.encoder.parameters()))  # every tensor of both layers

    batch = click_batch(parts)
    batch.update(step.collate_extra(batch))
    loss, _ = pair(batch)
    loss.backward()
    before = [p.grad.clone() for p in s_params]
    teacher = [[t.grad.clone() for t in group] for group in t_groups]
    step.before_optimizer_step(pair)
    beta = params.stage2.beta
    for p, g_s, g_t in zip(s_params, before, teacher):
        torch.testing.assert_close(p.grad, (1 - beta) * g_s + beta * g_t[0])
        assert not torch.equal(p.grad, g_s)  # none skipped


def test_newsbert_default_map_keeps_the_teachers_trainable_layers(world, tmp_path, monkeypatch):
    params, step = newsbert_step(world, tmp_path, monkeypatch, distill_layers=1)
    assert step.info["layer_map"] == [[2, 3]] and step.info["teacher_trainable_layers"] == params.plm.trainable_layers


def test_frozen_teachers_stay_in_eval_mode_while_the_student_trains(parts):
    module = LastLayersKDStudent(student_of(parts), teacher_of(parts), layer_map(3, 2, k=1, strategy="last")).train()
    assert module.student.training and not any(m.training for m in module.teacher.modules())
    users = [PLMNR.from_pretrained(parts["world"] / f"models/teacher_{i}").user_encoder for i in (0, 1)]
    distilled = Stage2Student(student_of(parts), users, SMALL.news_dim).train()
    assert distilled.student.user_encoder.training and not any(m.training for m in distilled.teacher_users.modules())
