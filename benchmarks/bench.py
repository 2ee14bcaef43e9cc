"""Speed and memory of the pipeline's hot paths, measured side by side; writes metrics/bench.json.

Sections (``--only`` / ``--skip`` pick them; a section that is not run keeps the figures it
already has in metrics/bench.json, so the file stays complete):

``train_step``
    One teacher training step (forward + backward + Adam step, gradient norm clipped to 1) at
    ``teacher.batch_size`` samples of 1 click + ``data.npratio`` non-clicks with histories of up
    to ``data.history_len`` clicks, from data/samples/train.parquet, on the default MiniLM-L6
    with its top ``plm.trainable_layers`` layers trainable, three ways:

    - ``naive``: as the original Tiny-NewsRec / PLM-NR code: every one of the ``history_len``
      history slots (padding slots of short histories too) and every candidate of every sample
      encoded separately from token ids through the whole PLM, padded to the longest title of
      the batch; no frozen-layer cache, no unique-news batching;
    - ``naive_clicks_only``: the same, but only the real clicks are encoded (a stricter
      baseline: it already skips the padding slots);
    - ``cached+unique``: the pipeline's path: ``collate_train`` with the frozen-layer cache
      data/cache/frozen/title, each distinct news of the batch once, only the top layers run.

    The models start from the same weights and see the same batch in a round; the paths are
    timed round-robin (the order rotates every round) after one untimed warm-up round, and the
    best and the median round are reported (the best is the least disturbed by other work on
    the machine). Batch building (collation) is timed separately. RSS is sampled per path.

    Then accuracy: the same origin (models/post_train/step_0) is trained with the naive (clicks
    only) and the cached+unique path for ``--accuracy-steps`` steps by the real training loop
    (:func:`tinynewsrec.train.loop.fit`: same seed, same batches) and evaluated on the dev
    impressions (data/samples/dev.parquet). Dropout draws one mask per news slot on the naive
    path and one per distinct news on the unique path, so with dropout ON the two are two
    different (equally valid) random runs; to show how much of their difference that alone
    gives, the cached path is also trained with another seed. With dropout OFF the two paths
    compute the same function (up to the float16 cache), which isolates what the cache and
    unique-news batching change.

``news_encoding``
    News per second of the 6-layer teacher's news encoder and of 4-, 2- and 1-layer students
    (the PLM's first L layers) on the same batches (``eval.bench_batch`` news padded to
    ``plm.title_len`` tokens, from token ids through the whole PLM:
    :func:`tinynewsrec.efficiency.news_throughput`), round-robin, best round of each.

``eval``
    Evaluation at MIND-dev scale (376,471 synthetic impressions of ~37 candidates, histories of
    up to 50 clicks; news embeddings given as a random [n_news, 256] table; a random PLM-NR user
    encoder): user vectors and scores (:func:`tinynewsrec.evaluate.score_impressions`) plus the
    metrics (:func:`tinynewsrec.metrics.evaluate_impressions`), wall time and peak RSS, by two
    paths in the same process: ``per_slot`` (the generic ``encode_user`` path: the attention
    logit of every history slot of every impression, batches in dev order padded to their
    longest history and candidate list) and ``fast`` (the pipeline's path for PLM-NR: one logit
    per news, impressions in batches ordered by candidate count then history length, only real
    candidates scored). Then the largest absolute score difference between the two, whether their metrics (at 6
    decimals; also the leaderboard's, from the ranks) are equal, and how many candidates got
    another rank (float rounding can reorder two nearly equal scores).

``ingest``
    The download (synthetic generation + parse) and split stages at MIND-large scale, run as
    child processes in a scratch folder whose params.yaml is this repository's with
    ``data.size: large``: wall time and peak RSS of each. Takes ~3 minutes and ~2.4 GB of disk
    (``--scratch`` picks where); the folder is deleted afterwards.

Each section records the command line, the date, torch's thread count, the machine and the
1-minute load average before and after it (above the core count: other work shared the CPU).

    .venv/bin/python benchmarks/bench.py                  # everything (~15 min on 2 cores)
    .venv/bin/python benchmarks/bench.py --skip ingest    # keeps the ingest figures in bench.json
    .venv/bin/python benchmarks/bench.py --only train_step --accuracy-steps 0   # timing only, keeps accuracy
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from tinynewsrec.efficiency import bench_batches, count_parameters, news_throughput
from tinynewsrec.evaluate import (
    DevImpressions,
    evaluate_model,
    metric_row,
    news_lookup,
    rank_and_score,
    score_impressions,
)
from tinynewsrec.io import write_json
from tinynewsrec.metrics import METRIC_NAMES, evaluate_impressions, rank_lists
from tinynewsrec.models.cache import FrozenCache
from tinynewsrec.models.plm import load_plm
from tinynewsrec.models.plmnr import (
    PLMNR,
    NewsTokens,
    UserEncoder,
    click_loss,
    collate_train,
)
from tinynewsrec.params import load_params
from tinynewsrec.train.loop import LoopConfig, fit

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("train_step", "news_encoding", "eval", "ingest")
OUT = ROOT / "metrics" / "bench.json"
SAMPLES = ROOT / "data/samples/train.parquet"
DEV = ROOT / "data/samples/dev.parquet"
TOKENS = ROOT / "data/tokens/news.parquet"
TITLE_CACHE = ROOT / "data/cache/frozen/title"
ORIGIN = ROOT / "models/post_train/step_0"
MIND_DEV_IMPRESSIONS = 376_471


# --- measuring ------------------------------------------------------------------------------


class RSSMonitor:
    """Resident memory (MB) of this process per named phase, sampled every 10 ms by a thread
    (``ru_maxrss`` only knows the whole process's lifetime peak). For each phase it keeps the
    highest RSS seen (``peak``) and the most any one entry into the phase added to the RSS it
    started from (``added``: e.g. a training step's activations, which are freed afterwards)."""

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.peaks: dict[str, float] = {}
        self.added: dict[str, float] = {}
        self._open: dict[str, list[float]] = {}  # phase -> [RSS at entry, peak since entry]
        self._lock = threading.Lock()
        self._page = os.sysconf("SC_PAGE_SIZE")
        threading.Thread(target=self._run, daemon=True).start()

    def current_mb(self) -> float:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._page / 2**20
        except OSError:  # not Linux: the lifetime peak is the best we have
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)

    def _note(self) -> None:
        rss = self.current_mb()
        with self._lock:
            for entry in self._open.values():
                entry[1] = max(entry[1], rss)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            if self._open:
                self._note()

    @contextlib.contextmanager
    def phase(self, name: str):
        rss = self.current_mb()
        with self._lock:
            self._open[name] = [rss, rss]
        try:
            yield
        finally:
            self._note()
            with self._lock:
                start, peak = self._open.pop(name)
            self.peaks[name] = max(self.peaks.get(name, 0.0), peak)
            self.added[name] = max(self.added.get(name, 0.0), peak - start)

    def peak(self, name: str) -> float:
        return round(self.peaks.get(name, 0.0), 1)

    def peak_added(self, name: str) -> float:
        return round(self.added.get(name, 0.0), 1)


RSS = RSSMonitor()


def machine() -> dict:
    cpu, ram_gb = platform.processor() or platform.machine(), None
    with contextlib.suppress(OSError):
        names = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    with contextlib.suppress(ValueError, OSError, AttributeError):
        ram_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gb": ram_gb,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def context(started: float, load_before: tuple[float, float, float]) -> dict:
    """What every section records about how it was run (``load_average``: the 1-minute load
    before and after the section; above the core count means other work shared the CPU)."""
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "torch_threads": torch.get_num_threads(),
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
        "load_average": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }


def say(text: str) -> None:
    print(text, flush=True)


def no_dropout(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


# --- train_step -------------------------------------------------------------------------------


def naive_batch(samples, tokens: NewsTokens, history_len: int, every_slot: bool = True) -> dict:
    """The batch of a naive PLM-NR step: one row of token ids per history slot and per candidate
    (a news clicked by 3 users of the batch is encoded 3 times), padded to the longest title.

    ``every_slot``: every one of the ``history_len`` history slots of every sample is encoded,
    the padding slots of short histories too (as an empty title: one token, masked out of
    the user vector), as the original Tiny-NewsRec / PLM-NR code does; ``False`` encodes only
    the real clicks. Built from ``collate_train``'s batch (which parses the samples and keeps
    the last ``history_len`` clicks) by expanding its unique news back to one row per slot.
    """
    unique = collate_train(samples, tokens, history_len)
    index = unique["news_index"]
    hist, hist_mask = index[unique["history"]], unique["history_mask"]
    if every_slot:
        pad = history_len - hist.shape[1]
        hist, hist_mask = F.pad(hist, (0, pad)), F.pad(hist_mask, (0, pad))
        slots = torch.ones_like(hist_mask)
    else:
        slots = hist_mask
    cand = index[unique["candidates"]]
    n_hist = int(slots.sum())
    history = torch.zeros_like(hist)
    history[slots] = torch.arange(n_hist)
    candidates = n_hist + torch.arange(cand.numel()).reshape(cand.shape)
    real = torch.cat([hist_mask[slots], torch.ones(cand.numel(), dtype=torch.bool)])
    news = torch.cat([hist[slots], cand.reshape(-1)])
    titles = tokens.batch(news[real].numpy())
    width = titles["input_ids"].shape[1]
    input_ids = torch.zeros(len(news), width, dtype=torch.long)
    attention_mask = torch.zeros(len(news), width, dtype=torch.long)
    input_ids[real], attention_mask[real] = titles["input_ids"], titles["attention_mask"]
    attention_mask[~real, 0] = 1  # an empty title, not an all-masked row
    return {
        "news_tokens": {"input_ids": input_ids, "attention_mask": attention_mask},
        "history": history,
        "history_mask": hist_mask,
        "candidates": candidates,
        "candidate_mask": unique["candidate_mask"],
    }


def describe(batch: dict) -> dict:
    news = batch["news_tokens"] if "news_tokens" in batch else batch["news_states"]
    mask = news["attention_mask"]
    return {"news_encoded": int(mask.shape[0]), "pad_width": int(mask.shape[1]), "tokens": int(mask.sum())}


def train_one_step(model: PLMNR, optimizer: torch.optim.Optimizer, batch: dict) -> float:
    loss = click_loss(model(batch))
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


#: the paths timed by train_step (see the module docstring)
PATHS = ("naive", "naive_clicks_only", "cached+unique")


def batch_builders(params, tokens: NewsTokens, cache: FrozenCache) -> dict:
    h = params.data.history_len
    return {
        "naive": lambda samples: naive_batch(samples, tokens, h, every_slot=True),
        "naive_clicks_only": lambda samples: naive_batch(samples, tokens, h, every_slot=False),
        "cached+unique": lambda samples: collate_train(samples, cache, h),
    }


def time_steps(args, params, table, tokens: NewsTokens, cache: FrozenCache) -> dict:
    """Per-step seconds of the paths, round-robin (the order rotates every round)."""
    torch.manual_seed(args.seed)
    first = PLMNR(load_plm("default", trainable_layers=params.plm.trainable_layers)).train()
    cache.check_model(first.plm)
    models = {name: first if i == 0 else copy.deepcopy(first) for i, name in enumerate(PATHS)}
    optimizers = {k: torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=params.teacher.lr)
                  for k, m in models.items()}
    build = batch_builders(params, tokens, cache)
    batch_size = params.teacher.batch_size
    order = np.random.default_rng(args.seed).permutation(table.num_rows)
    steps, collation, shapes = ({k: [] for k in PATHS} for _ in range(3))
    for r in range(args.rounds + 1):  # round 0 warms up and is not counted
        samples = table.take(order[r * batch_size : (r + 1) * batch_size])
        for name in PATHS[r % len(PATHS):] + PATHS[: r % len(PATHS)]:
            with RSS.phase(f"train_step/{name}"):
                start = time.perf_counter()
                batch = build[name](samples)
                built = time.perf_counter()
                train_one_step(models[name], optimizers[name], batch)
                done = time.perf_counter()
            if r:
                steps[name].append(done - built)
                collation[name].append(built - start)
                shapes[name].append(describe(batch))
        if r:
            say(f"  round {r}/{args.rounds}: " + ", ".join(f"{k} {steps[k][-1]:.2f} s" for k in PATHS))
    result = {}
    for name in PATHS:
        result[name] = {
            "step_s_median": round(statistics.median(steps[name]), 4),
            "step_s_best": round(min(steps[name]), 4),
            "collate_s_median": round(statistics.median(collation[name]), 4),
            "news_encoded_per_step": round(statistics.mean(s["news_encoded"] for s in shapes[name]), 1),
            "pad_width_mean": round(statistics.mean(s["pad_width"] for s in shapes[name]), 1),
            "tokens_per_step": round(statistics.mean(s["tokens"] for s in shapes[name]), 1),
            "peak_rss_mb": RSS.peak(f"train_step/{name}"),
            "step_peak_added_mb": RSS.peak_added(f"train_step/{name}"),
        }
    fast = result["cached+unique"]
    for name in ("naive", "naive_clicks_only"):
        slow = result[name]
        result[f"speedup_over_{name}"] = {
            "best": round(slow["step_s_best"] / fast["step_s_best"], 2),
            "median": round(slow["step_s_median"] / fast["step_s_median"], 2),
            "per_round": [round(a / b, 2) for a, b in zip(steps[name], steps["cached+unique"])],
        }
    result["goal_speedup"] = 3.0
    return result


def train_and_evaluate(args, params, table, tokens: NewsTokens, cache: FrozenCache, dev: DevImpressions,
                       path: str, dropout: bool, seed: int) -> dict:
    """Train models/post_train/step_0 with one path for ``args.accuracy_steps`` steps (the real
    loop, single process), then its dev metrics (news through the frozen-layer cache)."""
    from accelerate import Accelerator

    model = PLMNR.from_pretrained(ORIGIN, trainable_layers=params.plm.trainable_layers)
    if not dropout:
        no_dropout(model)
    accelerator = Accelerator(cpu=True)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=params.teacher.lr)
    model, optimizer = accelerator.prepare(model, optimizer)
    build = batch_builders(params, tokens, cache)[path]

    def collate(rows):
        return build(table.take(np.asarray(rows)))

    cfg = LoopConfig(epochs=1, batch_size=params.teacher.batch_size, seed=seed,
                     max_steps_per_epoch=args.accuracy_steps, name=f"{path} dropout {'on' if dropout else 'off'}")
    start = time.perf_counter()
    with RSS.phase(f"accuracy/{path}"):
        result = fit(accelerator, model, optimizer, table.num_rows, collate,
                     lambda m, b: (click_loss(m(b)), {}), cfg)
    seconds = time.perf_counter() - start
    model = accelerator.unwrap_model(model).eval()
    accelerator.free_memory()
    lookup = news_lookup(model.plm, pq.read_table(TOKENS), "title_ids", TITLE_CACHE, path)
    _, scores = evaluate_model(model, dev, lookup, encode_batch=params.plm.encode_batch,
                               batch_size=params.eval.batch_size, name=path, progress=False)
    row = metric_row(scores, dev, path)
    return {**row, "train_loss": round(result["last"]["loss"], 6), "train_seconds": round(seconds, 1),
            "seed": seed, "steps": args.accuracy_steps}


def accuracy(args, params, table, tokens, cache) -> dict:
    """Dev metrics after training the same origin with each path (module docstring). The naive
    run encodes the real clicks only: the padded history slots are masked out of the user vector,
    so encoding them too would cost twice the time and change nothing."""
    started, load = time.perf_counter(), os.getloadavg()
    dev = DevImpressions.read(DEV, params.data.history_len)
    out = {"origin": ORIGIN.relative_to(ROOT).as_posix(), "steps": args.accuracy_steps,
           "batch_size": params.teacher.batch_size, "lr": params.teacher.lr,
           "dev_impressions": len(dev), "goal_auc_difference": 0.002}
    for setting in args.accuracy_dropout:
        runs = [("naive_clicks_only", "naive_clicks_only", args.seed), ("cached+unique", "cached+unique", args.seed)]
        if setting == "on":  # the spread a different seed alone gives (data order and dropout masks)
            runs.append(("cached+unique_other_seed", "cached+unique", args.seed + 1))
        rows = {}
        for key, path, seed in runs:
            say(f"  dropout {setting}: training {path} (seed {seed}) for {args.accuracy_steps} steps ...")
            rows[key] = train_and_evaluate(args, params, table, tokens, cache, dev, path, setting == "on", seed)
            say(f"    dev AUC {rows[key]['auc']:.4f}, train loss {rows[key]['train_loss']:.4f}, "
                f"{rows[key]['train_seconds']:.0f} s")
        rows["auc_difference"] = round(rows["cached+unique"]["auc"] - rows["naive_clicks_only"]["auc"], 6)
        if "cached+unique_other_seed" in rows:
            rows["auc_difference_between_seeds"] = round(
                rows["cached+unique_other_seed"]["auc"] - rows["cached+unique"]["auc"], 6)
        out[f"dropout_{setting}"] = rows
    return {**out, **context(started, load)}  # its own record: a later --accuracy-steps 0 run keeps it


def bench_train_step(args, params) -> dict:
    for path, stage in ((SAMPLES, "split"), (TOKENS, "split"), (TITLE_CACHE / "cache.json", "cache_frozen")):
        if not path.exists():
            raise SystemExit(f"error: {path.relative_to(ROOT)} is missing: run `dvc repro {stage}` first")
    table = pq.read_table(SAMPLES, columns=["history", "candidates"])
    tokens = NewsTokens(pq.read_table(TOKENS), "title_ids")
    cache = FrozenCache(TITLE_CACHE)
    say(f"train_step: batch {params.teacher.batch_size} x (1 + {params.data.npratio}) candidates, history up to "
        f"{params.data.history_len}, MiniLM-L6 with {params.plm.trainable_layers} trainable layers, "
        f"{args.rounds} timed rounds")
    result = {"batch_size": params.teacher.batch_size, "npratio": params.data.npratio,
              "history_len": params.data.history_len, "trainable_layers": params.plm.trainable_layers,
              "rounds": args.rounds}
    result.update(time_steps(args, params, table, tokens, cache))
    if args.accuracy_steps > 0 and args.accuracy_dropout:
        if not (ORIGIN / "config.json").exists():
            raise SystemExit(f"error: {ORIGIN.relative_to(ROOT)} is missing: run `dvc repro post_train` first")
        result["accuracy"] = accuracy(args, params, table, tokens, cache)
    return result


# --- news_encoding --------------------------------------------------------------------------


def bench_news_encoding(args, params) -> dict:
    tokens_table = pq.read_table(TOKENS)
    tokens = NewsTokens(tokens_table, "title_ids")
    batches = bench_batches(tokens, tokens_table.column("news_index").to_numpy(), args.encode_news,
                            params.eval.bench_batch, params.plm.title_len)
    models = {"teacher (6 layers)": PLMNR(load_plm("default", trainable_layers=0)).eval()}
    for layers in (4, 2, 1):
        models[f"student ({layers} layers)"] = PLMNR(load_plm("default", num_layers=layers, trainable_layers=0)).eval()
    say(f"news_encoding: {args.encode_news} news in batches of {params.eval.bench_batch} padded to "
        f"{params.plm.title_len} tokens, {len(models)} encoders, {args.rounds} rounds")
    speed = dict.fromkeys(models, 0.0)
    for r in range(args.rounds):
        for name, model in models.items():
            speed[name] = max(speed[name], news_throughput(model.news_encoder, batches, repeats=1))
        best = ", ".join(f"{k} {v:.0f}" for k, v in speed.items())
        say(f"  round {r + 1}/{args.rounds}: {best} news/s (best so far)")
    teacher = speed["teacher (6 layers)"]
    rows = {name: {"layers": len(models[name].plm.encoder.layer), "news_per_s": round(v, 1),
                   "speedup_over_teacher": round(v / teacher, 2),
                   "news_encoder_params": count_parameters(models[name].news_encoder)}
            for name, v in speed.items()}
    return {"news": args.encode_news, "batch_size": params.eval.bench_batch, "pad_len": params.plm.title_len,
            "rounds": args.rounds, "models": rows}


# --- eval -----------------------------------------------------------------------------------


def synthetic_dev(n: int, n_news: int, history_len: int, seed: int) -> DevImpressions:
    """MIND-dev-like impressions: ~37 candidates (2..300), ~4% clicked and at least one click
    each, histories of up to ``history_len`` clicks (3.5% empty)."""
    rng = np.random.default_rng(seed)
    sizes = np.clip(rng.geometric(1 / 37, n), 2, 300)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    labels = (rng.random(offsets[-1]) < 0.04).astype(np.int8)
    labels[offsets[:-1]] = 1
    h_sizes = np.minimum(rng.geometric(1 / 30, n), history_len)
    h_sizes[rng.random(n) < 0.035] = 0
    h_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(h_sizes, out=h_offsets[1:])
    return DevImpressions(
        impression_ids=np.arange(1, n + 1, dtype=np.int64),
        candidates=rng.integers(1, n_news, offsets[-1], dtype=np.int32),
        labels=labels,
        offsets=offsets,
        history=rng.integers(1, n_news, h_offsets[-1], dtype=np.int32),
        history_offsets=h_offsets,
    )


def bench_eval(args, params) -> dict:
    dev = synthetic_dev(args.eval_impressions, args.eval_news, params.data.history_len, args.seed)
    torch.manual_seed(args.seed)
    news_vecs = torch.randn(args.eval_news, params.plm.news_dim)
    user_encoder = UserEncoder(params.plm.news_dim).eval()
    with torch.no_grad():
        user_encoder.empty_user.normal_()  # a trained cold-user vector is not zero (no all-tied cold impressions)
    baseline = RSS.current_mb()
    say(f"eval: {len(dev):,} impressions, {len(dev.candidates):,} candidates, {len(dev.history):,} history clicks, "
        f"news table [{args.eval_news:,}, {params.plm.news_dim}]; RSS with the inputs {baseline:.0f} MB")
    runs, scores = {}, {}
    for path, fast in (("per_slot", False), ("fast", True)):
        with RSS.phase(f"eval/{path}"):
            start = time.perf_counter()
            scores[path] = score_impressions(user_encoder, news_vecs, dev, batch_size=params.eval.batch_size,
                                             progress=False, fast=fast)
            scored = time.perf_counter()
            metrics = evaluate_impressions(scores[path], dev.labels, dev.offsets, progress=False)
            done = time.perf_counter()
        runs[path] = {"score_s": round(scored - start, 2), "metrics_s": round(done - scored, 2),
                      "total_s": round(done - start, 2), "impressions_per_s": round(len(dev) / (done - start), 1),
                      "peak_rss_mb": RSS.peak(f"eval/{path}"), "peak_added_mb": RSS.peak_added(f"eval/{path}"),
                      "metrics": {k: round(metrics[k], 6) for k in METRIC_NAMES}}
        say(f"  {path}: scored and evaluated in {done - start:.1f} s")
    diff = np.abs(scores["fast"].astype(np.float64) - scores["per_slot"])
    ranks = {path: rank_lists(s, dev.offsets, progress=False) for path, s in scores.items()}
    moved = np.flatnonzero(ranks["fast"] != ranks["per_slot"])
    leaderboard = {path: rank_and_score(s, dev).metrics for path, s in scores.items()}
    fast = runs["fast"]
    return {
        "impressions": len(dev), "candidates": len(dev.candidates), "history_clicks": len(dev.history),
        "n_news": args.eval_news, "news_dim": params.plm.news_dim, "batch_size": params.eval.batch_size,
        "history_clicks_mean": round(len(dev.history) / len(dev), 2), "rss_with_inputs_mb": round(baseline, 1),
        # the pipeline's path (fast) first, as before; the per-slot path beside it
        "score_s": fast["score_s"], "metrics_s": fast["metrics_s"], "total_s": fast["total_s"],
        "impressions_per_s": fast["impressions_per_s"], "peak_rss_mb": fast["peak_rss_mb"],
        "peak_added_mb": fast["peak_added_mb"], "goal_total_s": 5, "paths": runs,
        "speedup_total": round(runs["per_slot"]["total_s"] / fast["total_s"], 1),
        "speedup_scores": round(runs["per_slot"]["score_s"] / fast["score_s"], 1),
        "max_abs_score_difference": float(diff.max()) if len(diff) else 0.0,
        "max_abs_score": float(np.abs(scores["per_slot"]).max()) if len(diff) else 0.0,
        "metrics_equal": runs["fast"]["metrics"] == runs["per_slot"]["metrics"],
        "leaderboard_metrics": leaderboard["fast"],
        "leaderboard_metrics_equal": leaderboard["fast"] == leaderboard["per_slot"],
        "candidates_with_another_rank": len(moved),
        "impressions_with_another_ranking": len(np.unique(np.searchsorted(dev.offsets, moved, side="right"))),
        "auc_of_random_scores": round(runs["fast"]["metrics"]["auc"], 4),
        # spin-waiting OpenMP threads (the default) make every parallel step wait for a descheduled
        # thread when other work shares the CPU: record the policy the figures were measured under
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


# --- ingest ---------------------------------------------------------------------------------


#: run by a small intermediate Python process: runs argv[2:], writes its wall time and peak RSS
#: to argv[1]. A child started straight from this process would count this process's own
#: memory in its ru_maxrss (Linux carries the pre-exec high-water mark over exec), so the stage
#: is started from the intermediate, which holds ~10 MB, and measured with RUSAGE_CHILDREN there.
MEASURE_CHILD = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.call(sys.argv[2:])
seconds = time.perf_counter() - start
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
open(sys.argv[1], "w").write(json.dumps({"code": code, "seconds": seconds, "peak_kib": peak_kib}))
sys.exit(code)
"""


def run_child(cmd: list[str], cwd: Path, log: Path) -> dict:
    """Run ``cmd`` in ``cwd`` (output appended to ``log``): its wall seconds and peak RSS."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "DVC_NO_ANALYTICS": "1"}
    report = cwd / ".measure.json"
    with open(log, "ab") as out:
        code = subprocess.call([sys.executable, "-c", MEASURE_CHILD, str(report), *cmd], cwd=cwd, env=env,
                               stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise SystemExit(f"error: `{' '.join(cmd)}` failed in {cwd} (exit {code}):\n" + "\n".join(tail))
    measured = json.loads(report.read_text())
    peak_mb = measured["peak_kib"] / (2**20 if sys.platform == "darwin" else 2**10)  # bytes on macOS
    return {"seconds": round(measured["seconds"], 1), "peak_rss_mb": round(peak_mb, 1)}


def bench_ingest(args, params) -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"].update({"source": "synthetic", "size": args.ingest_size})
    scratch = Path(tempfile.mkdtemp(prefix="bench_ingest_", dir=args.scratch))
    try:
        (scratch / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        log = scratch / "stages.log"
        say(f"ingest: synthetic size {args.ingest_size} in {scratch} (log: {log.name})")
        stages = {}
        for stage in ("download", "split"):
            say(f"  running stages/{stage}.py ...")
            stages[stage] = run_child([sys.executable, str(ROOT / "stages" / f"{stage}.py")], scratch, log)
            say(f"    {stages[stage]['seconds']:.1f} s, peak RSS {stages[stage]['peak_rss_mb']:.0f} MB")
        data = json.loads((scratch / "metrics/data.json").read_text())
        split = json.loads((scratch / "metrics/split.json").read_text())
        sizes = {p.relative_to(scratch).as_posix(): round(p.stat().st_size / 2**20, 1)
                 for p in sorted((scratch / "data").rglob("*.parquet"))}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    counts = {
        "news": data.get("news_total"),
        "impressions": {split: data[split]["impressions"] for split in ("train", "dev")},
        "candidates": {split: data[split]["candidates"] for split in ("train", "dev")},
        "train_samples": split["train"]["samples"],
        "news_tokenized": split["news_tokenized"],
    }
    total = sum(s["seconds"] for s in stages.values())
    impressions = sum(counts["impressions"].values())
    return {"size": args.ingest_size, **stages, "total_s": round(total, 1),
            "impressions_per_s": round(impressions / total, 1), "counts": counts, "parquet_mb": sizes}


# --- main -----------------------------------------------------------------------------------


def summary(name: str, r: dict) -> list[str]:
    if name == "train_step":
        lines = [(f"train_step (batch {r['batch_size']}, {r['rounds']} rounds; best / median seconds per step "
                  "of forward + backward + Adam):")]
        for path in PATHS:
            p = r[path]
            lines.append(f"  {path:<18} {p['step_s_best']:7.3f} / {p['step_s_median']:.3f} s  "
                         f"({p['news_encoded_per_step']:.0f} titles encoded, pad {p['pad_width_mean']:.0f}, "
                         f"collate {p['collate_s_median']:.3f} s, step adds {p['step_peak_added_mb']:.0f} MB, "
                         f"process peak {p['peak_rss_mb']:.0f} MB)")
        for path in ("naive", "naive_clicks_only"):
            x = r[f"speedup_over_{path}"]
            lines.append(f"  cached+unique vs {path}: {x['best']:.2f}x (best), {x['median']:.2f}x (median), "
                         f"per round {x['per_round']} (goal >= {r['goal_speedup']:.0f}x)")
        acc = r.get("accuracy", {})
        if acc:
            when = f" on {acc['date']}" if "date" in acc else ""
            lines.append(f"  accuracy: {acc['origin']} trained {acc['steps']} steps per run{when}")
        for key, runs in acc.items():
            if key.startswith("dropout_"):
                text = ", ".join(f"{p} {v['auc']:.4f}" for p, v in runs.items() if isinstance(v, dict))
                lines.append(f"  dev AUC after {acc['steps']} steps, {key.replace('_', ' ')}: {text}; "
                             f"cached+unique - naive {runs['auc_difference']:+.4f}"
                             + (f" (another seed of cached+unique: {runs['auc_difference_between_seeds']:+.4f})"
                                if "auc_difference_between_seeds" in runs else ""))
        return lines
    if name == "news_encoding":
        return [f"news_encoding (batch {r['batch_size']}, padded to {r['pad_len']}):"] + [
            f"  {k:<20} {v['news_per_s']:8.1f} news/s  {v['speedup_over_teacher']:5.2f}x the teacher"
            for k, v in sorted(r["models"].items(), key=lambda kv: kv[1]["news_per_s"])]
    if name == "eval":
        if "paths" not in r:  # written before the fast path existed
            return [f"eval ({r['impressions']:,} impressions): {r['total_s']:.1f} s (per-slot path only)"]
        slow = r["paths"]["per_slot"]
        head = (f"eval ({r['impressions']:,} impressions, {r['candidates']:,} candidates): scores {r['score_s']:.1f} s "
                f"+ metrics {r['metrics_s']:.1f} s = {r['total_s']:.1f} s, {r['impressions_per_s']:,.0f} impressions/s, "
                f"peak RSS {r['peak_rss_mb']:.0f} MB, {r['peak_added_mb']:.0f} MB over the inputs "
                f"(goal < {r['goal_total_s']} s)")
        per_slot = (f"  per-slot path (attention logits per history slot): scores {slow['score_s']:.1f} s + metrics "
                    f"{slow['metrics_s']:.1f} s = {slow['total_s']:.1f} s ({r['speedup_total']:.1f}x the fast path's)")
        same = (f"  max |score difference| {r['max_abs_score_difference']:.2e} (scores up to {r['max_abs_score']:.1f}); "
                f"metrics equal: {r['metrics_equal']} (leaderboard's, from ranks: {r['leaderboard_metrics_equal']}); "
                f"{r['candidates_with_another_rank']:,} candidates in {r['impressions_with_another_ranking']:,} "
                "impressions ranked differently")
        return [head, per_slot, same]
    ingest = (f"ingest ({r['size']}): download {r['download']['seconds']:.1f} s (peak RSS "
              f"{r['download']['peak_rss_mb']:.0f} MB), split {r['split']['seconds']:.1f} s (peak RSS "
              f"{r['split']['peak_rss_mb']:.0f} MB), {r['impressions_per_s']:,.0f} impressions/s")
    return [ingest]


def section_list(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in SECTIONS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown section {unknown[0]!r} (sections: {', '.join(SECTIONS)})")
    return names


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", type=section_list, help=f"comma-separated sections to run ({', '.join(SECTIONS)})")
    ap.add_argument("--skip", type=section_list, default=[], help="comma-separated sections not to run")
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds (train_step, news_encoding); the best "
                    "round of each path/model is the figure least disturbed by other work on the machine")
    ap.add_argument("--accuracy-steps", type=int, default=25, help="train_step: training steps per accuracy run "
                    "(0 = no accuracy runs; the last ones in bench.json are kept)")
    ap.add_argument("--accuracy-dropout", type=lambda s: [x for x in s.split(",") if x], default=["on", "off"],
                    help="train_step: accuracy runs with dropout 'on', 'off' or 'on,off'")
    ap.add_argument("--encode-news", type=int, default=1024, help="news_encoding: news per timed pass")
    ap.add_argument("--eval-impressions", type=int, default=MIND_DEV_IMPRESSIONS)
    ap.add_argument("--eval-news", type=int, default=160_000, help="eval: rows of the random news table")
    ap.add_argument("--ingest-size", default="large", help="ingest: synthetic size (tiny, demo, large)")
    ap.add_argument("--scratch", help="ingest: folder for the temporary copy (default: the system temp folder)")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if any(x not in ("on", "off") for x in args.accuracy_dropout):
        ap.error(f"--accuracy-dropout takes 'on', 'off' or 'on,off', got {','.join(args.accuracy_dropout)}")
    if min(args.rounds, args.encode_news, args.eval_impressions, args.eval_news) < 1 or args.accuracy_steps < 0:
        ap.error("--rounds, --encode-news, --eval-impressions and --eval-news must be >= 1, --accuracy-steps >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("tinynewsrec").setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    chosen = [s for s in (args.only or SECTIONS) if s not in args.skip]
    with contextlib.chdir(ROOT):
        params = load_params()
    runners = {"train_step": bench_train_step, "news_encoding": bench_news_encoding, "eval": bench_eval,
               "ingest": bench_ingest}
    try:
        results = json.loads(args.out.read_text()) if args.out.exists() else {}
    except ValueError:
        results = {}
    for name in chosen:
        started, load = time.perf_counter(), os.getloadavg()
        result = {**runners[name](args, params), **context(started, load)}
        if name == "train_step" and "accuracy" not in result and "accuracy" in results.get(name, {}):
            result["accuracy"] = results[name]["accuracy"]  # --accuracy-steps 0 keeps the last accuracy runs
        results[name] = result
        write_json(results, args.out)  # after every section: an interrupted run keeps what it measured
    say("")
    for name in SECTIONS:
        if name in results:
            lines = summary(name, results[name])
            if name not in chosen:
                lines[0] += f"   [not run now: kept from {results[name].get('date', 'an earlier run')}]"
            say("\n".join(lines))
    say(f"wrote {args.out}")


if __name__ == "__main__":
    main()
