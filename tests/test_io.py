import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tinynewsrec.io import atomic_dir, atomic_path, write_json, write_parquet


def test_interrupted_write_leaves_the_old_file(tmp_path):
    dest = tmp_path / "m.json"
    write_json({"a": 1}, dest)
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert json.loads(dest.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temp file left behind


def test_parquet_round_trip(tmp_path):
    table = pa.table({"x": pa.array([1, 2], pa.int32())})
    write_parquet(table, tmp_path / "sub" / "t.parquet")
    assert pq.read_table(tmp_path / "sub" / "t.parquet").equals(table)


def test_atomic_dir_replaces_only_when_complete(tmp_path):
    dest = tmp_path / "ckpt"
    with atomic_dir(dest) as d:
        (d / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(dest) as d:
            (d / "b").write_text("2")
            raise RuntimeError("killed")
    assert sorted(p.name for p in dest.iterdir()) == ["a"]
    with atomic_dir(dest) as d:
        (d / "c").write_text("3")
    assert sorted(p.name for p in dest.iterdir()) == ["c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
