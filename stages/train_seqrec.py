"""train_seqrec: one sequential recommender (SASRec or BERT4Rec) started from one item table.

Usage: ``python stages/train_seqrec.py <model>-<init>`` (DVC runs the matrix ``seqrec.models`` x
``seqrec.inits`` as ``train_seqrec@<model>-<init>``, the row read from DVC_STAGE). Reads
data/sequences/ (train.parquet, valid.parquet, items.parquet) and data/item_emb/<init>.safetensors;
trains with early stopping on validation NDCG@10 (:mod:`tinynewsrec.seqrec.train`); writes
models_seqrec/<model>-<init>/ (config.json + model.safetensors, loadable by
``tinynewsrec.recommender.load_recommender``) and metrics/seqrec_train/<model>-<init>.json (the
validation curve, seconds per epoch, peak memory) with the curve alone in
metrics/seqrec_train/curves/<model>-<init>.json for `dvc plots`, together: a failure replaces none.
Runs under ``accelerate launch`` too (the batches and the validation users are sharded).
"""

import logging
import resource
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator

from tinynewsrec.io import atomic_dir, write_json
from tinynewsrec.params import load_params
from tinynewsrec.seqrec.item_emb import ITEM_EMB_DIR, read_item_table
from tinynewsrec.seqrec.rows import row_key, row_name
from tinynewsrec.seqrec.sequences import read_eval, read_items, read_train
from tinynewsrec.seqrec.train import build_model, fit_seqrec, seqrec_config
from tinynewsrec.stage import run_stage

log = logging.getLogger("tinynewsrec")
MODELS_DIR = Path("models_seqrec")  # not under models/: the evaluate stage depends on all of models/
METRICS_DIR = Path("metrics/seqrec_train")
CURVE_KEYS = ("epoch", "loss", "valid_NDCG@10")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> None:
    params = load_params()
    p = params.seqrec
    model_name, init = row_key(sys.argv[1:] if argv is None else argv)
    row = row_name(model_name, init)
    items = read_items()
    train, valid = read_train(), read_eval("valid")
    table, table_meta = read_item_table(ITEM_EMB_DIR / f"{init}.safetensors", items.num_rows)
    config = seqrec_config(p, model_name, init, items.num_rows, table.shape[1])
    accelerator = Accelerator()
    if not accelerator.is_main_process:
        log.setLevel(logging.WARNING)
    torch.manual_seed(p.seed)  # the weights outside the item table: the same for every init of a model
    model = build_model(config, table)
    trainable = sum(q.numel() for q in model.parameters() if q.requires_grad)
    log.info("%s: %s users, %s items, table %s (%s, %s, width %d), %s trainable weights", row,
             f"{train.num_rows:,}", f"{items.num_rows:,}", init, config.entry, config.table, table.shape[1],
             f"{trainable:,}")
    t0 = time.perf_counter()
    result, stopper = fit_seqrec(model, train["items"].to_pylist(), valid["history"].to_pylist(),
                                 valid["target"].to_numpy().astype(np.int64), p, accelerator, row)
    seconds = time.perf_counter() - t0
    epochs = len(result["history"])
    train_s = [c["train_s"] for c in stopper.curve]
    summary = {
        "row": row, "model": model_name, "init": init, "best_epoch": stopper.best_epoch, "epochs": epochs,
        "best_valid_NDCG@10": stopper.best, "seconds": round(seconds, 1),
        "s_per_epoch": round(float(np.median(train_s)), 2) if train_s else None,
        "peak_rss_mib": round(peak_rss_mib(), 1), "trainable_weights": trainable,
        "processes": accelerator.num_processes, "config": asdict(config),
        "curve": [h | c for h, c in zip(result["history"], stopper.curve)],
    }
    if accelerator.is_main_process:
        with atomic_dir(MODELS_DIR / row) as tmp:  # the model replaces the old one only once its metrics are written
            model.save_pretrained(tmp, row=row, best_epoch=stopper.best_epoch, epochs=epochs,
                                  best_valid_ndcg10=stopper.best, table=table_meta, seqrec_params=asdict(p))
            write_json(summary, METRICS_DIR / f"{row}.json")
            write_json([{k: c[k] for k in CURVE_KEYS if k in c} for c in summary["curve"]],
                       METRICS_DIR / "curves" / f"{row}.json")  # `dvc plots show`: the validation curve
        log.info("%s: best validation NDCG@10 %.4f at epoch %d of %d; %.1f s/epoch, %.0f s in all, peak RSS %.0f MiB",
                 row, stopper.best, stopper.best_epoch, epochs, summary["s_per_epoch"] or 0.0, seconds,
                 summary["peak_rss_mib"])
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    run_stage(main)
