"""Every key of params.yaml, mutated three ways, fails load_params with one line naming it;
the dataclass defaults agree with params.yaml (a stage run on defaults trains what the file says)."""

from __future__ import annotations

import copy
import dataclasses
import typing

import pytest
import yaml

from tinynewsrec.errors import ParamError
from tinynewsrec.params import SECTIONS, load_params
from conftest import ROOT

BASE = yaml.safe_load((ROOT / "params.yaml").read_text())
#: free-form strings: any value of the right type is accepted here (checked where they are used)
FREE = {"plm.name", "data.local_path"}


def _wrong_type(section: str, key: str):
    """A value of a type the field does not take: a number for a text field, else a word."""
    tp = typing.get_type_hints(SECTIONS[section])[key]
    return 7 if str in (tp, *typing.get_args(tp)) else "seven"


def _out_of_range(key: str, value):
    """A value of the right type that no run can use; None where the key has no range."""
    if key in FREE:
        return None
    if key == "data.cache_dir":
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


def _set(section, key, value):
    p = copy.deepcopy(BASE)
    if key is None:
        p[section] = value
    else:
        p[section][key] = value
    return p


def _renamed(section, key, new):
    p = copy.deepcopy(BASE)
    d = p if section is None else p[section]
    d[new] = d.pop(key)
    return p


CASES = list(mutations())


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_mutation_fails_in_one_line_naming_the_key(tmp_path, case):
    _, params, key = next(c for c in CASES if c[0] == case)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamError) as e:
        load_params(tmp_path / "params.yaml")
    msg = str(e.value)
    assert "\n" not in msg and key in msg, msg


def test_fuzz_count(capsys):
    """How many mutations were tried (each rejected with its key named by the test above)."""
    with capsys.disabled():
        print(f"\nparams fuzz: {len(CASES)} mutations of {sum(len(v) for v in BASE.values())} keys "
              f"in {len(BASE)} sections")
    assert len(CASES) >= 3 * sum(len(v) for v in BASE.values())


def test_every_section_of_the_code_is_in_params_yaml():
    assert set(BASE) == set(SECTIONS)


@pytest.mark.parametrize("section", list(SECTIONS))
def test_defaults_agree_with_params_yaml(section):
    defaults = dataclasses.asdict(SECTIONS[section]())
    assert defaults == BASE[section]
