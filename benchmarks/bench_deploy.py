"""Speed of the deployment paths (issue 15); writes metrics/bench_deploy.json.

``index``
    A news index of ``--news`` (160,000: MIND-large's news count) random ``--dim`` (256) float32
    vectors: build (ids table + save + load of the safetensors file; FAISS ``IndexFlatIP.add``)
    and top-100 search for one user at a time (median and p99 over ``--queries`` users) and for a
    batch of 64 users, with the exact torch search (blocks + ``torch.topk``) and FAISS when it is
    installed. Both are exact: they must return the same news (``faiss_agrees``).

``service``
    A bounded load test of ``tinynewsrec serve`` on 127.0.0.1 only (a child process started here
    and stopped at the end): ``--requests`` POST /recommend (k=10, random histories of 1..50 news
    of the index) at each concurrency 1, 4 and 16 (that many client threads, one keep-alive
    connection each), after a warm-up. Reports requests/s, p50 / p99 latency, and that every
    request was answered (``lost`` = sent - answered, ``errors`` = non-200 answers). The model is a
    tiny random PLM-NR (2 layers, hidden 32) with 256-dim news vectors, unless ``--model`` names a
    model folder: a request runs only the user encoder and the search over the index, which do not
    depend on the PLM's size (news are encoded offline, into the index).

Each section records the command line, the date, torch's thread count, the machine and the
1-minute load average before and after it (above the core count: other work shared the CPU).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_deploy.py            # ~1 min
    .venv/bin/python benchmarks/bench_deploy.py --only index
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench import context

from tinynewsrec.deploy.index import NewsIndex, faiss_available
from tinynewsrec.io import atomic_dir, write_json

SECTIONS = ("index", "service")
CONCURRENCY = (1, 4, 16)


def percentiles_ms(seconds: list[float]) -> dict:
    a = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3)}


def random_index(n: int, dim: int, seed: int = 0) -> NewsIndex:
    g = torch.Generator().manual_seed(seed)
    vectors = torch.randn(n, dim, generator=g)
    return NewsIndex([f"N{i}" for i in range(1, n + 1)], vectors, [f"title {i}" for i in range(1, n + 1)],
                     {"model_sha256": "", "title_len": 32})


def bench_index(args) -> dict:
    started, load = time.perf_counter(), os.getloadavg()
    g = torch.Generator().manual_seed(1)
    vectors = torch.randn(args.news, args.dim, generator=g)
    ids = [f"N{i}" for i in range(1, args.news + 1)]
    t = time.perf_counter()
    index = NewsIndex(ids, vectors, [f"title {i}" for i in range(1, args.news + 1)], {"model_sha256": ""})
    build = {"torch_table_s": round(time.perf_counter() - t, 3)}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        index.save(Path(tmp) / "index.safetensors")
        build["save_s"] = round(time.perf_counter() - t, 3)
        build["file_mb"] = round((Path(tmp) / "index.safetensors").stat().st_size / 2**20, 1)
        t = time.perf_counter()
        index = NewsIndex.load(Path(tmp) / "index.safetensors")
        build["load_s"] = round(time.perf_counter() - t, 3)
    queries = torch.randn(args.queries, args.dim, generator=g)
    batch = torch.randn(64, args.dim, generator=g)
    out = {"news": args.news, "dim": args.dim, "k": 100, "build": build}
    backends = ["torch"] + (["faiss"] if faiss_available() else [])
    results = {}
    for backend in backends:
        if backend == "faiss":
            t = time.perf_counter()
            index.faiss_index()
            build["faiss_add_s"] = round(time.perf_counter() - t, 3)
        index.topk(queries[:1], 100, backend=backend)  # warm-up
        times, found = [], []
        for q in queries:
            t = time.perf_counter()
            _, pos = index.topk(q[None], 100, backend=backend)
            times.append(time.perf_counter() - t)
            found.append(pos)
        t = time.perf_counter()
        index.topk(batch, 100, backend=backend)
        batch_s = time.perf_counter() - t
        results[backend] = torch.cat(found)
        out[backend] = {"one_user": percentiles_ms(times), "batch_64_ms": round(batch_s * 1000, 2),
                        "users_per_s_batched": round(64 / batch_s, 1)}
    if "faiss" in results:
        out["faiss_agrees"] = bool(torch.equal(results["torch"], results["faiss"]))
    out["context"] = context(started, load)
    return out


def make_tiny_model(folder: Path) -> Path:
    from tinynewsrec.models.plm import make_tiny_bert
    from tinynewsrec.models.plmnr import PLMNR, PLMNRConfig

    model = PLMNR(make_tiny_bert(num_layers=2, hidden=32), PLMNRConfig())
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp, method="random (benchmark)")
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with status {proc.returncode}: {proc.stderr.read()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the service did not answer /health in time")


def load_level(port: int, ids: list[str], requests: int, concurrency: int, seed: int) -> dict:
    """``requests`` POST /recommend over ``concurrency`` threads (keep-alive connections)."""
    rng = np.random.default_rng(seed)
    bodies = [json.dumps({"history": [ids[j] for j in rng.choice(len(ids), size=int(rng.integers(1, 51)),
                                                                   replace=False)], "k": 10}).encode()
              for _ in range(requests)]
    latencies, statuses, lock = [], [], threading.Lock()
    chunks = [bodies[i::concurrency] for i in range(concurrency)]

    def worker(mine):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for body in mine:
            t = time.perf_counter()
            try:
                conn.request("POST", "/recommend", body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                status = r.status
            except OSError:
                status = None
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with lock:
                latencies.append(time.perf_counter() - t)
                statuses.append(status)
        conn.close()

    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    answered = sum(s is not None for s in statuses)
    return {"concurrency": concurrency, "requests": requests, "answered": answered, "lost": requests - answered,
            "errors": sum(s not in (None, 200) for s in statuses), "requests_per_s": round(requests / wall, 1),
            **percentiles_ms(latencies)}


def bench_service(args) -> dict:
    started, load = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = Path(args.model) if args.model else make_tiny_model(tmp / "model")
        from tinynewsrec.recommender import load_recommender

        dim = load_recommender(model).news_dim
        index = random_index(args.news, dim)
        index.save(tmp / "index.safetensors")
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        proc = subprocess.Popen([sys.executable, "-m", "tinynewsrec.deploy.cli", "-q", "serve", str(model),
                                 "--index", str(tmp / "index.safetensors"), "--host", "127.0.0.1", "--port",
                                 str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_healthy(port, proc)
            load_level(port, index.ids, 20, 1, seed=99)  # warm-up
            levels = [load_level(port, index.ids, args.requests, c, seed=c) for c in CONCURRENCY]
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    return {"news": args.news, "dim": dim, "k": 10, "model": args.model or "tiny random PLM-NR (2 layers, hidden 32)",
            "levels": levels, "context": context(started, load)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="*", choices=SECTIONS)
    p.add_argument("--news", type=int, default=160_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--requests", type=int, default=400, help="requests per concurrency level")
    p.add_argument("--model", help="a model folder to serve (default: a tiny random PLM-NR)")
    p.add_argument("--out", default=str(ROOT / "metrics" / "bench_deploy.json"))
    args = p.parse_args(argv)
    out = Path(args.out)
    figures = json.loads(out.read_text()) if out.exists() else {}
    for section in args.only or SECTIONS:
        print(f"--- {section}", flush=True)
        figures[section] = {"index": bench_index, "service": bench_service}[section](args)
        print(json.dumps(figures[section], indent=2), flush=True)
    write_json(figures, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
