"""A corrupt artifact ends a stage with one line, ``error: ...``, and exit 2, never a traceback;
a corrupt resume state is discarded with a warning instead of blocking every rerun."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tinynewsrec.errors import DataError
from tinynewsrec.stage import run_stage
from tinynewsrec.train.checkpoint import Checkpointer
from conftest import load_stage, write_params


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def run_and_capture(main, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        run_stage(main)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    """download + split on the tiny synthetic world, once; each test copies it."""
    import os
    import shutil

    folder = tmp_path_factory.mktemp("world")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        write_params(folder, data={"size": "tiny"})
        load_stage("download").main()
        load_stage("split").main()
    finally:
        os.chdir(cwd)
    return folder, shutil


@pytest.fixture
def world(tiny_world, tmp_path, monkeypatch):
    folder, shutil = tiny_world
    dest = tmp_path / "w"
    shutil.copytree(folder, dest)
    monkeypatch.chdir(dest)
    return dest


@pytest.mark.parametrize(
    "stage, artifact",
    [
        ("split", "data/mind/train/behaviors.parquet"),
        ("split", "data/mind/dev/behaviors.parquet"),
        ("split", "data/mind/train/news.parquet"),
        ("cache_frozen", "data/tokens/news.parquet"),
        ("post_train", "data/tokens/news.parquet"),
    ],
)
def test_a_truncated_parquet_input_is_one_line(world, capsys, stage, artifact):
    truncate(world / artifact)
    line = run_and_capture(load_stage(stage).main, capsys)
    assert artifact in line and "corrupt" in line


def test_split_fails_without_touching_its_outputs(world, capsys):
    outs = ["data/samples/train.parquet", "data/samples/dev.parquet", "data/tokens/news.parquet", "metrics/split.json"]
    before = {p: (world / p).read_bytes() for p in outs}
    write_params(world, data={"size": "tiny", "npratio": 2}, plm={"name": str(world / "no-such-model")})
    line = run_and_capture(load_stage("split").main, capsys)
    assert "plm.name" in line
    assert {p: (world / p).read_bytes() for p in outs} == before


def test_a_truncated_safetensors_file_is_one_line(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    path = tmp_path / "teacher_0.safetensors"
    save_file({"news": torch.zeros(64, 8)}, str(path))
    truncate(path)
    line = run_and_capture(lambda: load_file(str(path)), capsys)
    assert "corrupt or unreadable" in line and "SafetensorError" in line


def test_truncated_heads_of_a_checkpoint_are_a_data_error(tmp_path):
    from tinynewsrec.models.plm import load_plm, make_tiny_bert
    from tinynewsrec.models.plmnr import PLMNR, PLMNRConfig

    bert = make_tiny_bert()
    bert.save_pretrained(tmp_path / "bert")
    PLMNR(load_plm(str(tmp_path / "bert"), trainable_layers=1), PLMNRConfig(news_dim=8)).save_pretrained(tmp_path / "m")
    truncate(tmp_path / "m" / "heads.safetensors")
    with pytest.raises(DataError, match=r"heads|not a readable PLM-NR checkpoint"):
        PLMNR.from_pretrained(tmp_path / "m")


def test_truncated_plm_weights_are_a_data_error(tmp_path):
    from tinynewsrec.models.plm import load_plm, make_tiny_bert

    make_tiny_bert().save_pretrained(tmp_path / "bert")
    truncate(tmp_path / "bert" / "model.safetensors")
    with pytest.raises(DataError, match="unreadable"):
        load_plm(str(tmp_path / "bert"), trainable_layers=1)


def _model_and_optimizer():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    return model, torch.optim.AdamW(model.parameters(), lr=0.1)


@pytest.mark.parametrize("which", ["state.json", "state.safetensors"])
def test_a_corrupt_resume_state_is_discarded_with_a_warning(tmp_path, caplog, which):
    model, opt = _model_and_optimizer()
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    ckpt = Checkpointer(tmp_path / "teacher_0", "fp")
    ckpt.save(model, opt, {"epoch": 1})
    truncate(tmp_path / "teacher_0" / which)
    fresh, fresh_opt = _model_and_optimizer()
    weights = fresh.weight.detach().clone()
    assert ckpt.load(fresh, fresh_opt) is None
    assert torch.equal(fresh.weight, weights) and not (tmp_path / "teacher_0").exists()
    assert "resume state is unreadable" in caplog.text


def test_a_killed_writers_temporary_is_swept(tmp_path):
    from tinynewsrec.io import atomic_dir

    dead = tmp_path / ".teacher_0.999999999.abcd.tmp"  # no process has that pid
    dead.mkdir()
    live = tmp_path / f".teacher_0.{__import__('os').getpid()}.efgh.tmp"  # ours: kept
    live.mkdir()
    with atomic_dir(tmp_path / "teacher_0") as tmp:
        (tmp / "x").write_text("1")
    assert not dead.exists() and live.exists() and (tmp_path / "teacher_0" / "x").exists()


def test_every_error_is_one_line(capsys):
    def main():
        raise DataError("first line\nsecond line")

    assert run_and_capture(main, capsys) == "error: first line second line"


def test_an_interrupt_under_dvc_does_not_claim_the_outputs_are_intact(capsys, monkeypatch):
    def main():
        raise KeyboardInterrupt

    monkeypatch.setenv("DVC_STAGE", "split")
    with pytest.raises(SystemExit):
        run_stage(main)
    err = capsys.readouterr().err
    assert "no output of this stage was replaced" not in err and "dvc checkout" in err


def test_clearing_a_resume_state_removes_a_killed_saves_temporary(tmp_path):
    killed = tmp_path / ".teacher_0.999999999.wxyz.tmp"
    killed.mkdir()
    (killed / "state.json").write_text("{")
    Checkpointer(tmp_path / "teacher_0", "fp").clear()
    assert not killed.exists()
