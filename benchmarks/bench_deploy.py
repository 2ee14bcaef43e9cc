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

``onnx``
    PyTorch fp32, ONNX fp32 and ONNX int8 side by side for every model of ``--models NAME=FOLDER``
    (a trained model folder as the pipeline writes it, e.g. ``teacher=models/teacher_3``, or an
    already exported folder), on the data of ``--data`` (a repository root holding params.yaml,
    data/tokens/news.parquet and data/samples/dev.parquet; default this repository):

    - each pipeline folder is exported (:func:`~tinynewsrec.deploy.export.export_model_folder`, into a
      temporary folder), then ONNX fp32 and int8 files of both halves are written and checked
      (:func:`~tinynewsrec.deploy.onnx_export.export_onnx`, its random-input report kept as
      ``export_check``); PyTorch runs the exported folder (the same weights, bit for bit);
    - **news/s**: every backend of every model encodes the SAME ``--encode-news`` news, in batches
      of ``eval.bench_batch`` padded to ``plm.title_len`` tokens (as metrics/efficiency.json); one
      untimed warm-up round, then ``--rounds`` rounds in which each (model, backend) times one pass
      (the order rotates every round); the best and the median round are reported. torch and every
      onnxruntime session run on the same thread count (``--threads``, default torch's), recorded;
    - **parity**: max abs difference to PyTorch fp32 of the news vectors of every dev news
      (``news_max_abs_diff``) and of the user vectors of every dev impression, from the user encoder
      alone on PyTorch's news vectors (``user_max_abs_diff``) and end to end, from the backend's own
      news vectors (``user_max_abs_diff_end_to_end``);
    - **dev metrics**: every dev news encoded by the backend (batches of ``plm.encode_batch``,
      ordered by length, as the evaluate stage does), the dev impressions scored by the SAME
      backend's user encoder (``user_encoder``: the ONNX file of the same precision; also
      ``dev_with_pytorch_user_encoder``: the PyTorch user encoder over the backend's news vectors)
      and ranked by :func:`tinynewsrec.evaluate.rank_and_score`, as metrics/eval.json. PyTorch fp32
      is also evaluated exactly as the evaluate stage does (through the frozen-layer cache
      data/cache/frozen/title when it fits the model, which the teachers' does; ONNX graphs take
      token ids, so the rows here encode token ids); that AUC is compared with the model's row of
      eval.json (``eval_json``: ``equal`` at eval.json's 6 decimals). The row is the folder's
      name (an exported folder: the name it was exported under) in ``FOLDER/../../metrics/eval.json``
      when the folder sits in a pipeline's ``models/`` beside a ``metrics/eval.json``; elsewhere
      ``--eval-row NAME=PATH#ROW`` names it, else it is not checked (``equal``: null), rather than
      guessed: a student copied out of a ``dvc exp`` has the name of the workspace's own student.

    A markdown table (model, layers, backend, news/s, speed-up over the model's PyTorch fp32, max
    abs diff, dev AUC) is printed. Without ``--only``, the section runs when ``--models`` is given.

Each section records the command line, the date, torch's thread count, the machine and the
1-minute load average before and after it (above the core count: other work shared the CPU).
A section that is not run keeps the figures it has in the output file.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_deploy.py            # ~1 min
    .venv/bin/python benchmarks/bench_deploy.py --only index
    .venv/bin/python benchmarks/bench_deploy.py --only onnx --models teacher=models/teacher_3 student=models/student
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import os
import socket
import statistics
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

from bench import context, say

from tinynewsrec.deploy.index import NewsIndex, faiss_available
from tinynewsrec.errors import DataError, ParamError
from tinynewsrec.evaluate import (
    DevImpressions,
    encode_news,
    evaluate_model,
    news_lookup,
    rank_and_score,
    score_impressions,
)
from tinynewsrec.io import atomic_dir, write_json

SECTIONS = ("index", "service", "onnx")
BACKENDS = ("pytorch_fp32", "onnx_fp32", "onnx_int8")
CONCURRENCY = (1, 4, 16)


def stop(proc: subprocess.Popen, timeout: float) -> None:
    """Terminate a child process started here; kill it if it has not ended after ``timeout`` s."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


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
            stop(proc, 20)
    return {"news": args.news, "dim": dim, "k": 10, "model": args.model or "tiny random PLM-NR (2 layers, hidden 32)",
            "levels": levels, "context": context(started, load)}


# --- onnx -----------------------------------------------------------------------------------


def parse_pairs(specs: list[str] | None, what: str) -> dict[str, str]:
    """``NAME=VALUE`` arguments as a dict (a DataError naming the bad one)."""
    out = {}
    for spec in specs or []:
        name, sep, value = spec.partition("=")
        if not sep or not name or not value:
            raise DataError(f"{what}: {spec!r} is not NAME=VALUE")
        if name in out:
            raise DataError(f"{what}: {name!r} is given twice")
        out[name] = value
    return out


def is_exported(folder: Path) -> bool:
    from tinynewsrec.recommender import read_config

    return isinstance(read_config(folder).get("serving"), dict)


def eval_json_row(folder: Path, override: str | None) -> tuple[Path | None, str]:
    """Which metrics/eval.json row is ``folder``'s model (section docstring): ``(None, row)`` when
    none is known (the folder is not in a pipeline's models/ and no --eval-row names one)."""
    from tinynewsrec.recommender import read_config

    row = (read_config(folder).get("name") if is_exported(folder) else None) or folder.resolve().name
    if override:
        path, _, given = override.partition("#")
        return Path(path), given or row
    beside = folder.resolve().parent
    if beside.name == "models" and (beside.parent / "metrics" / "eval.json").is_file():
        return beside.parent / "metrics" / "eval.json", row
    return None, row


def timed_pass(run, feeds: list) -> float:
    """News per second of ``run`` over ``feeds`` after one warm-up batch (as efficiency.news_throughput)."""
    run(feeds[0])
    start = time.perf_counter()
    for feed in feeds:
        run(feed)
    return sum(len(f["input_ids"]) for f in feeds) / (time.perf_counter() - start)


def onnx_news_table(sess, lookup, news_index: np.ndarray, n_slots: int, batch_size: int) -> torch.Tensor:
    """:func:`tinynewsrec.evaluate.encode_news` with an ONNX news encoder: the same batches (news
    sorted by length, padded to each batch's longest), the same [n_slots, D] table."""
    from tinynewsrec.deploy.onnx_export import run_news

    news_index = np.unique(np.asarray(news_index, dtype=np.int64))
    news_index = news_index[news_index > 0]
    news_index = news_index[np.argsort(np.diff(lookup.offsets)[news_index], kind="stable")]
    parts = [torch.from_numpy(run_news(sess, lookup.batch(news_index[lo: lo + batch_size])))
             for lo in range(0, len(news_index), batch_size)]
    vecs = torch.cat(parts)
    table = torch.zeros(n_slots, vecs.shape[1])
    table[torch.from_numpy(news_index)] = vecs
    return table


@torch.inference_mode()
def onnx_dev_scores(model, user_sess, ref_vecs: torch.Tensor, vecs: torch.Tensor, dev, batch_size: int) -> dict:
    """Scores of every dev candidate by an ONNX backend (its news vectors ``vecs`` and user encoder
    ``user_sess``) and by the PyTorch user encoder over ``vecs``, in the batches of
    :func:`tinynewsrec.evaluate.score_impressions`; and the max abs differences of the user vectors
    to PyTorch's (``ref_vecs``: PyTorch's news vectors)."""
    from tinynewsrec.deploy.onnx_export import run_user
    from tinynewsrec.models.cache import pad_ranges

    h_len, c_len = np.diff(dev.history_offsets), np.diff(dev.offsets)
    onnx_scores, torch_user_scores, alone, end_to_end = [], [], 0.0, 0.0
    for lo in range(0, len(dev), batch_size):
        rows = np.arange(lo, min(lo + batch_size, len(dev)))
        hist, hist_mask = pad_ranges(dev.history, dev.history_offsets[rows], h_len[rows])
        cand, cand_mask = pad_ranges(dev.candidates, dev.offsets[rows], c_len[rows])
        hist_mask &= hist > 0
        hist_t, cand_t = torch.from_numpy(hist.astype(np.int64)), torch.from_numpy(cand.astype(np.int64))
        mask_t, keep = torch.from_numpy(hist_mask), torch.from_numpy(cand_mask)
        ref_users = model.encode_user(ref_vecs[hist_t], mask_t)
        alone = max(alone, float((torch.from_numpy(run_user(user_sess, ref_vecs[hist_t], hist_mask)) - ref_users)
                                 .abs().max()))
        users = torch.from_numpy(run_user(user_sess, vecs[hist_t], hist_mask))
        end_to_end = max(end_to_end, float((users - ref_users).abs().max()))
        onnx_scores.append(model.score(users, vecs[cand_t])[keep].float())
        torch_user_scores.append(model.score(model.encode_user(vecs[hist_t], mask_t), vecs[cand_t])[keep].float())
    return {"scores": torch.cat(onnx_scores).numpy(), "scores_pytorch_user": torch.cat(torch_user_scores).numpy(),
            "user_max_abs_diff": alone, "user_max_abs_diff_end_to_end": end_to_end}


def prepare_model(name: str, folder: Path, tmp: Path, data: Path, tokenizer_name: str, threads: int) -> dict:
    """Export ``folder`` (if it is not an exported folder yet) and its ONNX fp32 + int8 files; load
    the PyTorch model and the onnxruntime sessions."""
    from tinynewsrec.deploy.export import export_model_folder
    from tinynewsrec.deploy.onnx_export import export_onnx, session
    from tinynewsrec.models.plm import load_tokenizer
    from tinynewsrec.recommender import load_recommender

    exported = folder
    if not is_exported(folder):
        say(f"onnx: exporting {name} ({folder}) into a temporary folder")
        exported = export_model_folder(folder, tmp / name / "model", params_path=data / "params.yaml",
                                       tokenizer=load_tokenizer(tokenizer_name))
    say(f"onnx: writing and checking {name}'s ONNX fp32 and int8 files")
    report = export_onnx(exported, tmp / name / "onnx", int8=True)
    model = load_recommender(exported).eval()
    sessions = {"onnx_fp32": (session(report["news_encoder"]["path"], threads),
                              session(report["user_encoder"]["path"], threads)),
                "onnx_int8": (session(report["news_encoder.int8"]["path"], threads),
                              session(report["user_encoder.int8"]["path"], threads))}
    check = {k: {"mb": round(v["bytes"] / 2**20, 2), "max_abs_diff": v["max_abs_diff"],
                 "correlation": round(v["correlation"], 6)} for k, v in report.items()}
    return {"model": model, "sessions": sessions, "export_check": check, "exported": exported}


def bench_onnx(args) -> dict:
    started, load = time.perf_counter(), os.getloadavg()
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        raise ParamError("the onnx section needs the onnx and onnxruntime packages (pip install -e '.[deploy]')") \
            from None
    from tinynewsrec.data import schemas
    from tinynewsrec.efficiency import bench_batches
    from tinynewsrec.models.plmnr import NewsTokens
    from tinynewsrec.params import load_params

    specs = {name: Path(folder) for name, folder in parse_pairs(args.models, "--models").items()}
    if not specs:
        raise DataError("the onnx section needs --models NAME=FOLDER ... (e.g. teacher=models/teacher_3)")
    rows_override = parse_pairs(args.eval_row, "--eval-row")
    unknown = sorted(set(rows_override) - set(specs))
    if unknown:
        raise DataError(f"--eval-row names {unknown[0]!r}, which is not a model of --models")
    for name, folder in specs.items():
        if not (folder / "config.json").is_file():
            raise DataError(f"--models {name}={folder}: no model folder there (no config.json)")
    data = Path(args.data)
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    params = load_params(data / "params.yaml")
    tokens = schemas.read_tokens(data / "data/tokens/news.parquet")
    dev = DevImpressions.read(data / "data/samples/dev.parquet", params.data.history_len)
    if len(dev) == 0:
        raise DataError(f"{data / 'data/samples/dev.parquet'} holds no impressions")
    news_index = tokens.column("news_index").to_numpy()
    n_slots = int(news_index.max()) + 1
    title_tokens = NewsTokens(tokens, "title_ids")
    batches = bench_batches(title_tokens, news_index, args.encode_news, params.eval.bench_batch, params.plm.title_len)
    feeds = [{k: v.numpy() for k, v in b.items()} for b in batches]  # the same arrays, for onnxruntime
    tokenizer_name = params.plm.name
    if (data / tokenizer_name).exists():
        tokenizer_name = str(data / tokenizer_name)

    out = {"threads": {"torch": threads, "onnxruntime_intra_op": threads}, "onnxruntime": onnxruntime.__version__,
           "data": str(data.resolve()), "news_per_pass": args.encode_news, "batch_size": params.eval.bench_batch,
           "pad_len": params.plm.title_len, "rounds": args.rounds,
           "dev": {"impressions": len(dev), "news": len(dev.news_index())}, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = {name: prepare_model(name, folder, Path(tmp), data, tokenizer_name, threads)
                    for name, folder in specs.items()}
        runs = {}
        for name, p in prepared.items():
            runs[(name, "pytorch_fp32")] = p["model"].encode_news, batches
            for backend, (news_sess, _) in p["sessions"].items():
                runs[(name, backend)] = functools.partial(news_sess.run, None), feeds
        say(f"onnx: {args.encode_news} news in batches of {params.eval.bench_batch} padded to {params.plm.title_len} "
            f"tokens, {len(runs)} (model, backend) pairs, 1 warm-up + {args.rounds} rounds, {threads} thread(s)")
        speeds = {key: [] for key in runs}
        order = list(runs)
        with torch.inference_mode():
            for run, inputs in runs.values():  # the warm-up round, untimed
                timed_pass(run, inputs)
            for r in range(args.rounds):
                shift = r % len(order)
                for key in order[shift:] + order[:shift]:  # the order rotates every round
                    speeds[key].append(timed_pass(*runs[key]))
                say(f"  round {r + 1}/{args.rounds}: " + ", ".join(
                    f"{n} {b} {max(v):.0f}" for (n, b), v in speeds.items()) + " news/s (best so far)")

        for name, p in prepared.items():
            model = p["model"]
            say(f"onnx: {name}: dev news and impressions, {len(BACKENDS)} backends")
            cache_lookup = news_lookup(model.plm, tokens, "title_ids", data / "data/cache/frozen/title", name)
            stage_vecs, stage_scores = evaluate_model(model, dev, cache_lookup, n_slots=n_slots,
                                                      encode_batch=params.plm.encode_batch,
                                                      batch_size=params.eval.batch_size, name=name, progress=False)
            as_stage = rank_and_score(stage_scores, dev, name).metrics
            if isinstance(cache_lookup, NewsTokens):  # the evaluate stage read token ids too: the same vectors
                ref_vecs, ref = stage_vecs, as_stage
            else:
                ref_vecs = encode_news(model, title_tokens, dev.news_index(), n_slots=n_slots,
                                       batch_size=params.plm.encode_batch, progress=False)
                ref = rank_and_score(score_impressions(model, ref_vecs, dev, batch_size=params.eval.batch_size,
                                                       progress=False), dev, name).metrics
            del stage_vecs
            path, row = eval_json_row(specs[name], rows_override.get(name))
            try:
                recorded = json.loads(path.read_text()).get(row) if path is not None and path.is_file() else None
            except (OSError, ValueError, AttributeError):
                recorded = None
            eval_check = {"path": None if path is None else str(path), "row": row,
                          "news_input_of_evaluate_stage": ("token ids" if isinstance(cache_lookup, NewsTokens)
                                                           else "frozen-layer cache data/cache/frozen/title"),
                          "pytorch_fp32_as_evaluate_stage": as_stage,
                          "eval_json_auc": recorded.get("auc") if isinstance(recorded, dict) else None}
            eval_check["equal"] = (None if eval_check["eval_json_auc"] is None
                                   else round(as_stage["auc"], 6) == round(eval_check["eval_json_auc"], 6))
            eval_check["pytorch_fp32_token_ids_auc_minus_eval_json"] = (
                None if eval_check["eval_json_auc"] is None else round(ref["auc"] - eval_check["eval_json_auc"], 6))
            pt_speed = speeds[(name, "pytorch_fp32")]
            dev_rows = torch.from_numpy(dev.news_index())
            backends = {"pytorch_fp32": {"news_max_abs_diff": 0.0, "user_max_abs_diff": 0.0,
                                         "user_max_abs_diff_end_to_end": 0.0, "user_encoder": "pytorch fp32",
                                         "news_vector_max_abs": float(ref_vecs[dev_rows].abs().max()),
                                         "dev": ref}}
            for backend, (news_sess, user_sess) in p["sessions"].items():
                vecs = onnx_news_table(news_sess, title_tokens, dev.news_index(), n_slots, params.plm.encode_batch)
                scored = onnx_dev_scores(model, user_sess, ref_vecs, vecs, dev, params.eval.batch_size)
                backends[backend] = {
                    "news_max_abs_diff": float((vecs[dev_rows] - ref_vecs[dev_rows]).abs().max()),
                    "user_max_abs_diff": scored["user_max_abs_diff"],
                    "user_max_abs_diff_end_to_end": scored["user_max_abs_diff_end_to_end"],
                    "user_encoder": backend.replace("_", " "),
                    "dev": rank_and_score(scored["scores"], dev, f"{name} {backend}").metrics,
                    "dev_with_pytorch_user_encoder": rank_and_score(scored["scores_pytorch_user"], dev).metrics}
            for backend, b in backends.items():
                v = speeds[(name, backend)]
                b.update({"news_per_s_best": round(max(v), 1), "news_per_s_median": round(statistics.median(v), 1),
                          "speedup_best": round(max(v) / max(pt_speed), 2),
                          "speedup_median": round(statistics.median(v) / statistics.median(pt_speed), 2),
                          "news_per_s_rounds": [round(x, 1) for x in v]})
            out["models"][name] = {"folder": str(specs[name]), "layers": len(model.plm.encoder.layer),
                                   "exported": "given" if p["exported"] == specs[name] else "by this benchmark",
                                   "backends": backends, "eval_json": eval_check, "export_check": p["export_check"]}
    out["context"] = context(started, load)
    return out


def onnx_table(r: dict) -> str:
    """The onnx section as a markdown table."""
    head = (f"{r['news_per_pass']} news in batches of {r['batch_size']} padded to {r['pad_len']} tokens, "
            f"{r['threads']['torch']} thread(s) for torch and onnxruntime; news/s: best (median) of {r['rounds']} "
            f"rounds; max abs diff to PyTorch fp32 of the news / user vectors (end to end); dev AUC over "
            f"{r['dev']['impressions']:,} impressions ({r['dev']['news']:,} news), each backend's own user encoder.")
    lines = [head, "", "| model | layers | backend | news/s | speed-up vs PyTorch fp32 | max abs diff (news / user) | dev AUC |",
             "|---|---|---|---|---|---|---|"]
    for name, m in r["models"].items():
        for backend, b in m["backends"].items():
            diff = ("0 (reference)" if backend == "pytorch_fp32" else
                    f"{b['news_max_abs_diff']:.1e} / {b['user_max_abs_diff_end_to_end']:.1e}")
            lines.append(f"| {name} | {m['layers']} | {backend.replace('_', ' ')} | {b['news_per_s_best']:,.1f} "
                         f"({b['news_per_s_median']:,.1f}) | {b['speedup_best']:.2f}x | {diff} | {b['dev']['auc']:.4f} |")
    for name, m in r["models"].items():
        e = m["eval_json"]
        verdict = {True: "equal", False: "NOT equal", None: "not checked (no such file or row)"}[e["equal"]]
        lines.append(f"\n{name}: PyTorch fp32 evaluated as the evaluate stage ({e['news_input_of_evaluate_stage']}): "
                     f"AUC {e['pytorch_fp32_as_evaluate_stage']['auc']:.6f}; {e['path']} row {e['row']}: "
                     f"{e['eval_json_auc']} -> {verdict}")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="*", choices=SECTIONS)
    p.add_argument("--news", type=int, default=160_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--requests", type=int, default=400, help="requests per concurrency level")
    p.add_argument("--model", help="a model folder to serve (default: a tiny random PLM-NR)")
    p.add_argument("--models", nargs="+", metavar="NAME=FOLDER", help="onnx: the models to compare")
    p.add_argument("--eval-row", nargs="+", metavar="NAME=PATH#ROW",
                   help="onnx: the metrics/eval.json-style file and row a model's PyTorch AUC is checked against")
    p.add_argument("--data", default=str(ROOT), help="onnx: the repository root whose params.yaml, data/tokens and "
                   "data/samples are used (default: this repository)")
    p.add_argument("--encode-news", type=int, default=1024, help="onnx: news per timed pass")
    p.add_argument("--rounds", type=int, default=7, help="onnx: timed rounds after the warm-up round")
    p.add_argument("--threads", type=int, help="onnx: torch and onnxruntime threads (default: torch's choice)")
    p.add_argument("--out", default=str(ROOT / "metrics" / "bench_deploy.json"))
    args = p.parse_args(argv)
    if min(args.encode_news, args.rounds) < 1 or (args.threads is not None and args.threads < 1):
        p.error("--encode-news, --rounds and --threads must be >= 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = Path(args.out)
    figures = json.loads(out.read_text()) if out.exists() else {}
    chosen = args.only or [s for s in SECTIONS if s != "onnx" or args.models]
    for section in chosen:
        print(f"--- {section}", flush=True)
        try:
            figures[section] = {"index": bench_index, "service": bench_service, "onnx": bench_onnx}[section](args)
        except (DataError, ParamError) as e:
            print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
            sys.exit(2)
        print(onnx_table(figures[section]) if section == "onnx" else json.dumps(figures[section], indent=2), flush=True)
        write_json(figures, out)  # after every section: an interrupted run keeps what it measured
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
