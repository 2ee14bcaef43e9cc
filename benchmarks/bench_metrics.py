"""Wall time and peak memory of the leaderboard metrics at MIND-large dev scale.

MIND-large dev: 376,471 impressions of ~37 candidates (about 14M scores), ~4% clicked.
Times evaluate_impressions (float32 model scores, float64 scores with ties as a popularity
ranker gives, and float64 scores that need the lexsort path), rank_lists, and
write_prediction_file. Writes nothing but a temporary prediction.txt, removed at the end.

    .venv/bin/python benchmarks/bench_metrics.py [--impressions 376471] [--seed 0]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from tinynewsrec.metrics import evaluate_impressions, rank_lists, write_prediction_file


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


BASELINE_MB = 0.0  # peak RSS once the synthetic inputs exist


def timed(name: str, fn):
    t = time.perf_counter()
    out = fn()
    peak = peak_rss_mb()
    print(f"{name:<46} {time.perf_counter() - t:6.2f} s   peak RSS so far {peak:5.0f} MB "
          f"(+{peak - BASELINE_MB:.0f} MB over the inputs)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impressions", type=int, default=376_471)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    n = args.impressions
    sizes = np.clip(rng.geometric(1 / 37, n), 2, 300)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    total = int(offsets[-1])
    labels = (rng.random(total) < 0.04).astype(np.int8)
    labels[offsets[:-1]] = 1  # at least one click per impression, as in MIND dev
    scores32 = (rng.standard_normal(total) + labels).astype(np.float32)
    counts = rng.poisson(3.0, total).astype(np.float64)  # popularity-like: many ties
    scores64 = scores32.astype(np.float64) + rng.random(total) * 1e-9  # not float32-exact
    ids = np.arange(1, n + 1, dtype=np.int64)
    global BASELINE_MB
    BASELINE_MB = peak_rss_mb()
    print(f"{n:,} impressions, {total:,} candidates; RSS with the inputs {BASELINE_MB:.0f} MB")

    def evaluate(scores):
        return lambda: evaluate_impressions(scores, labels, offsets, progress=False)

    r = timed("evaluate_impressions (float32 scores)", evaluate(scores32))
    print("   ", {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()})
    timed("evaluate_impressions (float64 counts, ties)", evaluate(counts))
    timed("evaluate_impressions (float64, lexsort path)", evaluate(scores64))
    ranks = timed("rank_lists (float32 scores)", lambda: rank_lists(scores32, offsets, progress=False))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "prediction.txt"
        timed("write_prediction_file", lambda: write_prediction_file(path, ids, ranks, offsets))
        print(f"    prediction.txt: {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
