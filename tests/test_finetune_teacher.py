"""finetune_teacher through its real stage entry point, on the tiny synthetic world with a
tiny random BERT (3 layers, hidden 32; the top 2 train, so the frozen cache holds 1 layer)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from tinynewsrec.errors import DataError, ParamError
from tinynewsrec.models.cache import build_frozen_cache
from tinynewsrec.models.plm import load_plm, load_tokenizer, make_tiny_bert
from tinynewsrec.models.plmnr import PLMNR, PLMNRConfig
from tinynewsrec.train import finetune_teacher as finetune
from tinynewsrec.train.loop import NonFiniteLossError
from conftest import load_stage, write_params

TRAINABLE = 2
HEADS = PLMNRConfig(news_dim=16, news_query_dim=8, user_query_dim=8)
TEACHER = {"epochs": 1, "batch_size": 8, "lr": 1e-3, "max_steps_per_epoch": 3, "seed": 42, "ids": [0, 1]}


def set_params(folder, **teacher):
    write_params(folder, data={"size": "tiny", "history_len": 10},
                 plm={"name": str(folder / "tiny_bert"), "trainable_layers": TRAINABLE},
                 teacher={**TEACHER, **teacher})


def save_origin(plm_dir, dest, seed):
    torch.manual_seed(seed)
    model = PLMNR(load_plm(str(plm_dir), trainable_layers=TRAINABLE), HEADS)
    model.save_pretrained(dest, method="none", global_step=0)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """data (download + split of the tiny world), post_train step_0..1 and the frozen title cache."""
    root = tmp_path_factory.mktemp("world")
    plm_dir = root / "tiny_bert"
    make_tiny_bert(num_layers=3, hidden=32).save_pretrained(plm_dir)
    load_tokenizer("default").save_pretrained(plm_dir)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        set_params(root)
        load_stage("download").main()
        load_stage("split").main()
    for i in (0, 1):
        save_origin(plm_dir, root / f"models/post_train/step_{i}", seed=i)
    tokens = pq.read_table(root / "data/tokens/news.parquet")
    build_frozen_cache(load_plm(str(plm_dir), trainable_layers=TRAINABLE), tokens.column("title_ids"), 3 - TRAINABLE,
                       batch_size=64, out_path=root / "data/cache/frozen/title", dtype=np.float32,
                       progress=False, news_index=tokens.column("news_index").to_numpy())
    return root


@pytest.fixture
def work(world, workdir):
    """A fresh copy of the world as the current folder; the tiny BERT stays shared."""
    for name in ("data", "models"):
        shutil.copytree(world / name, workdir / name)
    (workdir / "tiny_bert").symlink_to(world / "tiny_bert")
    set_params(workdir)
    return workdir


def run(teacher_id=0):
    load_stage("finetune_teacher").main([str(teacher_id)])


def weights(folder):
    plm = load_file(str(folder / "plm/model.safetensors"))
    heads = load_file(str(folder / "heads.safetensors"))
    return {**{f"plm.{k}": v for k, v in plm.items()}, **heads}


def curve(folder, name="loss"):
    lines = (folder / f"plots/metrics/train/{name}.tsv").read_text().split("\n")
    assert lines[0] == f"step\t{name}"
    return [(int(s), float(v)) for s, v in (line.split("\t") for line in lines[1:] if line)]


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    """teacher_0 after 3 steps (shared by the tests that only read it)."""
    root = tmp_path_factory.mktemp("trained")
    for name in ("data", "models"):
        shutil.copytree(world / name, root / name)
    (root / "tiny_bert").symlink_to(world / "tiny_bert")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        set_params(root)
        run(0)
    return root


def test_stage_writes_a_loadable_teacher(trained):
    teacher = PLMNR.from_pretrained(trained / "models/teacher_0")
    config = json.loads((trained / "models/teacher_0/config.json").read_text())
    assert teacher.config == HEADS
    assert config["origin"]["path"] == "models/post_train/step_0"
    assert config["origin"]["method"] == "none"
    assert config["steps"] == 3 and config["epochs"] == 1 and config["seed"] == 42
    assert np.isfinite(config["train_loss"]) and 0 < config["train_loss"]
    assert not (trained / ".cache/checkpoints/teacher_0").exists()  # cleared after writing


def test_curves_go_to_dvclive(trained):
    assert [s for s, _ in curve(trained / "metrics/teacher_0")] == [1, 2, 3]
    assert len(curve(trained / "metrics/teacher_0", "accuracy")) == 3
    summary = json.loads((trained / "metrics/teacher_0/metrics.json").read_text())
    config = json.loads((trained / "models/teacher_0/config.json").read_text())
    assert summary["steps"] == 3 and summary["train"]["loss"] == pytest.approx(config["train_loss"])
    assert not (trained / "dvc.yaml").exists()


def test_only_the_top_layers_and_heads_change(trained):
    before = weights(trained / "models/post_train/step_0")
    after = weights(trained / "models/teacher_0")
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    frozen = ("plm.embeddings.", "plm.encoder.layer.0.")
    assert not {k for k in changed if k.startswith(frozen)}
    assert {k for k in before if k.startswith(("plm.encoder.layer.1.", "plm.encoder.layer.2."))} <= changed
    assert {"news_encoder.dense.weight", "user_encoder.pooling.proj.weight"} <= changed


def test_the_loss_falls(work):
    """On 24 samples seen again and again the teacher must fit them (the loop really optimises)."""
    samples = pq.read_table(work / "data/samples/train.parquet").slice(0, 24)
    pq.write_table(pa.concat_tables([samples] * 25), work / "data/samples/train.parquet")
    set_params(work, batch_size=24, max_steps_per_epoch=None, lr=3e-3)
    run(0)
    losses = [v for _, v in curve(work / "metrics/teacher_0")]
    assert len(losses) == 25
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3


def test_an_interrupted_run_resumes_to_the_same_teacher(work, tmp_path_factory, monkeypatch):
    set_params(work, epochs=2, max_steps_per_epoch=4)
    reference = tmp_path_factory.mktemp("uninterrupted")
    for name in ("data", "tiny_bert", "params.yaml"):
        (reference / name).symlink_to(work / name)
    shutil.copytree(work / "models", reference / "models")
    with monkeypatch.context() as mp:
        mp.chdir(reference)
        run(0)
    calls = []
    real_step = finetune.teacher_step

    def interrupt_in_epoch_2(model, batch):
        calls.append(1)
        if len(calls) == 6:  # epoch 2, step 2
            raise KeyboardInterrupt
        return real_step(model, batch)

    monkeypatch.setattr(finetune, "teacher_step", interrupt_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run(0)
    assert not (work / "models/teacher_0").exists()
    assert (work / ".cache/checkpoints/teacher_0/state.json").exists()
    calls.clear()
    monkeypatch.setattr(finetune, "teacher_step", lambda model, batch: (calls.append(1), real_step(model, batch))[1])
    run(0)
    assert len(calls) == 4  # only epoch 2 ran again
    resumed, uninterrupted = weights(work / "models/teacher_0"), weights(reference / "models/teacher_0")
    for key in uninterrupted:
        torch.testing.assert_close(resumed[key], uninterrupted[key], atol=1e-5, rtol=0)
    resumed_curve, reference_curve = curve(work / "metrics/teacher_0"), curve(reference / "metrics/teacher_0")
    assert [s for s, _ in resumed_curve] == [s for s, _ in reference_curve] == list(range(1, 9))
    assert [v for _, v in resumed_curve] == pytest.approx([v for _, v in reference_curve], abs=1e-5)


def test_a_resume_point_of_other_params_is_not_used(work, monkeypatch):
    set_params(work, epochs=2, max_steps_per_epoch=2)
    real_step = finetune.teacher_step
    calls, stop_at = [], [3]  # epoch 2, step 1

    def counted(model, batch):
        calls.append(1)
        if len(calls) == stop_at[0]:
            raise KeyboardInterrupt
        return real_step(model, batch)

    monkeypatch.setattr(finetune, "teacher_step", counted)
    with pytest.raises(KeyboardInterrupt):
        run(0)
    assert (work / ".cache/checkpoints/teacher_0/state.json").exists()
    set_params(work, epochs=2, max_steps_per_epoch=2, lr=5e-4)
    calls.clear()
    stop_at[0] = None
    run(0)
    assert len(calls) == 4  # both epochs ran again


def test_a_nan_loss_stops_with_a_clear_error(work, monkeypatch):
    real_step = finetune.teacher_step
    calls = []

    def nan_at_step_2(model, batch):
        calls.append(1)
        loss, parts = real_step(model, batch)
        return (loss * float("nan") if len(calls) == 2 else loss), parts

    monkeypatch.setattr(finetune, "teacher_step", nan_at_step_2)
    with pytest.raises(NonFiniteLossError, match=r"teacher_1: at epoch 1, step 2, the loss became NaN"):
        run(1)
    assert not (work / "models/teacher_1").exists()


def test_a_huge_learning_rate_stops_with_a_clear_error(work):
    set_params(work, lr=1e30, max_steps_per_epoch=10)
    with pytest.raises(NonFiniteLossError, match="teacher_0: at epoch .*, the loss became NaN or infinite"):
        run(0)
    assert not (work / "models/teacher_0").exists()


def test_teachers_from_the_same_origin_differ_by_seed(work):
    shutil.rmtree(work / "models/post_train/step_1")
    shutil.copytree(work / "models/post_train/step_0", work / "models/post_train/step_1")
    run(0)
    run(1)
    w0, w1 = weights(work / "models/teacher_0"), weights(work / "models/teacher_1")
    assert not torch.equal(w0["news_encoder.dense.weight"], w1["news_encoder.dense.weight"])
    assert json.loads((work / "models/teacher_1/config.json").read_text())["seed"] == 43


@pytest.mark.parametrize("argv", [["4"], ["x"], []])
def test_a_teacher_id_outside_teacher_ids_is_refused(work, argv):
    with pytest.raises(ParamError, match="teacher.ids"):
        load_stage("finetune_teacher").main(argv)


def test_a_missing_origin_names_the_post_train_stage(work):
    shutil.rmtree(work / "models/post_train/step_1")
    with pytest.raises(DataError, match="post_train"):
        run(1)


def test_a_cache_of_another_model_is_refused(work):
    other = make_tiny_bert(num_layers=3, hidden=32, seed=7)
    shutil.rmtree(work / "models/post_train/step_0")
    PLMNR(other, HEADS).save_pretrained(work / "models/post_train/step_0")
    with pytest.raises(DataError, match="different model"):
        run(0)


def _one_error_line(capsys, argv):
    from tinynewsrec.stage import run_stage

    with pytest.raises(SystemExit) as e:
        run_stage(lambda: load_stage("finetune_teacher").main(argv))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert e.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("artifact", ["data/samples/train.parquet", "models/post_train/step_0/heads.safetensors",
                                      "models/post_train/step_0/plm/model.safetensors"])
def test_a_truncated_input_ends_the_stage_in_one_line(work, capsys, artifact):
    path = work / artifact
    path.write_bytes(path.read_bytes()[:100])
    line = _one_error_line(capsys, ["0"])
    assert any(w in line for w in ("corrupt", "unreadable", "not a readable"))
    assert not (work / "models/teacher_0").exists()


def test_a_corrupt_resume_state_does_not_block_the_stage(work, monkeypatch, caplog):
    set_params(work, epochs=2, max_steps_per_epoch=2)
    real_step = finetune.teacher_step
    calls = []

    def interrupt_in_epoch_2(model, batch):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_step(model, batch)

    monkeypatch.setattr(finetune, "teacher_step", interrupt_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run(0)
    state = work / ".cache/checkpoints/teacher_0/state.json"
    state.write_text(state.read_text()[:40])
    monkeypatch.setattr(finetune, "teacher_step", real_step)
    run(0)
    assert (work / "models/teacher_0/config.json").exists() and "resume state is unreadable" in caplog.text
