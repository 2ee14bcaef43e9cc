"""The download stage never writes or removes a user's file: it writes only in
<data.cache_dir>/tinynewsrec/, creates no folder outside the repository, and only reads
data.local_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tinynewsrec.data.download import extract_mind_zip, fetch_source, own_cache
from tinynewsrec.errors import DataError, ParamError
from test_download import mind_zip


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for a folder)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@pytest.fixture
def users_folder(tmp_path, monkeypatch):
    """V: the user's MIND zips and their own MINDsmall_train/ folder with their notes (outside the repo)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    v = tmp_path / "V"
    (v / "MINDsmall_train").mkdir(parents=True)
    (v / "MINDsmall_train" / "my_notes.txt").write_text("mine")
    for s in ("train", "dev"):
        (v / f"MINDsmall_{s}.zip").write_bytes(mind_zip())
    return v


def test_local_path_as_cache_dir_leaves_the_users_files_alone(users_folder):
    before = snapshot(users_folder)
    folders = fetch_source("local", users_folder, local_path=str(users_folder), progress=False)
    after = snapshot(users_folder)
    assert {k: v for k, v in after.items() if not k.startswith("tinynewsrec")} == before
    assert all(Path(f).is_relative_to(users_folder / "tinynewsrec") for f in folders.values())


def test_a_cache_dir_outside_the_repository_is_not_created(tmp_path, users_folder):
    with pytest.raises(ParamError, match=r"data.cache_dir: .*elsewhere does not exist"):
        fetch_source("local", tmp_path / "elsewhere", local_path=str(users_folder), progress=False)
    assert not (tmp_path / "elsewhere").exists()


def test_a_cache_dir_inside_a_dvc_output_is_refused(users_folder):
    with pytest.raises(ParamError, match=r"data.cache_dir: .*inside data/"):
        own_cache("data/cache")
    assert not Path("data").exists()


def test_a_users_folder_named_like_the_pipelines_own_is_left_alone(users_folder):
    (users_folder / "tinynewsrec").mkdir()
    (users_folder / "tinynewsrec" / "theirs.txt").write_text("x")
    before = snapshot(users_folder)
    with pytest.raises(DataError, match="was not made by this pipeline"):
        fetch_source("local", users_folder, local_path=str(users_folder), progress=False)
    assert snapshot(users_folder) == before


def test_extraction_never_replaces_a_folder_it_did_not_make(tmp_path):
    zip_path = tmp_path / "MINDsmall_train.zip"
    zip_path.write_bytes(mind_zip())
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="was not extracted by this pipeline"):
        extract_mind_zip(zip_path, tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "keep.txt").read_text() == "x"


def test_a_corrupt_zip_of_the_users_is_reported_not_deleted(users_folder):
    bad = users_folder / "MINDsmall_dev.zip"
    bad.write_bytes(mind_zip()[:-40])
    with pytest.raises(DataError, match="your own file .* replace it with a good copy") as e:
        fetch_source("local", users_folder, local_path=str(users_folder), progress=False)
    assert "download it again" not in str(e.value) and bad.exists()


def test_a_symlink_loop_is_named_as_such(tmp_path):
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    with pytest.raises(DataError, match="symbolic link loop"):
        fetch_source("local", tmp_path / "cache", local_path=str(loop), progress=False)


def test_the_files_read_are_reported_for_the_fingerprint(users_folder):
    read: list[Path] = []
    fetch_source("local", users_folder, local_path=str(users_folder), progress=False, read=read)
    assert sorted(p.name for p in read) == ["MINDsmall_dev.zip", "MINDsmall_train.zip"]


def test_the_download_stage_fingerprints_the_local_files(users_folder):
    import json

    from conftest import load_stage, write_params

    write_params(Path.cwd(), data={"source": "local", "local_path": str(users_folder), "cache_dir": str(users_folder)})
    load_stage("download").main()
    files = json.loads(Path("metrics/data.json").read_text())["source_files"]
    assert {Path(f["path"]).name for f in files} == {"MINDsmall_train.zip", "MINDsmall_dev.zip"}
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 and f["mtime_ns"] > 0 for f in files)
    assert (users_folder / "MINDsmall_train" / "my_notes.txt").read_text() == "mine"


def test_dvc_tracks_the_local_source_folder():
    import yaml

    from conftest import ROOT

    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["download"]
    assert "${data.local_path}" in stage["deps"] and "data.local_path" in stage["params"]
    assert (ROOT / yaml.safe_load((ROOT / "params.yaml").read_text())["data"]["local_path"]).is_dir()


def test_the_download_stage_writes_nothing_outside_the_repo_but_its_own_subfolder(users_folder, tmp_path):
    from conftest import load_stage, write_params

    repo = Path.cwd()
    write_params(repo, data={"source": "local", "local_path": str(users_folder), "cache_dir": str(users_folder)})
    outside = lambda: {k: v for k, v in snapshot(tmp_path).items()  # noqa: E731
                       if not k.startswith(("repo", "V/tinynewsrec"))}
    before = outside()
    load_stage("download").main()
    assert outside() == before
    assert (repo / "data/mind/train/behaviors.parquet").exists()
