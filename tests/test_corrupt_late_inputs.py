"""The late stages (distillation, evaluation) end in one line on a corrupt input too: their
readers' errors reach run_stage's net for unreadable files."""

from __future__ import annotations

import shutil

import pytest

from tinynewsrec.stage import run_stage
from conftest import load_stage


from test_distill import world  # noqa: E402,F401  (the same world: 2 teachers and their exports)


def one_error_line(main, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        run_stage(main)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert e.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "stage, artifact",
    [
        ("distill_stage1", "data/teacher_emb/teacher_0.safetensors"),
        ("distill_stage1", "data/tokens/news.parquet"),
        ("evaluate", "data/samples/dev.parquet"),
        ("evaluate", "models/teacher_1/heads.safetensors"),
    ],
)
def test_a_truncated_input_is_one_line(world, tmp_path, monkeypatch, capsys, stage, artifact):  # noqa: F811 (fixture)
    folder = tmp_path / "w"
    shutil.copytree(world, folder, symlinks=True)
    monkeypatch.chdir(folder)
    path = folder / artifact
    path.write_bytes(path.read_bytes()[:100])
    line = one_error_line(load_stage(stage).main, capsys)
    assert "corrupt" in line or "not a readable" in line
