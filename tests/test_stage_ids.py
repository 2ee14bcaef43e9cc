"""Teacher ids never reach a shell: dvc.yaml's commands hold no ${...}; the foreach stages read
their id from DVC_STAGE (or argv) and accept only a plain integer."""

from __future__ import annotations

import pytest
import yaml

from tinynewsrec.errors import ParamError
from tinynewsrec.params import load_params
from tinynewsrec.stage import stage_item
from conftest import ROOT, write_params


def test_no_dvc_command_interpolates_a_param():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    cmds = {name: (s.get("do") or s)["cmd"] for name, s in stages.items()}
    assert all("${" not in cmd for cmd in cmds.values()), cmds


def test_the_id_comes_from_dvc_stage(monkeypatch):
    monkeypatch.setenv("DVC_STAGE", "finetune_teacher@2")
    assert stage_item([], "usage") == 2


def test_the_id_comes_from_the_argument():
    assert stage_item(["3"], "usage") == 3


@pytest.mark.parametrize("crafted", ["1; touch X", "1' ; touch X; '", "-1", "1 2", "$(touch X)", ""])
def test_a_crafted_id_is_refused_in_one_line(monkeypatch, crafted):
    monkeypatch.setenv("DVC_STAGE", f"finetune_teacher@{crafted}")
    with pytest.raises(ParamError) as e:
        stage_item([], "usage")
    assert "\n" not in str(e.value)
    with pytest.raises(ParamError):
        stage_item([crafted], "usage")


def test_a_crafted_id_in_params_is_refused(tmp_path):
    write_params(tmp_path, teacher={"ids": [0, "1; touch X"]})
    with pytest.raises(ParamError, match="teacher.ids"):
        load_params(tmp_path / "params.yaml")
