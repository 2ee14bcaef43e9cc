"""recall: the top max(recall.ks) news of the dev split's whole pool for every dev impression.

Reads data/samples/dev.parquet, data/mind/dev/news.parquet (the pool when ``recall.pool`` is ``all``;
by default the pool is every news shown in a dev impression),
data/mm/text.safetensors (encode_text's news vectors) and, when ``recall.user`` is ``student``, the
model folder ``multimodal.text_model``; params ``multimodal.history_len``, ``multimodal.text_model``
and ``recall.*``. Writes metrics/recall.json (Recall@k, the shares of clicks and candidates
recalled, pool size, users, cold users, seconds, peak RSS) and data/recall/slots.parquet (every dev
candidate's recall_rank and recall_score, in dev.parquet's order), together: a failure replaces
neither (:mod:`tinynewsrec.multimodal.recall`).
"""

import json
import logging
from dataclasses import asdict
from pathlib import Path

import pyarrow.parquet as pq

from tinynewsrec.data import schemas
from tinynewsrec.errors import DataError
from tinynewsrec.evaluate import DevImpressions
from tinynewsrec.io import checkpoint_sha256, read_parquet, staged_outputs
from tinynewsrec.multimodal.params import load_all
from tinynewsrec.multimodal.recall import (import_faiss, peak_rss_mib, pool_news, recall_impressions, recall_metrics,
                                           slots_table)
from tinynewsrec.multimodal.tables import TEXT_TABLE, read_table
from tinynewsrec.stage import run_stage

log = logging.getLogger("tinynewsrec")
DEV = Path("data/samples/dev.parquet")
DEV_NEWS = Path("data/mind/dev/news.parquet")
OUT_JSON, OUT_SLOTS = Path("metrics/recall.json"), Path("data/recall/slots.parquet")


def main() -> None:
    _, mm = load_all()
    r = mm.recall
    if r.backend == "faiss":
        import_faiss()  # before anything is read
    k = max(r.ks)
    dev = DevImpressions.read(DEV)  # the whole history: all of it is masked, the last history_len averaged
    if r.pool == "candidates":  # the news the day's impressions could show
        news = dev.candidates
    else:
        news = read_parquet(DEV_NEWS, stage="download", schema=schemas.NEWS, columns=["news_index"])
        news = news.column("news_index").to_numpy()
    vectors, present, meta = read_table(TEXT_TABLE, stage="encode_text")
    pool = pool_news(news, present)
    model = None
    if r.user == "student":
        from tinynewsrec.recommender import load_recommender

        folder = mm.multimodal.text_model
        if meta.get("model_sha256") not in (None, checkpoint_sha256(folder)):
            raise DataError(f"{TEXT_TABLE} was encoded by another model than multimodal.text_model ({folder}): "
                            "rerun the encode_text stage")
        model = load_recommender(folder)
    log.info("recalling the top %s of %s news for %s dev impressions (%s user vector, %s search, batches of %s)",
             f"{k:,}", f"{len(pool):,}", f"{len(dev):,}", r.user, r.backend, f"{r.batch:,}")
    out = recall_impressions(vectors, present, pool, dev, user=r.user, model=model, k=k, batch=r.batch,
                             history_len=mm.multimodal.history_len, mask_history=r.mask_history, backend=r.backend)
    metrics = {"pool_kind": r.pool, "user": r.user, "backend": r.backend, "mask_history": r.mask_history, "ks": r.ks,
               "rerank_k": r.rerank_k, "history_len": mm.multimodal.history_len, "text_model": meta.get("model"),
               "pool": out.pool, "users": out.users, "cold_users": out.cold_users,
               **recall_metrics(dev.labels, dev.offsets, out.ranks, r.ks),
               "seconds": round(out.seconds, 2), "peak_rss_mib": round(peak_rss_mib(), 1), "params": asdict(r)}
    with staged_outputs(OUT_JSON, OUT_SLOTS) as (tmp_json, tmp_slots):
        pq.write_table(slots_table(dev, out), tmp_slots, compression="zstd")
        tmp_json.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    log.info("recall: %s; %s cold users; %.1f s, peak RSS %.0f MiB -> %s, %s",
             ", ".join(f"Recall@{kk} {100 * metrics['recall'][str(kk)]['recall']:.1f}%" for kk in r.ks
                       if metrics["recall"][str(kk)]["recall"] is not None),
             f"{out.cold_users:,}", out.seconds, metrics["peak_rss_mib"], OUT_JSON, OUT_SLOTS)


if __name__ == "__main__":
    run_stage(main)
