"""A picture of ``tinynewsrec serve``'s page (GET /) in headless Chromium; writes docs/page.png.

Starts ``tinynewsrec serve`` (a child process on a free port of 127.0.0.1, stopped at the end)
over ``--model`` and a news index, loads ``/?history=...&k=...`` in headless Chromium
(``--dump-dom`` first, to check that the page shows recommendations and no error, then
``--screenshot``) and writes the PNG atomically. The index is ``--index`` if given, else built
now by ``tinynewsrec build-index`` from ``--news``. Without ``--model``: a tiny random PLM-NR
(2 layers, hidden 32) exported with the default tokenizer, over 12 made-up news; its scores
mean nothing, the picture shows the page's layout. ``--history`` defaults to the first three
news of the index.

Lives in benchmarks/ next to bench_deploy.py (the other script that starts the service): it is
a measurement-like run of the deploy path that writes a committed artifact, not a test.

    .venv/bin/python benchmarks/screenshot_page.py                      # tiny random model, 900x480
    # docs/page.png: the pipeline's student (a pipeline folder: tokenizer and title length from params.yaml)
    .venv/bin/python benchmarks/screenshot_page.py --model models/student --news data/mind/dev/news.parquet \\
        -k 8 --window 900x560
    .venv/bin/python benchmarks/screenshot_page.py --model deploy/student --index deploy/dev_index.safetensors \\
        --history N1 N2 N3 --out /tmp/page.png
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_deploy import free_port, stop, wait_healthy

from tinynewsrec.io import atomic_path

TITLES = [
    "Stocks rally as markets close higher", "The best pasta recipes for winter", "Football team wins the cup final",
    "New phone released with a bigger screen", "How to train for a marathon", "Election results in three states",
    "Movie review: a quiet summer", "Storm brings snow to the north", "Ten tips to save money on travel",
    "Scientists find water on a distant moon", "Basketball star signs a new contract", "Easy breakfast ideas",
]


def find_chromium() -> str:
    found = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
    if found is None:
        raise SystemExit("error: no chromium or chromium-browser on PATH (apt-get install chromium)")
    return found


def chromium(binary: str, url: str, profile: Path, window: tuple[int, int], *, screenshot: Path | None = None) -> str:
    what = [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    r = subprocess.run([binary, "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
                        "--no-first-run", f"--user-data-dir={profile}", "--hide-scrollbars",
                        f"--window-size={window[0]},{window[1]}", "--virtual-time-budget=2000", *what, url],
                       capture_output=True, text=True, timeout=120, check=False)
    if r.returncode != 0:
        raise SystemExit(f"error: chromium exited with status {r.returncode}: {r.stderr.strip()[-500:]}")
    return r.stdout


def tiny_model_and_news(tmp: Path) -> tuple[Path, Path]:
    """A tiny random PLM-NR, exported as ``export-model`` does, and a MIND news.tsv of :data:`TITLES`."""
    import torch

    from tinynewsrec.deploy import export_model_folder
    from tinynewsrec.io import atomic_dir
    from tinynewsrec.models.plm import make_tiny_bert
    from tinynewsrec.models.plmnr import PLMNR, PLMNRConfig

    torch.manual_seed(0)
    model = PLMNR(make_tiny_bert(num_layers=2, hidden=32, seed=0), PLMNRConfig(news_dim=16, news_query_dim=8,
                                                                             user_query_dim=8))
    with atomic_dir(tmp / "pipeline_model") as out:
        model.save_pretrained(out, method="random (screenshot)", epochs=0, steps=0)
    exported = export_model_folder(tmp / "pipeline_model", tmp / "model", plm_name="default", title_len=16,
                                   history_len=5)
    news = tmp / "news.tsv"
    news.write_text("".join(f"N{i}\tnews\tgeneral\t{t}\t\t\t[]\t[]\n" for i, t in enumerate(TITLES, 1)),
                    encoding="utf-8")
    return exported, news


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tinynewsrec.deploy.cli", "-q", *args]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="a model folder (exported or a pipeline one); default: a tiny random PLM-NR")
    p.add_argument("--news", help="news.parquet or a MIND news.tsv to index (with --model, unless --index)")
    p.add_argument("--index", help="a news index from build-index (instead of --news)")
    p.add_argument("--history", nargs="*", help="clicked news ids, oldest first (default: the index's first three)")
    p.add_argument("-k", type=int, default=6)
    p.add_argument("--window", default="900x480", help="WIDTHxHEIGHT of the picture (default 900x480)")
    p.add_argument("--out", default=str(ROOT / "docs" / "page.png"))
    args = p.parse_args(argv)
    if args.model and not (args.news or args.index):
        p.error("--model needs --news or --index")
    if (args.news or args.index) and not args.model:
        p.error("--news / --index need --model (without it the script makes its own tiny model and news)")
    try:
        window = tuple(int(v) for v in args.window.lower().split("x"))
        assert len(window) == 2 and min(window) > 0
    except (ValueError, AssertionError):
        p.error(f"--window must be WIDTHxHEIGHT, e.g. 900x640, got {args.window!r}")
    binary = find_chromium()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, news = (Path(args.model), args.news) if args.model else tiny_model_and_news(tmp)
        index = Path(args.index) if args.index else tmp / "index.safetensors"
        if not args.index:
            print(f"building the index of {news} ...", flush=True)
            if subprocess.run(cli("build-index", str(model), str(news), str(index)), env=env, check=False).returncode:
                raise SystemExit(2)  # build-index said why, in one line
        history = args.history
        if history is None:
            from tinynewsrec.deploy.index import NewsIndex

            history = NewsIndex.load(index).ids[:3]
        port = free_port()
        proc = subprocess.Popen(cli("serve", str(model), "--index", str(index), "--host", "127.0.0.1", "--port",
                                    str(port)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        query = "/?" + urllib.parse.urlencode({"history": " ".join(history), "k": args.k})
        try:
            try:
                wait_healthy(port, proc)
            except RuntimeError as e:
                raise SystemExit(f"error: {' '.join(str(e).split())}") from None
            url = f"http://127.0.0.1:{port}{query}"
            dom = chromium(binary, url, tmp / "profile", window)
            error = re.search(r'id="error"[^>]*>([^<]*)<', dom)
            if error or 'id="recommended"' not in dom:
                raise SystemExit(f"error: the page {query} shows no recommendations: "
                                 f"{html.unescape(error.group(1)) if error else 'no #recommended table'}")
            shot = tmp / "page.png"  # chromium picks the format from the name's ending
            chromium(binary, url, tmp / "profile", window, screenshot=shot)
            if not shot.is_file() or shot.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
                raise SystemExit(f"error: chromium did not write a PNG screenshot of {query}")
            with atomic_path(args.out, suffix=".png") as out:
                shutil.copyfile(shot, out)
        finally:
            stop(proc, 10)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size:,} bytes): the page {query}, {window[0]}x{window[1]}")


if __name__ == "__main__":
    main()
