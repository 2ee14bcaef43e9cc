"""Recall@k and its cost at MIND-large scale with real text vectors; writes metrics/bench_recall_large.json.

    python benchmarks/bench_recall_real.py --model models/student        # MIND-large scale (tens of minutes)
    python benchmarks/bench_recall_real.py --model M --news 2000 --users 1500 --dev-impressions 3000 \\
        --train-impressions 500 --out /tmp/bench_recall_small.json         # a quick check of the whole path

benchmarks/bench_recall.py times the recall stage on random vectors (its recall values mean
nothing); this benchmark runs the recall stage's whole path on a synthetic MIND with the text
vectors of a trained model, so its Recall@k are real numbers of that model on that world. Steps,
each timed alone, all through the project's own code:

1. **generate** a synthetic MIND (:func:`tinynewsrec.data.synthetic.generate`, seed 42) of
   ``--news`` news, ``--users`` users and ``--dev-impressions`` dev impressions (MIND-large: 160,000
   / 750,000 / 376,000), the other fields as ``SIZES["large"]`` (37 candidates, history 30, ...),
   except the train split, cut to ``--train-impressions`` (default 20,000): recall reads only the
   dev split, and the train split only adds the news its impressions show to the tokenized set;
2. **parse** it with the MIND parser (:func:`tinynewsrec.data.mind.ingest`, as the download stage)
   into ``--scratch`` (under /tmp; never the repository's data/);
3. **dev samples** (:func:`tinynewsrec.data.split.make_dev_samples`, ``data.history_len``, as the
   split stage writes data/samples/dev.parquet) and :class:`~tinynewsrec.evaluate.DevImpressions`;
4. **tokenize** every news of train and dev (:func:`tinynewsrec.data.tokenize.tokenize_news`, the
   tokenizer of ``plm.name`` and ``plm.title_len`` / ``body_len``, as the split stage);
5. **encode** every title with ``--model`` (:func:`tinynewsrec.multimodal.text.text_table`, as the
   encode_text stage; no frozen-layer cache, so the whole model runs);
6. **recall** (:func:`tinynewsrec.multimodal.recall.recall_impressions`) with params.yaml's
   ``recall`` and ``multimodal.history_len`` (by default: pool = every news shown in a dev
   impression, mean user vector, history 30, history masked, top max(recall.ks)), once per
   ``--backends``, then :func:`~tinynewsrec.multimodal.recall.recall_metrics` for ``recall.ks``.

A separate script, not a mode of bench_recall.py: that one is a minute-long timing of the search
alone on random worlds with its own JSON, while this one needs a trained model, spends most of its
time on generating and encoding, and writes real quality numbers; keeping the two JSON files apart
means rerunning one never replaces the other's results.

Time: wall seconds of each step; the recall time is the call alone (user vectors, masking, top-k,
the candidates' ranks and scores). ``--recall-impressions N`` recalls only the first N dev
impressions (impressions are in time order, so the first N are a slice of the day, not a random
sample) and extrapolates the time to all: the setup (normalising the vectors, the FAISS index, timed
on an empty call) plus the measured seconds per impression times all impressions; the JSON says so
(``ran_impressions``, ``extrapolated``) and the Recall@k are then those of the subset. Every news is
encoded either way. Memory: the process' peak RSS during each recall call (Linux VmHWM, reset
before the call) and over the whole run (ru_maxrss: the generator's peak, mostly).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_recall import head, timed_recall  # noqa: E402

from tinynewsrec.data import mind, schemas, synthetic  # noqa: E402
from tinynewsrec.data.split import make_dev_samples  # noqa: E402
from tinynewsrec.data.tokenize import tokenize_news  # noqa: E402
from tinynewsrec.evaluate import DevImpressions  # noqa: E402
from tinynewsrec.models.plm import load_tokenizer  # noqa: E402
from tinynewsrec.multimodal.params import load_all  # noqa: E402
from tinynewsrec.multimodal.recall import peak_rss_mib, pool_news, recall_metrics  # noqa: E402
from tinynewsrec.multimodal.text import text_table  # noqa: E402
from tinynewsrec.io import read_parquet, write_json  # noqa: E402

log = logging.getLogger("tinynewsrec")
OUT = ROOT / "metrics" / "bench_recall_large.json"
LARGE = synthetic.SIZES["large"]


class Clock:
    """Wall seconds of named steps, printed as they end."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.loadavg: dict[str, list[float]] = {}  # 1/5/15-minute load average when each step began

    def __call__(self, name: str):
        clock = self

        class _Step:
            def __enter__(self):
                clock.loadavg[name] = [round(x, 2) for x in os.getloadavg()]
                print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                if exc[0] is None:
                    clock.seconds[name] = round(time.perf_counter() - self.t0, 1)
                    print(f"[{time.strftime('%H:%M:%S')}] {name}: {clock.seconds[name]:.1f} s", flush=True)

        return _Step()


def recall_row(vectors, present, pool, dev, kw: dict, backend: str, ks: list[int], n_all: int
               ) -> tuple[dict, np.ndarray]:
    """One backend's recall over ``dev``: metrics, seconds (extrapolated to ``n_all`` impressions
    when ``dev`` is a head of them) and peak RSS; and the candidate slots' ranks."""
    row, out = timed_recall(vectors, present, pool, dev, **(kw | {"backend": backend}))
    seconds, setup, per_imp = row["seconds"], row["setup_s"], row.pop("per_impression_s")
    row = {**row,
           "ran_impressions": len(dev), "extrapolated": len(dev) < n_all,
           "all_impressions_s": round(seconds if len(dev) == n_all else setup + per_imp * n_all, 1),
           "users": out.users,
           **recall_metrics(dev.labels, dev.offsets, out.ranks, ks)}
    print(f"{kw['user']} user, {backend}:", json.dumps(row), flush=True)
    return row, out.ranks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a PLM-NR model folder (the pipeline's models/student)")
    ap.add_argument("--news", type=int, default=LARGE.news)
    ap.add_argument("--users", type=int, default=LARGE.users)
    ap.add_argument("--dev-impressions", type=int, default=LARGE.dev_impressions)
    ap.add_argument("--train-impressions", type=int, default=20_000,
                    help="train split size (unused by recall; MIND-large's is 2.2M)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--scratch", default="/tmp/tinynewsrec-bench-recall", help="where the world is written (replaced)")
    ap.add_argument("--keep-scratch", action="store_true", help="leave the scratch folder (default: removed at the end)")
    ap.add_argument("--backends", nargs="+", default=["exact", "faiss"])
    ap.add_argument("--recall-impressions", type=int, default=None,
                    help="recall only the first N dev impressions and extrapolate the time (default: all)")
    ap.add_argument("--also-student", action="store_true",
                    help="also recall with the model's own user encoder (recall.user: student), exact backend")
    ap.add_argument("--threads", type=int, default=2, help="torch and FAISS threads")
    ap.add_argument("--encode-batch", type=int, default=None, help="news per encoding batch (default plm.encode_batch)")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--note", default=None, help="a line stored in the JSON (e.g. whether the machine was shared)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
        faiss_version = faiss.__version__
    except ImportError:
        faiss_version = None
        args.backends = [b for b in args.backends if b != "faiss"]

    params, mm = load_all(ROOT / "params.yaml")
    r, plm = mm.recall, params.plm
    if r.pool != "candidates" or r.user != "mean":
        print(f"note: params.yaml has recall.pool {r.pool}, recall.user {r.user}; this benchmark uses them", flush=True)
    size = replace(LARGE, news=args.news, users=args.users, dev_impressions=args.dev_impressions,
                   train_impressions=args.train_impressions)
    scratch = Path(args.scratch)
    if scratch.resolve().is_relative_to(ROOT.resolve()):
        raise SystemExit(f"error: --scratch {scratch} is inside the repository; use a folder under /tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    clock = Clock()

    with clock("generate"):
        summary = synthetic.generate(scratch / "tsv", size=size, seed=args.seed)
    with clock("parse"):
        ingest = mind.ingest({"train": scratch / "tsv" / "train", "dev": scratch / "tsv" / "dev"}, scratch / "mind")
    shutil.rmtree(scratch / "tsv")
    with clock("dev_samples"):
        behaviors = read_parquet(scratch / "mind" / "dev" / "behaviors.parquet", stage="download",
                                 schema=schemas.BEHAVIORS)
        dev_table, dev_counts = make_dev_samples(behaviors, params.data.history_len)
        dev = DevImpressions.from_table(dev_table)
        del behaviors, dev_table
    with clock("tokenize"):
        news = pa.concat_tables([read_parquet(scratch / "mind" / s / "news.parquet", stage="download",
                                              schema=schemas.NEWS) for s in ("train", "dev")])
        tokens = tokenize_news(news, load_tokenizer(plm.name), plm.title_len, plm.body_len,
                               batch_size=plm.tokenize_batch)
        del news
    with clock("encode"):
        vectors, present, meta = text_table(args.model, tokens, cache_dir=None,
                                            batch_size=args.encode_batch or plm.encode_batch)
    n_encoded = tokens.num_rows
    del tokens

    pool = pool_news(dev.candidates, present) if r.pool == "candidates" else pool_news(dev.news_index(), present)
    sub = head(dev, args.recall_impressions or len(dev))
    kw = dict(user=r.user, model=None, k=max(r.ks), batch=r.batch, history_len=mm.multimodal.history_len,
              mask_history=r.mask_history)
    if r.user == "student":
        from tinynewsrec.recommender import load_recommender

        kw["model"] = load_recommender(args.model)
    print(f"recalling the top {max(r.ks)} of {len(pool):,} news for {len(sub):,} of {len(dev):,} dev impressions",
          flush=True)
    rows, ranks = {}, {}
    for backend in args.backends:
        with clock(f"recall_{backend}"):
            rows[backend], ranks[backend] = recall_row(vectors, present, pool, sub, kw, backend, r.ks, len(dev))

    if args.also_student and r.user != "student":
        from tinynewsrec.recommender import load_recommender

        with clock("recall_exact_student_user"):
            student_row, _ = recall_row(vectors, present, pool, sub, kw | {"user": "student",
                                        "model": load_recommender(args.model)}, "exact", r.ks, len(dev))
    command = " ".join(["python", "benchmarks/bench_recall_real.py", *sys.argv[1:]])
    result = {
        "command": command,
        "note": (f"dev split at MIND-large scale; train split cut to {args.train_impressions:,} impressions, "
                 "unused by recall" if size.dev_impressions == LARGE.dev_impressions and size.news == LARGE.news
                 else f"a custom size; train split cut to {args.train_impressions:,} impressions, unused by recall"),
        "machine_note": args.note,
        "model": str(args.model), "model_sha256": meta["model_sha256"],
        "synthetic_size": asdict(size), "seed": args.seed,
        "news_total": ingest["news_total"], "news_encoded": n_encoded, "dim": meta["dim"],
        "dev": dev_counts,
        "pool_kind": r.pool, "pool": int(len(pool)),
        "chance_recall": {str(k): round(min(k, len(pool)) / max(len(pool), 1), 5) for k in r.ks},
        "user": r.user, "ks": r.ks, "k": max(r.ks), "batch": r.batch,
        "history_len": mm.multimodal.history_len, "data_history_len": params.data.history_len,
        "mask_history": r.mask_history,
        "impressions": len(dev), "recalled_impressions": len(sub),
        "backends": rows,
        "seconds": clock.seconds,
        "loadavg_at_step_start": clock.loadavg | {"end": [round(x, 2) for x in os.getloadavg()]},
        "encode_news_per_s": round(n_encoded / clock.seconds["encode"], 1) if clock.seconds.get("encode") else None,
        "peak_rss_mib_whole_run": round(peak_rss_mib(), 1),
        "torch_threads": torch.get_num_threads(), "faiss": faiss_version, "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "python": platform.python_version(),
        "generated_summary": {k: v for k, v in summary.items() if k != "sizes"},
    }
    if args.also_student and r.user != "student":
        result["student_user_exact"] = student_row
    if len(ranks) == 2:
        a, b = ranks.values()
        result["backends_agree"] = {"same_rank_share": float(np.mean(a == b)), "slots": int(len(a)),
                                    "recalled_slots": int((a > 0).sum())}
    out = Path(args.out)
    write_json(result, out)
    if not args.keep_scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"wrote {out}")
    for backend, row in rows.items():
        print(backend, ", ".join(f"Recall@{k} {100 * row['recall'][str(k)]['recall']:.2f}%" for k in r.ks
                                 if row["recall"][str(k)]["recall"] is not None),
              f"pool {len(pool):,}, {row['seconds']:.1f} s for {row['ran_impressions']:,} impressions "
              f"(all: {row['all_impressions_s']:.1f} s), peak RSS {row['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
