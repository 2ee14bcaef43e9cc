"""The registry of student methods: what each method declares, and the cross-param checks
that load_params runs through the chosen method's validate."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tinynewsrec.distill.methods import display_name, get_method, method_names
from tinynewsrec.distill.methods.newsbert import teacher_trainable_layers
from tinynewsrec.errors import ParamError
from tinynewsrec.params import load_params
from conftest import ROOT, write_params


def test_the_registry_lists_one_module_per_method_and_skips_helpers():
    assert method_names() == ["hsk", "last_layers_kd", "newsbert", "no_kd", "rosita", "simplified_tinybert",
                              "standard_kd", "tinybert", "tinynewsrec"]
    assert all(get_method(name).name == name for name in method_names())


def test_listing_methods_and_loading_params_import_no_training_code():
    code = ("import sys; from tinynewsrec.params import load_params; from tinynewsrec.distill.methods import "
            "method_names; method_names(); load_params(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m.startswith('tinynewsrec.distill.methods.')), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "params.yaml")], capture_output=True, text=True,
                         check=True).stdout.split("\n")[0]
    # only the chosen method's module (to validate), and no torch
    assert out == "['tinynewsrec.distill.methods.tinynewsrec'] False"


@pytest.mark.parametrize("name, stage1, teachers, ce_weight, display", [
    ("tinynewsrec", True, "all", 0.2, "Tiny-NewsRec"),
    ("no_kd", False, "none", 1.0, "PLM-NR (no KD)"),
    ("last_layers_kd", False, "one", 0.1, "Last-k layer KD"),
    ("newsbert", False, "one", 0.1, "NewsBERT"),
    ("standard_kd", False, "one", 0.5, "Standard KD"),
    ("simplified_tinybert", False, "one", 1.0, "Simplified TinyBERT"),
    ("tinybert", True, "one", 0.0, "TinyBERT (2-step)"),
    ("hsk", True, "one", 0.0, "HSK distillation"),
    ("rosita", True, "one", 0.0, "ROSITA"),
])
def test_each_method_declares_its_stages_teachers_and_ce_weight(name, stage1, teachers, ce_weight, display):
    method = get_method(name)
    assert (method.stage1, method.teachers, method.ce_weight, display_name(name)) == (stage1, teachers, ce_weight,
                                                                                        display)
    assert "stage2" in method.sections and ("stage1" in method.sections) == stage1


def test_the_old_names_are_gone():
    # "tinybert" was the last-k variant (now last_layers_kd); the name is back for the faithful two-step TinyBERT
    assert "finetune" not in method_names() and display_name("finetune") == "finetune"
    assert get_method("tinybert").stage1 and get_method("last_layers_kd").display == "Last-k layer KD"


def test_an_unknown_method_lists_the_registered_ones(tmp_path):
    write_params(tmp_path, student={"method": "bogus"})
    with pytest.raises(ParamError, match=r"student\.method must be one of hsk, last_layers_kd, newsbert, no_kd, "
                                         r"rosita, simplified_tinybert, standard_kd, tinybert, tinynewsrec, got 'bogus'"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize("post_train", ["fp", "none"])
def test_tinynewsrec_refuses_teachers_without_dp_post_training(tmp_path, post_train):
    write_params(tmp_path, post_train={"method": post_train}, student={"method": "tinynewsrec"})
    with pytest.raises(ParamError, match=rf"student\.method tinynewsrec needs post_train\.method dp, "
                                         rf"got '{post_train}'"):
        load_params(tmp_path / "params.yaml")
    write_params(tmp_path, post_train={"method": post_train}, student={"method": "no_kd"})
    assert load_params(tmp_path / "params.yaml").post_train.method == post_train


@pytest.mark.parametrize("method", ["last_layers_kd", "newsbert"])
def test_more_distill_layers_than_student_layers_is_refused(tmp_path, method):
    write_params(tmp_path, student={"method": method, "layers": 1, "distill_layers": 2})
    with pytest.raises(ParamError, match=r"student\.distill_layers \(2\) must be at most student\.layers \(1\)"):
        load_params(tmp_path / "params.yaml")


def test_tinynewsrec_does_not_read_distill_layers(tmp_path):
    write_params(tmp_path, student={"method": "tinynewsrec", "layers": 1, "distill_layers": 2})
    assert load_params(tmp_path / "params.yaml").student.layers == 1


@pytest.mark.parametrize("method", ["last_layers_kd", "newsbert"])
def test_one_teacher_methods_need_their_teacher_in_teacher_ids(tmp_path, method):
    write_params(tmp_path, student={"method": method, "teacher": 4}, teacher={"ids": [0, 1, 2, 3]})
    with pytest.raises(ParamError, match=r"student\.teacher must be one of teacher\.ids \[0, 1, 2, 3\], got 4"):
        load_params(tmp_path / "params.yaml")


def test_a_method_added_as_one_module_is_a_valid_choice_with_its_own_checks(tmp_path, toy_method):
    assert toy_method in method_names()
    write_params(tmp_path, student={"method": toy_method, "layers": 2})
    assert load_params(tmp_path / "params.yaml").student.method == toy_method
    assert display_name(toy_method) == "Toy"
    write_params(tmp_path, student={"method": toy_method, "layers": 3})
    with pytest.raises(ParamError, match=r"student\.layers must be at most 2 for toy_method"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize("depth, lowest, trainable, expected", [
    (6, 5, 2, 2),  # the default: layer_map last, teacher layers 5 and 6, plm.trainable_layers 2 (unchanged)
    (6, 3, 2, 4),  # layer_map uniform, 6 -> 2: teacher layers 3 and 6
    (6, 6, 2, 2),
    (3, 1, 1, 3),
])
def test_newsbert_teacher_trains_down_to_its_lowest_matched_layer(depth, lowest, trainable, expected):
    assert teacher_trainable_layers(depth, lowest, trainable) == expected


def test_dvc_yaml_gives_distill_stage2_the_teachers_every_method_needs():
    import yaml

    deps = set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["distill_stage2"]["deps"])
    needed = {"all": {"data/teacher_emb"}, "one": {"models/teacher_${student.teacher}"}, "none": set()}
    for name in method_names():
        assert needed[get_method(name).teachers] <= deps, name
