"""How much headroom the synthetic MIND leaves, and how long it takes to generate.

Generates one size into a temporary folder and prints, for the dev split, the mean
per-impression AUC (sklearn ``roc_auc_score``, over impressions with both a click and a
non-click, as the MIND leaderboard averages it) of:

* ``oracle``: ranking by the generator's true click probabilities (``dev/oracle.parquet``),
  the ceiling for any model;
* ``category-only oracle``: ranking by the user's true category-level interest only,
  to show how much is left beyond knowing the category;
* ``popularity``: ranking by the clicks each news got in train impressions plus its
  occurrences in dev users' histories, the popularity known at dev time without dev labels;
* ``title tf-idf``: a sanity check that the signal is in the text, with no training:
  cosine between a candidate's title and the mean of the user's history titles (TF-IDF).

A trained text model should land above popularity and below the oracle.

    python benchmarks/synthetic_headroom.py            # demo
    python benchmarks/synthetic_headroom.py tiny --seed 7
    python benchmarks/synthetic_headroom.py large --keep /tmp/synthetic_large
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import roc_auc_score

from tinynewsrec.data.synthetic import SIZES, generate


def read_behaviors(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", header=None, quoting=3, keep_default_na=False,
                       names=["impression_id", "user_id", "time", "history", "impressions"])


def split_impressions(column: pd.Series) -> tuple[list[list[str]], list[np.ndarray]]:
    ids, labels = [], []
    for text in column:
        pairs = [tok.rsplit("-", 1) for tok in text.split()]
        ids.append([p[0] for p in pairs])
        labels.append(np.array([int(p[1]) for p in pairs], np.int8))
    return ids, labels


def mean_auc(labels: list[np.ndarray], scores: list[np.ndarray]) -> tuple[float, int]:
    aucs = [roc_auc_score(y, s) for y, s in zip(labels, scores) if 0 < y.sum() < len(y)]
    return float(np.mean(aucs)), len(aucs)


def title_similarity(folder: Path, dev: pd.DataFrame, dev_ids: list[list[str]]) -> list[np.ndarray]:
    news = pd.read_csv(folder / "dev" / "news.tsv", sep="\t", header=None, quoting=3,
                       keep_default_na=False, usecols=[0, 3], names=["news_id", "title"])
    row = {nid: i for i, nid in enumerate(news["news_id"])}
    vectors = TfidfVectorizer(sublinear_tf=True).fit_transform(news["title"])
    scores = []
    for history, ids in zip(dev["history"], dev_ids):
        clicked = [row[i] for i in history.split()]
        if not clicked:
            scores.append(np.zeros(len(ids)))
            continue
        user = np.asarray(vectors[clicked].mean(axis=0)).ravel()
        scores.append(vectors[[row[i] for i in ids]] @ user)
    return scores


def headroom(folder: Path) -> dict[str, float]:
    train = read_behaviors(folder / "train" / "behaviors.tsv")
    dev = read_behaviors(folder / "dev" / "behaviors.tsv")
    popularity: dict[str, int] = {}
    for ids, ys in zip(*split_impressions(train["impressions"])):
        for i, y in zip(ids, ys):
            popularity[i] = popularity.get(i, 0) + int(y)
    for history in dev["history"]:
        for i in history.split():
            popularity[i] = popularity.get(i, 0) + 1
    dev_ids, dev_labels = split_impressions(dev["impressions"])
    oracle = pq.read_table(folder / "dev" / "oracle.parquet").to_pandas()
    assert (oracle["impression_id"].to_numpy() == dev["impression_id"].to_numpy()).all()
    train_news = set(pd.read_csv(folder / "train" / "news.tsv", sep="\t", header=None, quoting=3,
                                 usecols=[0])[0])
    slots = sum(len(x) for x in dev_ids)
    unseen = sum(i not in train_news for x in dev_ids for i in x)
    result = {}
    result["oracle"], n = mean_auc(dev_labels, [np.asarray(p) for p in oracle["probs"]])
    category = [np.asarray(c) for c in oracle["category_interest"]]
    result["category-only oracle"], _ = mean_auc(dev_labels, category)
    result["popularity"], _ = mean_auc(
        dev_labels, [np.array([popularity.get(i, 0) for i in ids], float) for ids in dev_ids])
    result["title tf-idf"], _ = mean_auc(dev_labels, title_similarity(folder, dev, dev_ids))
    result["impressions scored"] = n
    result["dev candidates unseen in train"] = unseen / slots
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("size", nargs="?", default="demo", choices=list(SIZES))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--keep", help="generate into this folder and keep it (default: a temp folder)")
    ap.add_argument("--no-auc", action="store_true", help="only time the generation (e.g. for large)")
    args = ap.parse_args()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="synthetic_"))
    try:
        started = time.perf_counter()
        summary = generate(folder, args.size, seed=args.seed, progress=True)
        seconds = time.perf_counter() - started
        print(f"generated {args.size} in {seconds:.1f} s into {folder}")
        for split in ("train", "dev"):
            for name in ("news.tsv", "behaviors.tsv"):
                size = (folder / split / name).stat().st_size
                print(f"  {split}/{name}: {size / 2**20:,.1f} MiB")
        for key, value in summary.items():
            print(f"  {key}: {value}")
        if not args.no_auc:
            for key, value in headroom(folder).items():
                print(f"{key:>32}: {value:.4f}" if isinstance(value, float) else f"{key:>32}: {value}")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
