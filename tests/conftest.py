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
