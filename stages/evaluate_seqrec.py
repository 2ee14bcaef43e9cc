"""evaluate_seqrec: every sequential recommender row, ranked on validation and test.

Reads data/sequences/, metrics/sequences.json and models_seqrec/<model>-<init>/ for every row of the matrix
``seqrec.models`` x ``seqrec.inits`` (with metrics/seqrec_train/<row>.json for the training
budget). For each row and split: full ranking (HR@K, NDCG@K, MRR; padding never ranked, the
user's history masked when ``seqrec.mask_history``), overall and on cold users (target never in
a training sequence), and sampled-N ranking when ``seqrec.sampled`` > 0 (inflated; an option).
Writes metrics/seqrec.json (DVC metric), metrics/seqrec.md (the table) and metrics/seqrec.png
(the picture), together: a failure replaces none of them.
"""

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tinynewsrec.errors import DataError
from tinynewsrec.io import staged_outputs
from tinynewsrec.params import load_params
from tinynewsrec.recommender import load_recommender
from tinynewsrec.seqrec.report import figure, intervals, markdown, ndcg10_per_user
from tinynewsrec.seqrec.rows import row_name
from tinynewsrec.seqrec.sequences import read_eval, read_items, read_train
from tinynewsrec.seqrec.train import evaluate_split
from tinynewsrec.stage import run_stage

log = logging.getLogger("tinynewsrec")
MODELS_DIR = Path("models_seqrec")  # not under models/: the evaluate stage depends on all of models/
TRAIN_METRICS = Path("metrics/seqrec_train")
OUT_JSON, OUT_MD, OUT_PNG = Path("metrics/seqrec.json"), Path("metrics/seqrec.md"), Path("metrics/seqrec.png")


def read_summary(row: str) -> dict:
    path = TRAIN_METRICS / f"{row}.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} is missing: run `dvc repro train_seqrec@{row}`") from None
    keep = ("best_epoch", "epochs", "s_per_epoch", "peak_rss_mib", "seconds", "trainable_weights", "processes")
    return {k: summary.get(k) for k in keep}


def main() -> None:
    params = load_params()
    p = params.seqrec
    items = read_items()
    train = read_train()
    seen = np.zeros(items.num_rows + 1, dtype=bool)
    seen[np.asarray(train["items"].combine_chunks().flatten(), dtype=np.int64)] = True
    splits = {}
    for split in ("valid", "test"):
        table = read_eval(split)
        targets = table["target"].to_numpy().astype(np.int64)
        splits[split] = (table["history"].to_pylist(), targets, ~seen[targets])
    rows, per_user = {}, {}
    names = [row_name(m, i) for m in p.models for i in p.inits]
    total = len(names) * sum(len(t) for _, t, _ in splits.values())
    with tqdm(total=total, desc="ranking users", unit="users") as bar:
        for model_name in p.models:
            for init in p.inits:
                row = row_name(model_name, init)
                model = load_recommender(MODELS_DIR / row)
                if model.config.n_items != items.num_rows:
                    raise DataError(f"{MODELS_DIR / row} knows {model.config.n_items} items, data/sequences has "
                                    f"{items.num_rows}: rerun `dvc repro train_seqrec@{row}`")
                entry = {"model": model_name, "init": init, "config": asdict(model.config), "train": read_summary(row)}
                for split, (histories, targets, cold) in splits.items():
                    entry[split], ranks = evaluate_split(model, histories, targets, p, cold=cold,
                                                         n_items=items.num_rows, progress=bar)
                    if split == "test":
                        per_user[row] = ndcg10_per_user(ranks)
                rows[row] = entry
                log.info("%s: test NDCG@10 %.4f, HR@10 %.4f (cold: %.4f, %.4f)", row,
                         entry["test"]["full"]["NDCG@10"], entry["test"]["full"]["HR@10"],
                         entry["test"]["full_cold"]["NDCG@10"], entry["test"]["full_cold"]["HR@10"])
    data = json.loads(Path("metrics/sequences.json").read_text(encoding="utf-8"))
    result = {
        "data": {"source": data.get("source"), "users": data.get("users"), "items": items.num_rows,
                 "items_in_train": int(seen.sum()), "cold_valid": int(splits["valid"][2].sum()),
                 "cold_test": int(splits["test"][2].sum())},
        "ranking": {"mask_history": p.mask_history, "ties": "against the target", "sampled": p.sampled},
        "rows": rows,
        "intervals": intervals(per_user, rows),
    }
    fig = figure(result)
    with staged_outputs(OUT_JSON, OUT_MD, OUT_PNG) as (tmp_json, tmp_md, tmp_png):
        tmp_json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp_md.write_text(markdown(result), encoding="utf-8")
        fig.savefig(tmp_png, format="png", dpi=110)
    log.info("wrote %s, %s and %s (%d rows)", OUT_JSON, OUT_MD, OUT_PNG, len(rows))


if __name__ == "__main__":
    run_stage(main)
