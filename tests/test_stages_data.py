"""download and split through their real stage entry points, on the tiny synthetic world."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from tinynewsrec.data import schemas
from tinynewsrec.errors import ParamError
from conftest import ROOT, load_stage, write_params


@pytest.fixture
def tiny_data(workdir):
    write_params(workdir, data={"size": "tiny", "npratio": 4, "history_len": 20})
    load_stage("download").main()
    load_stage("split").main()
    return workdir


def test_download_writes_the_contract(tiny_data):
    for split in ("train", "dev"):
        news = pq.read_table(tiny_data / "data/mind" / split / "news.parquet")
        behaviors = pq.read_table(tiny_data / "data/mind" / split / "behaviors.parquet")
        assert news.schema.equals(schemas.NEWS)
        assert behaviors.schema.equals(schemas.BEHAVIORS)
        assert behaviors.num_rows > 0
    metrics = json.loads((tiny_data / "metrics/data.json").read_text())
    assert metrics["source"] == "synthetic"
    assert metrics["train"]["news_coverage"] == 1.0
    assert metrics["dev"]["clicks"] > 0


def test_split_writes_samples_and_tokens(tiny_data):
    train = pq.read_table(tiny_data / "data/samples/train.parquet")
    dev = pq.read_table(tiny_data / "data/samples/dev.parquet")
    tokens = pq.read_table(tiny_data / "data/tokens/news.parquet")
    assert train.schema.equals(schemas.TRAIN_SAMPLES) and dev.schema.equals(schemas.DEV_SAMPLES)
    assert {len(c) for c in train.column("candidates").to_pylist()} == {5}
    assert max(len(h) for h in train.column("history").to_pylist()) <= 20
    # every news referenced by samples has its tokens
    referenced = set()
    for table in (train, dev):
        for col in ("history", "candidates"):
            referenced.update(v for row in table.column(col).to_pylist() for v in row)
    assert referenced <= set(tokens.column("news_index").to_pylist())
    split_metrics = json.loads((tiny_data / "metrics/split.json").read_text())
    assert split_metrics["train"]["samples"] == train.num_rows


def test_split_without_download_names_the_missing_stage(workdir):
    write_params(workdir, data={"size": "tiny"})
    from tinynewsrec.errors import DataError

    with pytest.raises(DataError, match="run the download stage first"):
        load_stage("split").main()


def test_bad_param_fails_fast_without_traceback(workdir):
    write_params(workdir, data={"npratio": -1})
    with pytest.raises(ParamError):
        load_stage("download").main()
    proc = subprocess.run([sys.executable, str(ROOT / "stages/download.py")], cwd=workdir,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "data.npratio" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_offline_mind_source_names_urls_and_local(workdir, monkeypatch, capsys):
    import dataclasses

    from tinynewsrec.data import download
    from tinynewsrec.stage import run_stage

    closed = "http://127.0.0.1:9/MINDsmall_train.zip"  # the discard port: nothing listens there
    table = {s: dataclasses.replace(z, urls=(closed,)) for s, z in download.MIND_ZIPS["mind-small"].items()}
    monkeypatch.setitem(download.MIND_ZIPS, "mind-small", table)
    write_params(workdir, data={"source": "mind-small"})
    with pytest.raises(SystemExit) as stop:
        run_stage(load_stage("download").main)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert closed in err and "local" in err
    assert not (workdir / "data/mind").exists()
