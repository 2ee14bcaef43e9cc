"""Shared fixtures: run stage scripts in-process inside a scratch work folder."""

from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_stage(name: str):
    """Import stages/<name>.py as a module (the stage scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_params(folder: Path, **sections) -> dict:
    """Write params.yaml into ``folder``: the repository's params with ``sections`` merged in."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = copy.deepcopy(params)
    for section, values in sections.items():
        params.setdefault(section, {}).update(values)
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return params


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tests use tiny models, which run fastest on one thread (and far faster than on two
    when the CPU is shared)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A scratch folder that stands in for the repository root while a stage runs."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


TOY_METHOD = '''"""toy_method: a method added by one module (tests): clicks only, on a tiny random BERT."""

from tinynewsrec.distill.methods import StudentMethod, TrainingStep
from tinynewsrec.errors import ParamError


def validate(params):
    if params.student.layers > 2:
        raise ParamError(f"params.yaml: student.layers must be at most 2 for toy_method, got {params.student.layers}")


def build_stage2(inputs):
    from tinynewsrec.distill.students import Stage2Student
    from tinynewsrec.models.plm import make_tiny_bert
    from tinynewsrec.models.plmnr import PLMNR, PLMNRConfig

    plm = make_tiny_bert(num_layers=inputs.params.student.layers, hidden=32, seed=inputs.params.stage2.seed)
    student = PLMNR(plm, PLMNRConfig(news_dim=inputs.params.plm.news_dim))
    return TrainingStep(Stage2Student(student, None, ce_weight=inputs.ce_weight), student, info={"toy": True})


METHOD = StudentMethod(name="toy_method", display="Toy", ce_weight=0.5, validate=validate, build_stage2=build_stage2)
'''


@pytest.fixture
def toy_method(tmp_path, monkeypatch):
    """A student method added as one module, ``toy_method.py``, in a folder outside the package
    (the package's ``__path__`` extended to it): nothing else is edited."""
    import importlib
    import sys

    from tinynewsrec.distill import methods

    folder = tmp_path / "more_methods"
    folder.mkdir()
    (folder / "toy_method.py").write_text(TOY_METHOD)
    monkeypatch.setattr(methods, "__path__", [*methods.__path__, str(folder)])
    importlib.invalidate_caches()
    yield "toy_method"
    sys.modules.pop("tinynewsrec.distill.methods.toy_method", None)
