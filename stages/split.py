"""split: training samples (1 click + K non-clicks), dev impressions, tokenized news.

Writes data/samples/{train,dev}.parquet, data/tokens/news.parquet and metrics/split.json.
"""

import json
import logging
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tinynewsrec.data import schemas
from tinynewsrec.data.split import make_dev_samples, make_train_samples
from tinynewsrec.data.tokenize import tokenize_news
from tinynewsrec.io import read_parquet, staged_outputs
from tinynewsrec.models.plm import check_plm, load_tokenizer
from tinynewsrec.params import load_params
from tinynewsrec.stage import run_stage

log = logging.getLogger("tinynewsrec")
MIND = Path("data/mind")


def read(path: Path, schema: pa.Schema) -> pa.Table:
    return read_parquet(path, stage="download", schema=schema)


def main() -> None:
    params = load_params()
    p, plm = params.data, params.plm
    check_plm(plm)  # plm.name, title_len, body_len: before anything is computed or written
    tokenizer = load_tokenizer(plm.name)
    train = read(MIND / "train" / "behaviors.parquet", schemas.BEHAVIORS)
    dev = read(MIND / "dev" / "behaviors.parquet", schemas.BEHAVIORS)
    news = pa.concat_tables([read(MIND / split / "news.parquet", schemas.NEWS) for split in ("train", "dev")])

    # the four outputs go to temporaries renamed together at the end: a failure leaves the old ones
    outs = ("data/samples/train.parquet", "data/samples/dev.parquet", "data/tokens/news.parquet", "metrics/split.json")
    with staged_outputs(*outs) as (train_tmp, dev_tmp, tokens_tmp, metrics_tmp):
        log.info("cutting training samples: 1 click + %d non-clicks each", p.npratio)
        train_samples, train_counts = make_train_samples(train, p.npratio, p.history_len, p.seed)
        pq.write_table(train_samples, train_tmp, compression="zstd")
        dev_samples, dev_counts = make_dev_samples(dev, p.history_len)
        pq.write_table(dev_samples, dev_tmp, compression="zstd")
        del train, dev, train_samples, dev_samples
        log.info("tokenizing %s news titles and bodies", f"{news.num_rows:,}")
        tokens = tokenize_news(news, tokenizer, plm.title_len, plm.body_len, batch_size=plm.tokenize_batch)
        pq.write_table(tokens, tokens_tmp, compression="zstd")
        metrics = {"train": train_counts, "dev": dev_counts, "news_tokenized": tokens.num_rows}
        metrics_tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")

if __name__ == "__main__":
    sys.exit(run_stage(main))
