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


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("teacher", "max_steps_per_epoch", 0),
        ("stage1", "max_steps_per_epoch", -3),
        ("stage2", "max_steps_per_epoch", 0),
        ("post_train", "mlm_probability", 1.5),
        ("post_train", "lr", 0.0),
        ("data", "seed", -1),
        ("post_train", "seed", -1),
        ("stage1", "seed", 2**40),
        ("data", "history_len", 10**9),
        ("plm", "title_len", 10_000),
        ("stage2", "tau", float("nan")),
    ],
)
def test_a_value_that_trains_nothing_or_crashes_later_is_refused(tmp_path, section, key, value):
    write_params(tmp_path, **{section: {key: value}})
    with pytest.raises(ParamError, match=rf"{section}\.{key} must be"):
        load_params(tmp_path / "params.yaml")


def test_a_misspelt_section_is_refused(tmp_path):
    params = write_params(tmp_path)
    params["studnet"] = params.pop("student")
    (tmp_path / "params.yaml").write_text(__import__("yaml").safe_dump(params))
    with pytest.raises(ParamError, match=r"unknown section studnet \(did you mean student\?"):
        load_params(tmp_path / "params.yaml")


@pytest.fixture
def short_bert(tmp_path):
    from transformers import BertConfig, BertModel

    from tinynewsrec.models.plm import make_tiny_bert

    bert = make_tiny_bert(num_layers=2)
    config = BertConfig(**{**bert.config.to_dict(), "max_position_embeddings": 16})
    BertModel(config).save_pretrained(tmp_path / "bert")
    return tmp_path / "bert"


@pytest.mark.parametrize(
    "change, key",
    [({"title_len": 32}, "plm.title_len"), ({"body_len": 17}, "plm.body_len"), ({"trainable_layers": 2}, "plm.trainable_layers")],
)
def test_the_plm_check_names_the_key(short_bert, change, key):
    import dataclasses

    from tinynewsrec.models.plm import check_plm
    from tinynewsrec.params import PlmParams

    plm = dataclasses.replace(PlmParams(), name=str(short_bert), title_len=16, body_len=16, trainable_layers=1)
    check_plm(plm)
    with pytest.raises(ParamError, match=rf"params.yaml: {key} must be"):
        check_plm(dataclasses.replace(plm, **change))


def test_an_unreachable_hub_id_fails_in_seconds(monkeypatch):
    import dataclasses
    import time

    from tinynewsrec.models.plm import check_plm
    from tinynewsrec.params import PlmParams

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ParamError, match="plm.name: 'someone/no-such-model'"):
        check_plm(dataclasses.replace(PlmParams(), name="someone/no-such-model"))
    assert time.monotonic() - start < 5
