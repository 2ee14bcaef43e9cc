"""Cost of the embedding recall stage at the demo size and at MIND-large scale; writes metrics/bench_recall.json.

    python benchmarks/bench_recall.py                        # demo and large (large: a timed subset, see below)
    python benchmarks/bench_recall.py --skip-large
    python benchmarks/bench_recall.py --large-impressions 376471   # every large impression (tens of minutes here)

Both sizes run in this one process, side by side, through the stage's own function
(:func:`tinynewsrec.multimodal.recall.recall_impressions`, ``mean`` user vectors, history masked,
top ``--k``), once per backend (``exact``: batched torch matrix products and top-k; ``faiss``: an
exact IndexFlatIP):

- ``demo``: 5,000 news, 2,000 impressions (the default synthetic dev split's order of magnitude);
- ``large``: MIND-large dev: 160,000 news, 376,471 impressions.

Vectors are random (normal, 256 wide: encode_text's width); histories have MIND-like lengths (a
geometric law of mean ~30, at most 50 = data.history_len) and ~37 candidates per impression, both
drawn from the pool. Random vectors make the recall *values* meaningless, so only times and memory
are reported (the real Recall@k is the recall stage's, metrics/recall.json); the one quality figure
kept is the agreement of the two backends (share of candidate slots with the same recall rank).

Time: wall seconds of the call (user vectors, masking, top-k, the candidates' ranks and scores).
At the large size the exact backend costs ~84 GFLOP per batch of 1,024 users; on a small shared
CPU all 376k impressions take tens of minutes per backend, so by default the large size first
times one batch, then runs the first ``--large-impressions`` impressions (by default as many as fit
``--budget-s`` per backend) and extrapolates to all of them: the setup (normalising the vectors,
building the FAISS index: timed alone on an empty call) once, plus the measured seconds per
impression times 376,471 (every batch costs the same: same pool, same k); the JSON says which
(``ran_impressions``, ``extrapolated``). On a shared CPU ``--threads 1`` is the steadier setting
(two torch threads competing with another job made a sort 17x slower here).
Memory: the peak RSS of the process during the call (Linux VmHWM, reset before each call through
/proc/self/clear_refs) and the RSS before it (the world's arrays: vectors, histories, candidates).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tinynewsrec.evaluate import DevImpressions  # noqa: E402
from tinynewsrec.multimodal.recall import pool_news, recall_impressions  # noqa: E402

OUT = ROOT / "metrics" / "bench_recall.json"
SIZES = {"demo": (5_000, 2_000), "large": (160_000, 376_471)}
HISTORY_LEN, HISTORY_MEAN, CANDIDATES_MEAN, DIM = 50, 30, 37, 256


def status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def world(n_news: int, n_imp: int, seed: int = 0):
    """Random vectors [n_news + 1, DIM] (row 0 padding) and DevImpressions with MIND-like lengths."""
    g = np.random.default_rng(seed)
    vectors = torch.from_numpy(g.standard_normal((n_news + 1, DIM), dtype=np.float32))
    vectors[0] = 0
    present = torch.ones(n_news + 1, dtype=torch.bool)
    present[0] = False
    # geometric lengths of mean ~HISTORY_MEAN, cut at HISTORY_LEN (0 = a cold user, as in MIND)
    h_len = np.minimum(g.geometric(1 / (HISTORY_MEAN + 15), n_imp) - 1, HISTORY_LEN)
    c_len = np.minimum(1 + g.geometric(1 / (CANDIDATES_MEAN - 1), n_imp), 300)
    h_off = np.concatenate([[0], np.cumsum(h_len)]).astype(np.int64)
    c_off = np.concatenate([[0], np.cumsum(c_len)]).astype(np.int64)
    history = g.integers(1, n_news + 1, h_off[-1], dtype=np.int32)
    candidates = g.integers(1, n_news + 1, c_off[-1], dtype=np.int32)
    labels = (g.random(c_off[-1]) < 0.04).astype(np.int8)
    dev = DevImpressions(np.arange(n_imp, dtype=np.int64), candidates, labels, c_off, history, h_off)
    return vectors, present, pool_news(np.arange(1, n_news + 1), present), dev


def head(dev: DevImpressions, n: int) -> DevImpressions:
    """The first ``n`` impressions of ``dev`` (views, no copy)."""
    n = min(n, len(dev))
    return DevImpressions(dev.impression_ids[:n], dev.candidates[: dev.offsets[n]], dev.labels[: dev.offsets[n]],
                          dev.offsets[: n + 1], dev.history[: dev.history_offsets[n]], dev.history_offsets[: n + 1])


def timed_recall(vectors, present, pool, dev, **kw) -> tuple[dict, object]:
    """One ``recall_impressions`` call over ``dev`` timed apart from its setup (normalising, the index:
    timed on an empty head), with the process's RSS before and its peak; and the call's output.
    Shared with bench_recall_real.py."""
    kw = {"progress": False} | kw
    t0 = time.perf_counter()
    recall_impressions(vectors, present, pool, head(dev, 0), **kw)  # the setup alone
    setup = time.perf_counter() - t0
    rss_before = status_mib("VmRSS")
    exact_peak = reset_peak()
    t0 = time.perf_counter()
    out = recall_impressions(vectors, present, pool, dev, **kw)
    seconds = time.perf_counter() - t0
    per_imp = max(seconds - setup, 0.0) / max(len(dev), 1)
    return {"seconds": round(seconds, 2), "setup_s": round(setup, 2),
            "s_per_1k_impressions": round(1000 * per_imp, 3),
            "rss_before_mib": round(rss_before, 1), "peak_rss_mib": round(status_mib("VmHWM"), 1),
            "peak_is_of_this_call": exact_peak, "cold_users": out.cold_users, "per_impression_s": per_imp}, out


def timed(vectors, present, pool, dev, backend: str, k: int, batch: int) -> tuple[dict, np.ndarray]:
    row, out = timed_recall(vectors, present, pool, dev, user="mean", k=k, batch=batch, history_len=HISTORY_LEN,
                            mask_history=True, backend=backend)
    return row, out.ranks


def bench_size(size: str, args) -> dict:
    n_news, n_imp = SIZES[size]
    t = time.perf_counter()
    vectors, present, pool, dev = world(n_news, n_imp)
    lengths = np.diff(dev.history_offsets)
    info = {"news": n_news, "impressions": n_imp, "dim": DIM, "k": args.k, "batch": args.batch,
            "history_mean": round(float(lengths.mean()), 1), "history_max": int(lengths.max()),
            "candidates_mean": round(float(np.diff(dev.offsets).mean()), 1),
            "world_build_s": round(time.perf_counter() - t, 1),
            "rows": {}}
    ran = n_imp
    if size == "large":
        if args.large_impressions:
            ran = args.large_impressions
        else:  # time one batch, then as many impressions as fit the budget
            probe, _ = timed(vectors, present, pool, head(dev, args.batch), "exact", args.k, args.batch)
            per_imp = probe.pop("per_impression_s")
            full = probe["setup_s"] + per_imp * n_imp
            info["probe"] = probe | {"extrapolated_all_s": round(full, 1)}
            print(f"large: one batch of {args.batch:,} took {probe['seconds']:.2f} s ({probe['setup_s']:.2f} s of it "
                  f"setup) -> all {n_imp:,} impressions ~{full / 60:.1f} min per backend", flush=True)
            if full > args.budget_s:
                ran = max(args.batch, int(args.budget_s / per_imp) // args.batch * args.batch)
                print(f"large: over the {args.budget_s:.0f} s budget; timing the first {ran:,} impressions per "
                      "backend and extrapolating", flush=True)
    sub = head(dev, ran)
    ranks = {}
    for backend in args.backends:
        row, ranks[backend] = timed(vectors, present, pool, sub, backend, args.k, args.batch)
        per_imp = row.pop("per_impression_s")
        row["ran_impressions"] = len(sub)
        row["extrapolated"] = len(sub) < n_imp
        row["all_impressions_s"] = round(row["seconds"] if len(sub) == n_imp else row["setup_s"] + per_imp * n_imp, 1)
        info["rows"][backend] = row
        print(size, backend, json.dumps(row), flush=True)
    if len(ranks) == 2:
        a, b = ranks.values()
        info["backends_agree"] = {"same_rank_share": float(np.mean(a == b)), "slots": int(len(a)),
                                  "recalled_slots": int((a > 0).sum())}
    info["pool"] = int(len(pool))
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--batch", type=int, default=1024, help="recall.batch")
    ap.add_argument("--backends", nargs="+", default=["exact", "faiss"])
    ap.add_argument("--large-impressions", type=int, default=None,
                    help="impressions of the large size to run (default: as many as fit --budget-s)")
    ap.add_argument("--budget-s", type=float, default=150.0, help="seconds per backend at the large size")
    ap.add_argument("--threads", type=int, default=None, help="torch and FAISS threads (default: theirs)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"cpu_threads": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "command": " ".join(["python", "benchmarks/bench_recall.py", *sys.argv[1:]]),
              "note": "random vectors: times and memory only (the recall values are meaningless here)", "sizes": {}}
    try:
        import faiss

        result["faiss"] = faiss.__version__
        if args.threads:
            faiss.omp_set_num_threads(args.threads)
        result["faiss_threads"] = faiss.omp_get_max_threads()
    except ImportError:
        args.backends = [b for b in args.backends if b != "faiss"]
    for size in ["demo"] + ([] if args.skip_large else ["large"]):
        result["sizes"][size] = bench_size(size, args)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
