"""sequences: each user's items in time order, cut leave-one-out for SASRec / BERT4Rec.

`seqrec.data: mind` takes the clicks of data/mind's users (history, then clicked candidates, of
every impression of both splits in time order); `recbole` reads the RecBole atomic files
`<seqrec.recbole_dataset>.inter` / `.item` under `seqrec.recbole_path`. A repeated item is kept
once, users with fewer than `seqrec.min_len` items are left out.

Writes data/sequences/{items,train,valid,test}.parquet and metrics/sequences.json.
"""

import logging
import sys
from pathlib import Path

from tinynewsrec.io import atomic_path, write_json
from tinynewsrec.params import load_params
from tinynewsrec.seqrec.sequences import (
    build_sequences,
    mind_click_sequences,
    mind_items,
    read_recbole,
    write_sequences,
)
from tinynewsrec.stage import run_stage

log = logging.getLogger("tinynewsrec")
MIND = Path("data/mind")
OUT = Path("data/sequences")
METRICS = Path("metrics/sequences.json")


def main() -> None:
    p = load_params().seqrec
    if p.data == "mind":
        log.info("collecting the clicks of %s's users in time order", MIND)
        sequences, read_counts = mind_click_sequences(MIND)
        news = mind_items(MIND)
        texts = {news_id: title for news_id, (_, title) in news.items()}
        news_index = {news_id: index for news_id, (index, _) in news.items()}
        repeats = "repeat clicks"
    else:
        log.info("reading the RecBole dataset %s in %s", p.recbole_dataset or "(the only .inter file)", p.recbole_path)
        sequences, texts, read_counts = read_recbole(Path(p.recbole_path), p.recbole_dataset)
        news_index = None
        repeats = "repeat interactions"
    items, train, valid, test, counts = build_sequences(sequences, texts, news_index, p.min_len)
    metrics = {**read_counts, **counts}

    # metrics/sequences.json is renamed into place only after data/sequences/ replaced the old folder
    with atomic_path(METRICS) as metrics_tmp:
        write_json(metrics, metrics_tmp)
        write_sequences(OUT, items, train, valid, test)
    log.info("sequences: %s users (%s too short, %s %s dropped), %s items; cold test targets: %s",
             f"{metrics['users']:,}", f"{metrics['too_short']:,}", f"{metrics['repeats_dropped']:,}", repeats,
             f"{metrics['items']:,}", f"{metrics['cold_targets']['test']:,}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
