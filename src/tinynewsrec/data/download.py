"""Where MIND comes from: the official zips (with mirrors) or a folder the user already has.

:func:`fetch_source` returns, for ``data.source`` = ``mind-demo``, ``mind-small``,
``mind-large`` or ``local``, the extracted split folders (each holding MIND's ``news.tsv``
and ``behaviors.tsv``) that :func:`tinynewsrec.data.mind.ingest` reads. ``synthetic`` is
not a download and is handled by the download stage itself.

Downloads (the MIND licence forbids redistribution, so nothing is ever committed):

- The URL table :data:`MIND_ZIPS` is the one place that names files, URLs and their
  expected size/sha256. Microsoft publishes no checksums and the sizes are not pinned
  here, so a download is verified against the server's ``Content-Length`` (the file must be
  complete) and by reading every zip member's CRC (``zipfile.testzip``); a pinned size or
  sha256, when an entry has one, is checked as well.
- Mirrors are tried in order (the official ``mind201910small`` blob first, then the copy
  Microsoft's ``recommenders`` library uses; the demo set exists only there). A file is
  streamed into ``<name>.part`` and resumed with an HTTP ``Range`` request when a previous
  attempt was interrupted, then verified and renamed into place. A broken connection is
  retried (resuming) while it makes progress.
- The connect timeout is short, so an offline machine fails within seconds with a
  :class:`~tinynewsrec.errors.DownloadError` naming every URL tried and the manual way out:
  download the zips yourself and set ``data.source: local``, ``data.local_path: <folder>``.

What is written where (nothing else is ever written or removed):

- everything the pipeline caches goes into its own subfolder ``<data.cache_dir>/tinynewsrec/``
  (downloaded zips, ``.part`` files, ``extracted/<zip stem>/``), created with a marker file
  ``.tinynewsrec-cache``; a folder of that name without the marker is the user's and is
  refused, never replaced. ``data.cache_dir`` itself is created only inside the repository;
  a folder outside it must exist already (the pipeline does not create folders elsewhere),
  and a folder inside a DVC output (``data/``, ``models/``, ``metrics/``) is refused;
- the user's own files under ``data.local_path`` are only read: a corrupt zip of theirs is
  reported, not deleted, and an extraction never replaces a folder it did not make.

Extraction is safe and atomic: a member whose path is absolute, climbs out with ``..`` or is
a symlink is refused (:class:`~tinynewsrec.errors.DataError` naming it); only ``news.tsv``
and ``behaviors.tsv`` are extracted (the entity/relation embeddings that MIND zips also
hold are not used here), into a temporary folder that is renamed when complete.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import requests
from tqdm.auto import tqdm

from ..errors import DataError, DownloadError, ParamError
from ..io import atomic_dir

log = logging.getLogger("tinynewsrec")

OFFICIAL = "https://mind201910small.blob.core.windows.net/release/"
RECOMMENDERS_MIRROR = "https://recodatasets.z20.web.core.windows.net/newsrec/"
MIND_HOME = "https://msnews.github.io/"
#: the two files of a MIND split folder
SPLIT_FILES = ("news.tsv", "behaviors.tsv")
#: the one folder the pipeline writes in data.cache_dir, and the file that says it made it
OWN_SUBFOLDER = "tinynewsrec"
OWN_MARKER = ".tinynewsrec-cache"
#: DVC outputs: a cache inside them would be deleted by dvc repro (or delete an output)
DVC_OUTPUT_ROOTS = ("data", "models", "metrics")
EXTRACTED_MARKER = ".extracted.json"


def own_cache(cache_dir: str | os.PathLike, repo: str | os.PathLike | None = None) -> Path:
    """``<cache_dir>/tinynewsrec/``, the only folder the download stage writes in (created, marked).

    ``cache_dir`` is created when it lies inside the repository ``repo`` (the working folder);
    outside it, it must exist. Raises :class:`ParamError` for a ``cache_dir`` inside a DVC
    output or missing outside the repository, :class:`DataError` when ``tinynewsrec/`` exists
    there but was not made by the pipeline.
    """
    cache_dir = Path(cache_dir).expanduser()
    repo = Path.cwd() if repo is None else Path(repo)
    resolved, root = cache_dir.resolve(), repo.resolve()
    for out in DVC_OUTPUT_ROOTS:
        if resolved.is_relative_to(root / out):
            raise ParamError(
                f"data.cache_dir: {cache_dir} is inside {out}/, whose contents DVC deletes and replaces; "
                "choose a folder outside it (default .cache/mind)"
            )
    if not cache_dir.is_dir():
        if cache_dir.exists() or cache_dir.is_symlink():
            raise ParamError(f"data.cache_dir: {cache_dir} is not a folder")
        if not resolved.is_relative_to(root):
            raise ParamError(
                f"data.cache_dir: {cache_dir} does not exist; outside the repository the pipeline creates no "
                "folder: create it yourself, or use a folder inside the repository (default .cache/mind)"
            )
        cache_dir.mkdir(parents=True)
    own = cache_dir / OWN_SUBFOLDER
    if own.is_symlink() or (own.exists() and not (own / OWN_MARKER).is_file()):
        raise DataError(
            f"data.cache_dir: {own} exists but was not made by this pipeline (it has no {OWN_MARKER}); it is left "
            "alone: move it away or choose another data.cache_dir"
        )
    own.mkdir(exist_ok=True)
    marker = own / OWN_MARKER
    if not marker.exists():
        marker.write_text("made by tinynewsrec's download stage: MIND zips and extracted splits\n")
    return own


def _stat_path(path: Path, key: str) -> None:
    """Raise a DataError saying why ``path`` cannot be read: missing, a dangling link, a link loop."""
    try:
        path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise DataError(f"{key}: {path} is a symbolic link to {os.readlink(path)}, which does not exist") from None
        raise DataError(f"{key}: {path} does not exist") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DataError(f"{key}: {path} is a symbolic link loop (it never reaches a file or folder)") from None
        raise DataError(f"{key}: {path} cannot be read: {e.strerror}") from None


def fingerprint_files(paths: list[Path]) -> list[dict]:
    """Size, modification time and SHA-256 of each file read (recorded in metrics/data.json)."""
    out = []
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        st = p.stat()
        out.append({"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": h.hexdigest()})
    return out


@dataclass(frozen=True)
class MindZip:
    """One MIND zip: its file name, its URLs in the order tried, and what it must match."""

    name: str
    urls: tuple[str, ...]
    #: expected size in bytes, when known (else the server's Content-Length is checked)
    size: int | None = None
    #: expected sha256 hex digest, when known
    sha256: str | None = None


def _zip(name: str, *bases: str) -> MindZip:
    return MindZip(name, tuple(base + name for base in bases))


#: data.source -> split -> zip. Sizes and checksums are not published by Microsoft; add them
#: here (``size=``, ``sha256=``) to have downloads checked against them.
MIND_ZIPS: dict[str, dict[str, MindZip]] = {
    "mind-demo": {
        "train": _zip("MINDdemo_train.zip", RECOMMENDERS_MIRROR),
        "dev": _zip("MINDdemo_dev.zip", RECOMMENDERS_MIRROR),
    },
    "mind-small": {
        "train": _zip("MINDsmall_train.zip", OFFICIAL, RECOMMENDERS_MIRROR),
        "dev": _zip("MINDsmall_dev.zip", OFFICIAL, RECOMMENDERS_MIRROR),
    },
    "mind-large": {
        "train": _zip("MINDlarge_train.zip", OFFICIAL, RECOMMENDERS_MIRROR),
        "dev": _zip("MINDlarge_dev.zip", OFFICIAL, RECOMMENDERS_MIRROR),
        "test": _zip("MINDlarge_test.zip", OFFICIAL, RECOMMENDERS_MIRROR),
    },
}


def fetch_source(
    source: str,
    cache_dir: Path,
    local_path: str | None = None,
    progress: bool = True,
    timeout: float = 10,
    *,
    splits: tuple[str, ...] = ("train", "dev"),
    read: list[Path] | None = None,
) -> dict[str, Path]:
    """The extracted MIND split folders of ``source``: ``{"train": folder, "dev": folder, ...}``.

    ``mind-*`` sources download (or reuse) their zips in ``cache_dir/tinynewsrec/`` and
    extract them to ``cache_dir/tinynewsrec/extracted/<zip name>/``; ``splits`` says which
    (``test`` exists for ``mind-large`` only, and is unlabeled). ``local`` finds zips or
    extracted folders under ``local_path`` (see :func:`local_splits`). ``timeout`` is the
    connect timeout in seconds. ``read``, when given, receives the source files read (the zips,
    or the TSV files of extracted folders), for :func:`fingerprint_files`.
    """
    cache_dir = Path(cache_dir)
    if source == "local":
        return local_splits(local_path, cache_dir, progress, read=read)
    if source not in MIND_ZIPS:
        raise ParamError(
            f"data.source: {source!r} is not something to download (known: {', '.join(MIND_ZIPS)}, local)"
        )
    missing = [s for s in splits if s not in MIND_ZIPS[source]]
    if missing:
        raise ParamError(f"data.source: {source} has no {missing[0]} split (it has {', '.join(MIND_ZIPS[source])})")
    own = own_cache(cache_dir)
    folders = {}
    for split in splits:
        entry = MIND_ZIPS[source][split]
        zip_path = download(entry, own, progress=progress, timeout=timeout)
        folders[split] = extract_mind_zip(zip_path, own / "extracted" / zip_path.stem, progress=progress)
        if read is not None:
            read.append(zip_path)
    return folders


# ------------------------------------------------------------------------- download


class _Failed(Exception):
    """One URL failed; the message says how (collected into the final DownloadError)."""


def download(entry: MindZip, dest_dir: Path, progress: bool = True, timeout: float = 10) -> Path:
    """``dest_dir/<entry.name>``, downloaded (resuming a ``.part``) and verified unless already there."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / entry.name
    if dest.exists():
        try:
            verify_file(dest, size=entry.size, sha256=entry.sha256)
            return dest
        except DownloadError as e:
            log.warning(f"{e}; downloading it again")
            dest.unlink()
    part = dest.with_name(dest.name + ".part")
    errors: list[str] = []
    for url in entry.urls:
        try:
            total = _fetch_resuming(url, part, progress, timeout)
            try:
                size = entry.size if entry.size is not None else total
                verify_file(part, size=size, sha256=entry.sha256, name=entry.name)
            except DownloadError as e:
                part.unlink(missing_ok=True)  # a wrong file is not resumable
                raise _Failed(str(e)) from None
        except _Failed as e:
            log.warning(f"{url}: {e}")
            errors.append(f"{url}: {e}")
            continue
        os.replace(part, dest)
        log.info(f"downloaded {entry.name} ({dest.stat().st_size:,} bytes) from {url}")
        return dest
    resume = (
        f" The partial download {part} ({part.stat().st_size:,} bytes) is kept; running again resumes it."
        if part.exists()
        else ""
    )
    raise DownloadError(
        f"could not download {entry.name}; tried " + "; ".join(errors) + "." + resume + " "
        f"If this machine is offline or the URLs have moved, download the MIND zips yourself "
        f"(see {MIND_HOME}), put them in a folder and set data.source: local and data.local_path: <that folder>"
    )


def _fetch_resuming(url: str, part: Path, progress: bool, timeout: float, attempts: int = 3) -> int | None:
    """Download ``url`` into ``part``, resuming it; retry while a broken transfer makes progress."""
    for attempt in range(attempts):
        before = part.stat().st_size if part.exists() else 0
        try:
            return _fetch(url, part, progress, timeout)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError, _Failed) as e:
            after = part.stat().st_size if part.exists() else 0
            if after <= before or attempt == attempts - 1:
                raise _Failed(_short(e)) from None
            log.warning(f"{url}: transfer broken after {after:,} bytes ({_short(e)}); resuming")
        except requests.RequestException as e:
            raise _Failed(_short(e)) from None
    raise AssertionError("unreachable")


def _short(e: Exception) -> str:
    """A one-line reason, without urllib3's nested reprs."""
    if isinstance(e, _Failed):
        return str(e)
    text = str(e)
    m = re.search(r"\[Errno -?\d+\][^'\")\]]*|Connection refused|Read timed out|timed out", text)
    return f"{type(e).__name__}: {m.group(0).strip() if m else text[:200]}"


def _fetch(url: str, part: Path, progress: bool, timeout: float) -> int | None:
    """One request: append to ``part`` from where it ends. Returns the full size if known."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    with requests.get(url, headers=headers, stream=True, timeout=(timeout, max(60.0, timeout))) as r:
        if r.status_code == 416 and have:  # nothing after ``have``: complete, or the file changed
            total = _content_range_total(r.headers.get("Content-Range", ""))
            if total == have:
                return total
            part.unlink()
            raise _Failed("the partial download did not match the server's file (HTTP 416); it was deleted")
        if r.status_code == 206:
            start, total = _content_range(r.headers.get("Content-Range", ""))
            if start != have:
                part.unlink()
                raise _Failed(f"the server resumed at byte {start}, not {have}; the partial download was deleted")
            mode = "ab"
        elif r.status_code == 200:
            if have:
                log.info(f"{url}: the server does not resume downloads; starting {part.name} again")
            have = 0
            total = int(r.headers["Content-Length"]) if "Content-Length" in r.headers else None
            mode = "wb"
        else:
            raise _Failed(f"HTTP {r.status_code} {r.reason}")
        try:
            with (
                open(part, mode) as f,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=part.name.removesuffix(".part"),
                    disable=not progress,
                ) as bar,
            ):
                for chunk in r.iter_content(chunk_size=1 << 16):  # a broken chunk is lost: keep them small
                    f.write(chunk)
                    bar.update(len(chunk))
        except requests.RequestException:
            raise  # (a subclass of OSError) the transfer broke: the caller resumes
        except OSError as e:
            raise DownloadError(f"cannot write {part}: {e}") from None
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Failed(f"the connection closed after {size:,} of {total:,} bytes")
    return total


def _content_range(header: str) -> tuple[int, int | None]:
    """``bytes 100-199/1000`` -> (100, 1000); the total may be ``*``."""
    m = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", header.strip())
    if not m:
        raise _Failed(f"the server answered a resume request with an unreadable Content-Range {header!r}")
    return int(m.group(1)), (None if m.group(2) == "*" else int(m.group(2)))


def _content_range_total(header: str) -> int | None:
    m = re.fullmatch(r"bytes \*/(\d+)", header.strip())
    return int(m.group(1)) if m else None


def verify_file(path: Path, size: int | None = None, sha256: str | None = None, name: str | None = None) -> None:
    """Check a downloaded zip: its size and sha256 when given, and every member's CRC.

    Raises :class:`DownloadError` naming the file and what did not match.
    """
    path = Path(path)
    what = name or str(path)
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise DownloadError(f"{what}: size {actual:,} bytes, expected {size:,} (incomplete or a different file)")
    if sha256 is not None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        if h.hexdigest() != sha256.lower():
            raise DownloadError(
                f"{what}: sha256 {h.hexdigest()}, expected {sha256.lower()} (corrupt or a different file)"
            )
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        raise DownloadError(f"{what}: not a readable zip ({e})") from None
    if bad is not None:
        raise DownloadError(f"{what}: member {bad} fails its CRC check (corrupt download)")


# -------------------------------------------------------------------------- extract


def _check_member(info: zipfile.ZipInfo, zip_path: Path, root: Path) -> None:
    """Refuse a member that would land outside ``root``: absolute, ``..``, or a symlink."""
    name = info.filename
    mode = info.external_attr >> 16
    reason = None
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        reason = "an absolute path"
    elif ".." in PurePosixPath(name.replace("\\", "/")).parts:
        reason = "a path that climbs out with '..'"
    elif stat.S_ISLNK(mode):
        reason = "a symbolic link"
    elif not (root / name).resolve().is_relative_to(root.resolve()):
        reason = "a path outside the target folder"
    if reason:
        raise DataError(f"{zip_path}: refusing member {name!r}: it is {reason}; this is not a genuine MIND zip")


def extract_mind_zip(zip_path: Path, dest: Path, progress: bool = True, *, users_file: bool = False) -> Path:
    """Extract a MIND zip's ``news.tsv`` and ``behaviors.tsv`` into ``dest`` (atomically).

    Reuses ``dest`` when it was extracted from this very file (same path, size and
    modification time, recorded in ``dest/.extracted.json``). An existing ``dest`` without
    that marker was not made here and is never replaced (:class:`DataError`).
    ``users_file``: the zip is the user's own (``data.local_path``), so a corrupt one is to
    be replaced by them, not deleted and downloaded again.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    st = zip_path.stat()
    marker = {"zip": str(zip_path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        done = json.loads((dest / EXTRACTED_MARKER).read_text()) == marker
        if done and all((dest / f).is_file() for f in SPLIT_FILES):
            return dest
    except (OSError, ValueError):
        pass
    if (dest.exists() or dest.is_symlink()) and not (dest / EXTRACTED_MARKER).is_file():
        raise DataError(
            f"{dest} exists and was not extracted by this pipeline (no {EXTRACTED_MARKER}); it is left alone: "
            "move it away or choose another data.cache_dir"
        )
    way_out = ("it is your own file (data.local_path), left as it is: replace it with a good copy" if users_file
               else "delete it to download it again")
    corrupt = f"{zip_path}: the zip is truncated or corrupt ({{}}); {way_out}"
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise DataError(corrupt.format(e)) from None
    with zf:
        infos = zf.infolist()
        for info in infos:
            _check_member(info, zip_path, dest)
        members = {}
        for info in infos:
            base = PurePosixPath(info.filename).name
            if base in SPLIT_FILES and not info.is_dir() and not info.filename.startswith("__MACOSX/"):
                if base in members:
                    raise DataError(
                        f"{zip_path}: holds more than one {base} ({members[base].filename}, {info.filename})"
                    )
                members[base] = info
        if len(members) < len(SPLIT_FILES):
            names = ", ".join(i.filename for i in infos[:8]) or "nothing"
            lacking = " or ".join(f for f in SPLIT_FILES if f not in members)
            raise DataError(f"{zip_path}: not a MIND split zip: it has no {lacking} (it holds: {names})")
        total = sum(i.file_size for i in members.values())
        desc = f"extracting {zip_path.name}"
        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not progress)
        with atomic_dir(dest) as tmp, bar:
            for base, info in members.items():
                try:
                    with zf.open(info) as src, open(tmp / base, "wb") as out:
                        while chunk := src.read(1 << 20):
                            out.write(chunk)
                            bar.update(len(chunk))
                except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
                    raise DataError(corrupt.format(e)) from None
            (tmp / EXTRACTED_MARKER).write_text(json.dumps(marker))
    return dest


# ---------------------------------------------------------------------------- local

_SPLIT_RE = re.compile(r"^(?:(?P<prefix>.+?)[_-])?(?P<split>train|dev|valid|validation|test)$", re.IGNORECASE)
_SPLIT_NAMES = {"train": "train", "dev": "dev", "valid": "dev", "validation": "dev", "test": "test"}


def _split_of(stem: str) -> tuple[str, str] | None:
    """``MINDsmall_train`` -> (``MINDsmall``, ``train``); ``dev`` -> ("", ``dev``); else None."""
    m = _SPLIT_RE.match(stem)
    return (m["prefix"] or "", _SPLIT_NAMES[m["split"].lower()]) if m else None


def _is_split_folder(p: Path) -> bool:
    return p.is_dir() and all((p / f).is_file() for f in SPLIT_FILES)


def _expected(path: Path) -> str:
    """What ``path`` holds and what a ``local`` source expects there."""
    try:
        listing = sorted(c.name + ("/" if c.is_dir() else "") for c in path.iterdir())
        held = ", ".join(listing[:12]) + (", ..." if len(listing) > 12 else "") if listing else "nothing"
    except OSError:
        held = "(unreadable)"
    return (
        f"{path} holds: {held}. Expected one of: "
        f"(1) the MIND zips, e.g. MINDsmall_train.zip and MINDsmall_dev.zip (or MINDdemo_*, MINDlarge_*), "
        f"from {MIND_HOME}; "
        f"(2) extracted folders MINDsmall_train/ and MINDsmall_dev/, or train/ and dev/, "
        f"each holding news.tsv and behaviors.tsv; "
        f"(3) one extracted split folder (e.g. .../MINDsmall_train) or zip, next to its dev counterpart."
    )


def local_splits(
    local_path: str | None, cache_dir: Path, progress: bool = True, *, read: list[Path] | None = None
) -> dict[str, Path]:
    """The split folders of a MIND copy the user already has, at ``local_path``.

    ``local_path`` may be (1) a folder of MIND zips (``MINDsmall_train.zip``,
    ``MINDsmall_dev.zip``, optionally ``*_test.zip``; extracted to ``cache_dir``), (2) a
    folder of extracted split folders (``MINDsmall_train/`` and ``MINDsmall_dev/``, or
    ``train/`` and ``dev/``; ``valid`` counts as dev), or (3) one split folder or zip whose
    train/dev counterpart sits next to it. Extracted folders win over zips of the same
    name. A folder holding two sets (e.g. MINDsmall and MINDlarge) is ambiguous: point
    ``local_path`` at one of its zips or folders instead.
    """
    if not local_path:
        raise ParamError(
            "data.local_path must be set when data.source is 'local' (a folder of MIND zips or split folders)"
        )
    path = Path(local_path).expanduser()
    _stat_path(path, "data.local_path")
    found = _find_local(path)
    if read is not None:
        for p in found.values():
            read.extend([p] if p.is_file() else [p / f for f in SPLIT_FILES])
    return _materialise(found, cache_dir, progress)


def _find_local(path: Path) -> dict[str, Path]:
    """The zips or split folders of one MIND set at ``path`` (see :func:`local_splits`)."""
    # (3) one split folder or zip: look at its siblings, for that set only
    one = _split_of(path.name.removesuffix(".zip")) if path.is_file() or _is_split_folder(path) else None
    if one is not None:
        sets = _find_sets(path.parent)
        if one[0] in sets and {"train", "dev"} <= sets[one[0]].keys():
            return sets[one[0]]
        raise DataError(
            f"data.local_path: {path} is a MIND {one[1]} split, but its train/dev counterpart is not next to it. "
            + _expected(path.parent)
        )
    if _is_split_folder(path):
        raise DataError(
            f"data.local_path: {path} holds one split's news.tsv and behaviors.tsv, but its name does not say which "
            f"split it is, and the pipeline needs train and dev. Put the splits side by side as train/ and dev/ (or "
            f"MINDsmall_train/ and MINDsmall_dev/) and set data.local_path to their parent folder."
        )
    if path.is_file():
        raise DataError(
            f"data.local_path: {path} is a file but not a MIND split zip (e.g. MINDsmall_train.zip). "
            + _expected(path.parent)
        )
    sets = {k: v for k, v in _find_sets(path).items() if {"train", "dev"} <= v.keys()}
    if not sets:
        raise DataError(f"data.local_path: found no MIND train and dev splits in {path}. " + _expected(path))
    if len(sets) > 1:
        names = ", ".join(repr(k or "train/dev") for k in sorted(sets))
        raise DataError(
            f"data.local_path: {path} holds several MIND sets ({names}); set data.local_path to one of their "
            f"train zips or folders (e.g. {path / (sorted(sets)[0] + '_train')}) to choose"
        )
    return next(iter(sets.values()))


def _find_sets(folder: Path) -> dict[str, dict[str, Path]]:
    """Split folders and zips in ``folder``, grouped by set prefix: {"MINDsmall": {"train": ...}}."""
    sets: dict[str, dict[str, Path]] = {}
    children = sorted(folder.iterdir())
    for child in children:  # zips first, so that folders of the same name replace them
        if child.is_file() and child.suffix.lower() == ".zip" and (s := _split_of(child.stem)):
            sets.setdefault(s[0], {})[s[1]] = child
    for child in children:
        if _is_split_folder(child) and (s := _split_of(child.name)):
            sets.setdefault(s[0], {})[s[1]] = child
    return sets


def _materialise(found: dict[str, Path], cache_dir: Path, progress: bool) -> dict[str, Path]:
    out = {}
    own = own_cache(cache_dir) if any(p.is_file() for p in found.values()) else None
    for split in ("train", "dev", "test"):
        if split in found:
            p = found[split]
            if p.is_file():
                out[split] = extract_mind_zip(p, own / "extracted" / p.stem, progress, users_file=True)
            else:
                out[split] = p
            log.info(f"MIND {split} split: {out[split]}" + (f" (from {p})" if p.is_file() else ""))
    return out

