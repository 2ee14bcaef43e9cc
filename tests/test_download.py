"""MIND sources: downloads (resume, mirrors, verification, offline), safe unzip, local folders.

No network: HTTP is served by a tiny Range-capable server on 127.0.0.1 in a thread.
"""

from __future__ import annotations

import hashlib
import io
import re
import stat
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tinynewsrec.data import download as dl
from tinynewsrec.data.download import MindZip, download, extract_mind_zip, fetch_source, local_splits, verify_file
from tinynewsrec.data.mind import ingest
from tinynewsrec.errors import DataError, DownloadError

NEWS = "N1\tnews\tnewsus\tA title\tAn abstract\thttps://x/N1\t[]\t[]\nN2\tsports\tnfl\tB title\t\thttps://x/N2\t[]\t[]\n"
BEHAVIORS = "1\tU1\t11/11/2019 9:05:58 AM\tN1\tN2-1 N1-0\n"
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens there


def mind_zip(extra: dict[str, bytes] | None = None, folder: str = "", filler: int = 0) -> bytes:
    """A MIND split zip; ``filler`` adds an incompressible member so the zip has some size."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(folder + "news.tsv", NEWS)
        zf.writestr(folder + "behaviors.tsv", BEHAVIORS)
        if filler:
            zf.writestr(folder + "entity_embedding.vec", bytes(range(256)) * (filler // 256), zipfile.ZIP_STORED)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    """GET with Range support (SimpleHTTPRequestHandler has none); can cut a response short."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if m and srv.ranges:
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cut_after is not None:  # send part of the body, then drop the connection
            body, srv.cut_after = body[: srv.cut_after], None
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.requests, srv.ranges, srv.cut_after = {}, [], True, None
    srv.url = f"http://127.0.0.1:{srv.server_port}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


# ----------------------------------------------------------------------- verification


def test_verify_rejects_a_size_mismatch(tmp_path):
    path = tmp_path / "MINDdemo_train.zip"
    path.write_bytes(mind_zip())
    with pytest.raises(DownloadError, match=r"MINDdemo_train.zip: size .* expected 12"):
        verify_file(path, size=12)


def test_verify_rejects_a_checksum_mismatch(tmp_path):
    path = tmp_path / "MINDdemo_train.zip"
    path.write_bytes(mind_zip())
    verify_file(path, size=path.stat().st_size, sha256=hashlib.sha256(path.read_bytes()).hexdigest())  # the right ones pass
    with pytest.raises(DownloadError, match="sha256"):
        verify_file(path, sha256="0" * 64)


def test_verify_rejects_a_truncated_zip(tmp_path):
    path = tmp_path / "MINDdemo_train.zip"
    path.write_bytes(mind_zip()[:-30])
    with pytest.raises(DownloadError, match="not a readable zip"):
        verify_file(path)


def test_download_with_wrong_checksum_fails_and_deletes_the_part(tmp_path, server):
    server.files["/MINDdemo_train.zip"] = mind_zip()
    entry = MindZip("MINDdemo_train.zip", (server.url + "/MINDdemo_train.zip",), sha256="ab" * 32)
    with pytest.raises(DownloadError, match="sha256"):
        download(entry, tmp_path, progress=False, timeout=2)
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------------- download


def test_offline_fails_within_seconds_naming_every_url_and_the_local_way_out(tmp_path, monkeypatch):
    urls = (f"{CLOSED}/release/MINDsmall_train.zip", f"{CLOSED}/mirror/MINDsmall_train.zip")
    monkeypatch.setitem(dl.MIND_ZIPS, "mind-small", {"train": MindZip("MINDsmall_train.zip", urls), "dev": MindZip("MINDsmall_dev.zip", urls)})
    t0 = time.monotonic()
    with pytest.raises(DownloadError) as err:
        fetch_source("mind-small", tmp_path, progress=False, timeout=2)
    assert time.monotonic() - t0 < 5
    message = str(err.value)
    assert all(u in message for u in urls)
    assert "source: local" in message and "local_path" in message


def test_unroutable_address_gives_up_after_the_connect_timeout(tmp_path):
    entry = MindZip("MINDdemo_train.zip", ("http://10.255.255.1:81/MINDdemo_train.zip",))
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match="10.255.255.1"):
        download(entry, tmp_path, progress=False, timeout=0.5)
    assert time.monotonic() - t0 < 5


def test_partial_download_is_resumed_with_a_range_request(tmp_path, server):
    data = mind_zip(filler=200_000)
    server.files["/MINDdemo_train.zip"] = data
    (tmp_path / "MINDdemo_train.zip.part").write_bytes(data[:100_000])
    entry = MindZip("MINDdemo_train.zip", (server.url + "/MINDdemo_train.zip",))
    path = download(entry, tmp_path, progress=False, timeout=2)
    assert server.requests == [("/MINDdemo_train.zip", "bytes=100000-")]
    assert path.read_bytes() == data
    assert not (tmp_path / "MINDdemo_train.zip.part").exists()


def test_broken_transfer_is_resumed_where_it_stopped(tmp_path, server):
    data = mind_zip(filler=200_000)
    server.files["/MINDdemo_train.zip"] = data
    server.cut_after = 70_000
    entry = MindZip("MINDdemo_train.zip", (server.url + "/MINDdemo_train.zip",))
    path = download(entry, tmp_path, progress=False, timeout=2)
    assert [r[1] for r in server.requests][0] is None and len(server.requests) == 2
    resumed_at = int(re.fullmatch(r"bytes=(\d+)-", server.requests[1][1]).group(1))
    assert 0 < resumed_at <= 70_000  # what was received before the break is kept (up to one chunk)
    assert path.read_bytes() == data


def test_server_without_range_support_restarts_the_download(tmp_path, server):
    data = mind_zip(filler=50_000)
    server.files["/MINDdemo_train.zip"] = data
    server.ranges = False
    (tmp_path / "MINDdemo_train.zip.part").write_bytes(b"garbage" * 100)
    entry = MindZip("MINDdemo_train.zip", (server.url + "/MINDdemo_train.zip",))
    assert download(entry, tmp_path, progress=False, timeout=2).read_bytes() == data


def test_the_next_mirror_is_tried_when_one_fails(tmp_path, server):
    server.files["/newsrec/MINDsmall_dev.zip"] = mind_zip()
    urls = (f"{CLOSED}/release/MINDsmall_dev.zip", server.url + "/missing/MINDsmall_dev.zip", server.url + "/newsrec/MINDsmall_dev.zip")
    path = download(MindZip("MINDsmall_dev.zip", urls), tmp_path, progress=False, timeout=2)
    assert path.read_bytes() == server.files["/newsrec/MINDsmall_dev.zip"]
    assert [p for p, _ in server.requests] == ["/missing/MINDsmall_dev.zip", "/newsrec/MINDsmall_dev.zip"]


def test_fetch_source_downloads_extracts_and_then_reuses_the_cache(tmp_path, server, monkeypatch):
    own = tmp_path / "tinynewsrec"
    server.files["/MINDdemo_train.zip"] = mind_zip(folder="MINDdemo_train/")
    server.files["/MINDdemo_dev.zip"] = mind_zip()
    monkeypatch.setitem(
        dl.MIND_ZIPS,
        "mind-demo",
        {s: MindZip(f"MINDdemo_{s}.zip", (f"{server.url}/MINDdemo_{s}.zip",)) for s in ("train", "dev")},
    )
    folders = fetch_source("mind-demo", tmp_path, progress=False, timeout=2)
    assert folders == {"train": own / "extracted" / "MINDdemo_train", "dev": own / "extracted" / "MINDdemo_dev"}
    assert (folders["train"] / "news.tsv").read_text() == NEWS
    assert (folders["dev"] / "behaviors.tsv").read_text() == BEHAVIORS
    n_requests = len(server.requests)
    assert fetch_source("mind-demo", tmp_path, progress=False, timeout=2) == folders
    assert len(server.requests) == n_requests  # nothing downloaded again


# --------------------------------------------------------------------------- extract


def test_truncated_zip_is_a_data_error_suggesting_to_delete_it(tmp_path):
    path = tmp_path / "MINDsmall_train.zip"
    path.write_bytes(mind_zip()[:-40])
    with pytest.raises(DataError, match=r"MINDsmall_train.zip: the zip is truncated or corrupt .*delete it"):
        extract_mind_zip(path, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_corrupt_member_data_is_a_data_error(tmp_path):
    data = bytearray(mind_zip())
    at = data.index(b"news.tsv") + len(b"news.tsv") + 2  # inside the first member's compressed bytes
    data[at : at + 8] = b"\xff" * 8
    path = tmp_path / "MINDsmall_train.zip"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="truncated or corrupt"):
        extract_mind_zip(path, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/evil.txt", "a/../../evil.txt", "C:/evil.txt"])
def test_zip_member_escaping_the_target_is_refused(tmp_path, member):
    data = mind_zip()
    buf = io.BytesIO(data)
    with zipfile.ZipFile(buf, "a") as zf:
        info = zipfile.ZipInfo("placeholder")
        info.filename = member  # ZipInfo() would sanitise some of these names
        zf.writestr(info, "pwned")
    path = tmp_path / "zips" / "MINDsmall_train.zip"
    path.parent.mkdir()
    path.write_bytes(buf.getvalue())
    with pytest.raises(DataError, match=re.escape(repr(member))):
        extract_mind_zip(path, tmp_path / "zips" / "out", progress=False)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "zips" / "out").exists()


def test_zip_symlink_member_is_refused(tmp_path):
    buf = io.BytesIO(mind_zip())
    with zipfile.ZipFile(buf, "a") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    path = tmp_path / "MINDsmall_train.zip"
    path.write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="'link'.*symbolic link"):
        extract_mind_zip(path, tmp_path / "out", progress=False)


def test_zip_without_mind_files_is_a_data_error(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "hello")
    path = tmp_path / "MINDsmall_train.zip"
    path.write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="not a MIND split zip.*news.tsv or behaviors.tsv"):
        extract_mind_zip(path, tmp_path / "out", progress=False)


# ----------------------------------------------------------------------------- local


def split_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "news.tsv").write_text(NEWS)
    (folder / "behaviors.tsv").write_text(BEHAVIORS)
    return folder


def test_local_folder_of_zips_is_extracted_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the repository: a cache_dir inside it is created
    mine = tmp_path / "mine"
    mine.mkdir()
    for s in ("train", "dev"):
        (mine / f"MINDsmall_{s}.zip").write_bytes(mind_zip())
    folders = fetch_source("local", tmp_path / "cache", local_path=str(mine), progress=False)
    own = tmp_path / "cache" / "tinynewsrec" / "extracted"
    assert folders == {"train": own / "MINDsmall_train", "dev": own / "MINDsmall_dev"}
    assert (folders["dev"] / "news.tsv").read_text() == NEWS
    assert sorted(p.name for p in mine.iterdir()) == ["MINDsmall_dev.zip", "MINDsmall_train.zip"]  # untouched


@pytest.mark.parametrize("names", [("MINDsmall_train", "MINDsmall_dev"), ("train", "dev"), ("train", "valid")])
def test_local_folder_of_extracted_splits_is_used_in_place(tmp_path, names):
    for name in names:
        split_folder(tmp_path / "mine" / name)
    folders = local_splits(str(tmp_path / "mine"), tmp_path / "cache", progress=False)
    assert folders == {"train": tmp_path / "mine" / names[0], "dev": tmp_path / "mine" / names[1]}
    assert not (tmp_path / "cache").exists()


def test_local_single_split_folder_finds_its_dev_sibling(tmp_path):
    train = split_folder(tmp_path / "mine" / "MINDlarge_train")
    dev = split_folder(tmp_path / "mine" / "MINDlarge_dev")
    test = split_folder(tmp_path / "mine" / "MINDlarge_test")
    split_folder(tmp_path / "mine" / "MINDsmall_train")  # another set: not mixed in
    assert local_splits(str(train), tmp_path / "cache", progress=False) == {"train": train, "dev": dev, "test": test}


def test_local_single_zip_finds_its_dev_sibling(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for s in ("train", "dev"):
        (tmp_path / f"MINDdemo_{s}.zip").write_bytes(mind_zip())
    folders = local_splits(str(tmp_path / "MINDdemo_dev.zip"), tmp_path / "cache", progress=False)
    assert sorted(folders) == ["dev", "train"] and (folders["train"] / "behaviors.tsv").is_file()


def test_local_folder_with_two_sets_asks_to_choose(tmp_path):
    for name in ("MINDsmall_train", "MINDsmall_dev", "MINDlarge_train", "MINDlarge_dev"):
        split_folder(tmp_path / name)
    with pytest.raises(DataError, match="several MIND sets.*MINDlarge.*MINDsmall"):
        local_splits(str(tmp_path), tmp_path / "cache", progress=False)


def test_local_folder_without_mind_explains_what_was_expected(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("hi")
    split_folder(tmp_path / "mine" / "MINDsmall_train")  # no dev
    with pytest.raises(DataError) as err:
        local_splits(str(tmp_path / "mine"), tmp_path / "cache", progress=False)
    message = str(err.value)
    assert "notes.txt" in message and "MINDsmall_train.zip and MINDsmall_dev.zip" in message and "train/ and dev/" in message


def test_local_path_that_does_not_exist_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="nowhere does not exist"):
        local_splits(str(tmp_path / "nowhere"), tmp_path / "cache", progress=False)


def test_local_zips_go_through_the_parser(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for s in ("train", "dev"):
        (tmp_path / f"MINDsmall_{s}.zip").write_bytes(mind_zip())
    metrics = ingest(local_splits(str(tmp_path), tmp_path / "cache", progress=False), tmp_path / "out", progress=False)
    assert metrics["train"]["impressions"] == 1 and metrics["dev"]["empty_abstracts"] == 1 and metrics["news_total"] == 2
