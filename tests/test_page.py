"""The service's page (GET /) as a browser shows it: headless Chromium against ``tinynewsrec serve``.

The service, the tiny random model folder and the news index are test_deploy's fixtures (the same
service in a thread, on a free port of 127.0.0.1). Each test runs one Chromium process
(``--dump-dom`` or ``--screenshot``, with a virtual-time budget so that anything the page runs
after load has run). Skipped when no ``chromium`` / ``chromium-browser`` is on PATH.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import test_deploy
from test_deploy import TITLES, call, web_missing

# test_deploy's fixtures, used here too (module scope: this module gets its own service)
tokenizer, files, index, service = test_deploy.tokenizer, test_deploy.files, test_deploy.index, test_deploy.service

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
WINDOW = (900, 640)

pytestmark = [web_missing, pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium or chromium-browser on PATH (apt-get install chromium)")]


def chromium(url: str, tmp_path: Path, *, screenshot: Path | None = None) -> str:
    """The DOM Chromium has after loading ``url`` (``--dump-dom``), or a screenshot of it."""
    what = [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    r = subprocess.run([CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
                        "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
                        f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=2000", *what, url],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


class Parts(HTMLParser):
    """Text of the page's parts: ``ids[id]`` for an element with an id, and ``classes`` as
    ``(enclosing id, class, text)`` for each element with a class, in document order."""

    VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "source", "wbr"})

    def __init__(self, dom: str):
        super().__init__()
        self.open: list[tuple[str, dict]] = []  # (tag, {"id", "class", "scope": nearest id, "text": [...]})
        self.ids: dict[str, str] = {}
        self.classes: list[tuple[str | None, str, str]] = []
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        a = dict(attrs)
        scope = a.get("id") or next((e["scope"] for _, e in reversed(self.open) if e["scope"]), None)
        self.open.append((tag, {"id": a.get("id"), "class": a.get("class"), "scope": scope, "text": []}))

    def handle_endtag(self, tag):
        while self.open:
            name, e = self.open.pop()
            text = " ".join("".join(e["text"]).split())
            if e["id"]:
                self.ids[e["id"]] = text
            if e["class"]:
                self.classes.append((e["scope"], e["class"], text))
            if name == tag:
                return

    def handle_data(self, data):
        for _, e in self.open:
            e["text"].append(data)

    def texts(self, scope: str, cls: str) -> list[str]:
        return [t for s, c, t in self.classes if s == scope and c == cls]


def test_the_page_shows_the_clicked_titles_and_the_apis_recommendations_with_their_scores(service, tmp_path):
    status, api = call(service, "/recommend", {"history": ["N1", "N3"], "k": 4})
    assert status == 200, api
    page = Parts(chromium(f"{service}/?history=N1+N3&k=4", tmp_path))
    assert "error" not in page.ids
    assert page.texts("clicked", "title") == [TITLES[0], TITLES[2]]
    assert page.texts("clicked", "news-id") == ["N1", "N3"]
    shown = list(zip(page.texts("recommended", "news-id"), page.texts("recommended", "title"),
                     page.texts("recommended", "score")))
    assert shown == [(it["news_id"], it["title"], f"{it['score']:.4f}") for it in api["items"]] and len(shown) == 4


def test_a_bad_history_shows_the_services_error_in_the_page_not_a_blank_page(service, tmp_path):
    status, api = call(service, "/recommend", {"history": ["N1", "N404"], "k": 3})
    assert status == 422, api
    page = Parts(chromium(f"{service}/?history=N1+N404&k=3", tmp_path))
    assert page.ids["error"] == api["error"] and "N404" in page.ids["error"]
    assert "recommended" not in page.ids and page.texts("clicked", "news-id") == ["N1", "N404"]


def test_the_screenshot_of_the_page_is_a_png_with_text_on_it(service, tmp_path):
    shot = tmp_path / "page.png"
    chromium(f"{service}/?history=N1+N3+N5&k=5", tmp_path, screenshot=shot)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    try:
        from PIL import Image
    except ImportError:  # no PIL: a compressed all-white 900x640 PNG is well under 10 kB
        assert len(data) > 10_000 and len(set(data[100:])) > 200
        return
    with Image.open(shot) as im:
        gray = im.convert("L")
        size, (darkest, lightest) = im.size, gray.getextrema()
        dark = sum(gray.histogram()[:128])
    assert size == WINDOW and darkest < 64 and lightest > 192, (size, darkest, lightest)
    assert dark > 2_000, f"only {dark} dark pixels: the page looks blank"
