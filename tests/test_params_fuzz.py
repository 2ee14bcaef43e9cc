"""Every key of params.yaml, mutated three ways, fails load_params with one line naming it;
the dataclass defaults agree with params.yaml (a stage run on defaults trains what the file says).
A student method's own section is validated when that method is chosen, so its mutations choose it.
The multimodal branch's sections are validated by the branch's own loader (``load_all`` runs both)."""

from __future__ import annotations

import copy
import dataclasses
import typing

import pytest
import yaml

from tinynewsrec.errors import ParamError
from tinynewsrec.distill.methods import get_method, method_names
from tinynewsrec.multimodal.params import SECTIONS as BRANCH
from tinynewsrec.multimodal.params import load_all
from tinynewsrec.params import SECTIONS, load_params
from conftest import ROOT

BASE = yaml.safe_load((ROOT / "params.yaml").read_text())
METHODS = method_names()


def section_class(section: str):
    if section in SECTIONS:
        return SECTIONS[section]
    return BRANCH[section] if section in BRANCH else get_method(section).params
#: free-form strings: any value of the right type is accepted here (checked where they are used)
FREE = {"plm.name", "data.local_path"}
#: paths: refused when blank
PATHS = {"data.cache_dir", "seqrec.recbole_path", "images.path", "image.encoder", "multimodal.text_model"}


def _wrong_type(section: str, key: str):
    """A value of a type the field does not take: a number for a text field, else a word."""
    tp = typing.get_type_hints(section_class(section))[key]
    return 7 if str in (tp, *typing.get_args(tp)) else "seven"


def _out_of_range(key: str, value):
    """A value of the right type that no run can use; None where the key has no range."""
    if key in FREE:
        return None
    if key in PATHS:
        return "   "
    if key == "teacher.ids":
        return [1, 2]
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return "no-such-choice"
    return -1


def mutations():
    """(description, params dict, what the error must name)."""
    for section, keys in BASE.items():
        yield f"{section}: typo", _renamed(None, section, section + "x"), section + "x"
        yield f"{section}: not a mapping", _set(section, None, ["a", "list"]), section
        for key, value in keys.items():
            full = f"{section}.{key}"
            yield f"{full}: typo", _renamed(section, key, key + "x"), f"{section}.{key}x"
            yield f"{full}: wrong type", _set(section, key, _wrong_type(section, key)), full
            bad = _out_of_range(full, value)
            if bad is not None:
                yield f"{full}: out of range", _set(section, key, bad), full


def _choose(p: dict, section: str) -> dict:
    """A method's section is read only when it is the chosen method."""
    if section in METHODS:
        p["student"]["method"] = section
    return p


def _set(section, key, value):
    p = _choose(copy.deepcopy(BASE), section)
    if key is None:
        p[section] = value
    else:
        p[section][key] = value
    return p


def _renamed(section, key, new):
    p = _choose(copy.deepcopy(BASE), section) if section is not None else copy.deepcopy(BASE)
    d = p if section is None else p[section]
    d[new] = d.pop(key)
    return p


CASES = list(mutations())


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_mutation_fails_in_one_line_naming_the_key(tmp_path, case):
    _, params, key = next(c for c in CASES if c[0] == case)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamError) as e:
        load_all(tmp_path / "params.yaml")
    msg = str(e.value)
    assert "\n" not in msg and key in msg, msg


def test_fuzz_count(capsys):
    """How many mutations were tried (each rejected with its key named by the test above)."""
    with capsys.disabled():
        print(f"\nparams fuzz: {len(CASES)} mutations of {sum(len(v) for v in BASE.values())} keys "
              f"in {len(BASE)} sections")
    assert len(CASES) >= 3 * sum(len(v) for v in BASE.values())


def test_every_section_of_the_code_and_every_method_is_in_params_yaml():
    # dvc.yaml's student stages depend on ${student.method}: a method without a section could not run
    assert set(BASE) == set(SECTIONS) | set(BRANCH) | set(METHODS)


@pytest.mark.parametrize("section", [*SECTIONS, *BRANCH, *METHODS])
def test_defaults_agree_with_params_yaml(section):
    cls = section_class(section)
    defaults = dataclasses.asdict(cls()) if cls is not None else {}
    assert defaults == BASE[section]


def test_only_the_chosen_methods_section_is_read(tmp_path):
    p = copy.deepcopy(BASE)
    p["standard_kd"]["alpha"] = 0.25
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    assert load_params(tmp_path / "params.yaml").method is None  # tinynewsrec: no params of its own
    p["student"]["method"] = "standard_kd"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    assert load_params(tmp_path / "params.yaml").method.alpha == 0.25
    p["no_kd"] = {"alpha": 1}
    p["student"]["method"] = "no_kd"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    with pytest.raises(ParamError, match=r"student\.method no_kd has no params of its own, but its section no_kd "
                                         r"sets alpha"):
        load_params(tmp_path / "params.yaml")


def test_the_sections_load_params_leaves_to_the_multimodal_branch_are_the_branchs():
    from tinynewsrec.params import BRANCH_SECTIONS

    assert set(BRANCH_SECTIONS) == set(BRANCH)
