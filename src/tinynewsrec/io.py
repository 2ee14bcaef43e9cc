"""Atomic writers for every artifact the pipeline produces.

Each writer writes to a temporary file in the destination folder and renames it into
place (``os.replace`` is atomic on POSIX and Windows), so an interrupted stage never
leaves a half-written file that DVC or the next stage would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DataError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; on success rename it to ``dest``.

    On an exception the temporary file is removed and ``dest`` is left untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix + ".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp_path, dest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to ``dest``; on success it replaces ``dest``.

    An existing ``dest`` is removed only after the new folder is complete.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the usual mode
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_parquet(table: pa.Table, dest: str | os.PathLike, **kwargs: Any) -> None:
    """Write a pyarrow table to ``dest`` atomically (zstd-compressed by default)."""
    kwargs.setdefault("compression", "zstd")
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp, **kwargs)


def write_json(obj: Any, dest: str | os.PathLike) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_text(text: str, dest: str | os.PathLike) -> None:
    """Write ``text`` to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_parquet(path: str | os.PathLike, made_by: str, schema: pa.Schema | None = None,
                 columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet artifact the stage ``made_by`` writes; a missing, truncated or foreign file
    is a one-line :class:`DataError` naming the file and the stage to rerun."""
    path = Path(path)
    how = f"run the {made_by} stage (dvc repro {made_by})"
    if not path.exists():
        raise DataError(f"{path} is missing: {how}")
    try:
        return pq.read_table(path, schema=schema, columns=columns)
    except (OSError, pa.ArrowException, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path} is unreadable ({reason}): it is corrupt or from another version; {how} again") from None


def sha256_files(paths: list[str | os.PathLike]) -> str:
    """SHA-256 over the bytes of ``paths`` in order (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def checkpoint_files(folder: str | os.PathLike) -> list[Path]:
    """The weight files of a model folder (``heads.safetensors`` and ``plm/*.safetensors``), in a
    fixed order; a missing one is a :class:`DataError`."""
    folder = Path(folder)
    plm = sorted((folder / "plm").glob("*.safetensors"))
    for f in [folder / "heads.safetensors", *(plm or [folder / "plm" / "model.safetensors"])]:
        if not f.is_file():
            raise DataError(f"{f} is missing: {folder} is not a complete checkpoint; rerun the stage that wrote it")
    return [folder / "heads.safetensors", *plm]


def checkpoint_sha256(folder: str | os.PathLike) -> str:
    """SHA-256 of a model folder's weights (:func:`checkpoint_files`, bytes in order)."""
    return sha256_files(checkpoint_files(folder))
