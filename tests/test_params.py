import pytest

from tinynewsrec.errors import ParamError
from tinynewsrec.params import load_params
from conftest import ROOT, write_params


def test_repository_params_load():
    params = load_params(ROOT / "params.yaml")
    assert params.data.source == "synthetic"
    assert params.data.npratio >= 1


def test_wrong_type_names_the_key(tmp_path):
    write_params(tmp_path, data={"npratio": "four"})
    with pytest.raises(ParamError, match=r"data\.npratio must be an integer"):
        load_params(tmp_path / "params.yaml")


def test_out_of_range_names_the_key(tmp_path):
    write_params(tmp_path, data={"history_len": 0})
    with pytest.raises(ParamError, match=r"data\.history_len"):
        load_params(tmp_path / "params.yaml")


def test_unknown_choice_lists_the_options(tmp_path):
    write_params(tmp_path, data={"source": "mind-huge"})
    with pytest.raises(ParamError, match=r"data\.source must be one of synthetic"):
        load_params(tmp_path / "params.yaml")


def test_typo_key_is_refused(tmp_path):
    write_params(tmp_path, data={"np_ratio": 4})
    with pytest.raises(ParamError, match=r"unknown key data\.np_ratio"):
        load_params(tmp_path / "params.yaml")


def test_local_source_needs_a_path(tmp_path):
    write_params(tmp_path, data={"source": "local", "local_path": None})
    with pytest.raises(ParamError, match=r"data\.local_path"):
        load_params(tmp_path / "params.yaml")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamError, match="no such params file"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("data: [unclosed\n")
    with pytest.raises(ParamError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")
