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
import re
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def sweep_stale(dest: str | os.PathLike) -> list[Path]:
    """Remove the temporaries ``.<name>.<pid>.*.tmp`` next to ``dest`` whose process is gone.

    A process killed with SIGKILL (or a power cut) cannot clean up after itself; the next
    writer of the same ``dest`` does. Temporaries of a live process are left alone.
    """
    dest = Path(dest)
    pattern = re.compile(rf"^\.{re.escape(dest.name)}\.(\d+)\.\w+.*\.tmp$")
    removed = []
    try:
        siblings = list(dest.parent.iterdir())
    except OSError:
        return removed
    for p in siblings:
        m = pattern.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _prefix(dest: Path) -> str:
    return f".{dest.name}.{os.getpid()}."


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; on success rename it to ``dest``.

    On an exception the temporary file is removed and ``dest`` is left untouched. The
    temporary's name holds the writer's pid, so that leftovers of a killed writer are swept
    by the next one (:func:`sweep_stale`).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(dest)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(dest), suffix=suffix + ".tmp", dir=dest.parent)
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
    sweep_stale(dest)
    old = dest.with_name(f".{dest.name}.old")
    if old.exists() and not dest.exists():  # killed between the two renames below: the old one is whole
        os.replace(old, dest)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(dest), suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the usual mode
        if dest.exists():
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


@contextlib.contextmanager
def staged_outputs(*dests: str | os.PathLike) -> Iterator[list[Path]]:
    """Temporary paths for all of a stage's output files; renamed into place only when all are written.

    A stage that fails while computing or writing any output leaves every previous output as
    it was (the renames at the end are quick and happen only after everything succeeded).
    """
    paths = [Path(d) for d in dests]
    tmps = []
    try:
        for dest in paths:
            dest.parent.mkdir(parents=True, exist_ok=True)
            sweep_stale(dest)
            fd, tmp = tempfile.mkstemp(prefix=_prefix(dest), suffix=".tmp", dir=dest.parent)
            os.close(fd)
            tmps.append(Path(tmp))
        yield tmps
        for tmp in tmps:
            os.chmod(tmp, 0o666 & ~_umask())
        for tmp, dest in zip(tmps, paths):
            os.replace(tmp, dest)
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)


def _unreadable(path: Path, stage: str, e: BaseException) -> Exception:
    from .errors import DataError

    text = " ".join(str(e).split())
    return DataError(f"{path} is corrupt or unreadable ({type(e).__name__}: {text}); "
                     f"rebuild it with `dvc repro -f {stage}`")


def read_parquet(path: str | os.PathLike, *, stage: str, **kwargs: Any) -> pa.Table:
    """``pq.read_table(path, **kwargs)``; a missing or corrupt file is a one-line DataError naming ``stage``."""
    from .errors import DataError

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} is missing: run the {stage} stage first (dvc repro {stage})")
    try:
        return pq.read_table(path, **kwargs)
    except (pa.ArrowException, OSError) as e:
        raise _unreadable(path, stage, e) from None


def read_safetensors(path: str | os.PathLike, *, stage: str) -> dict:
    """``safetensors.torch.load_file(path)``; a missing or corrupt file is a one-line DataError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .errors import DataError

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} is missing: run the {stage} stage first (dvc repro {stage})")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise _unreadable(path, stage, e) from None


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
