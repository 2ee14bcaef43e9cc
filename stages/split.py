"""split: training samples (1 click + K non-clicks), dev impressions, tokenized news.

Writes data/samples/{train,dev}.parquet, data/tokens/news.parquet and metrics/split.json.
"""

import logging
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tinynewsrec.data import schemas
from tinynewsrec.data.split import make_dev_samples, make_train_samples
from tinynewsrec.data.tokenize import tokenize_news
from tinynewsrec.errors import DataError
from tinynewsrec.io import write_json, write_parquet
from tinynewsrec.models.plm import load_tokenizer
from tinynewsrec.params import load_params
from tinynewsrec.stage import run_stage

log = logging.getLogger("tinynewsrec")
MIND = Path("data/mind")


def read(path: Path, schema: pa.Schema) -> pa.Table:
    if not path.exists():
        raise DataError(f"{path} is missing: run the download stage first (dvc repro download)")
    return pq.read_table(path, schema=schema)


def main() -> None:
    params = load_params()
    p, plm = params.data, params.plm
    train = read(MIND / "train" / "behaviors.parquet", schemas.BEHAVIORS)
    dev = read(MIND / "dev" / "behaviors.parquet", schemas.BEHAVIORS)

    log.info("cutting training samples: 1 click + %d non-clicks each", p.npratio)
    train_samples, train_counts = make_train_samples(train, p.npratio, p.history_len, p.seed)
    write_parquet(train_samples, "data/samples/train.parquet")
    dev_samples, dev_counts = make_dev_samples(dev, p.history_len)
    write_parquet(dev_samples, "data/samples/dev.parquet")
    del train, dev, train_samples, dev_samples

    news = pa.concat_tables(
        [read(MIND / split / "news.parquet", schemas.NEWS) for split in ("train", "dev")]
    )
    tokenizer = load_tokenizer(plm.name)
    log.info("tokenizing %s news titles and bodies", f"{news.num_rows:,}")
    tokens = tokenize_news(news, tokenizer, plm.title_len, plm.body_len, batch_size=plm.tokenize_batch)
    write_parquet(tokens, "data/tokens/news.parquet")
    write_json({"train": train_counts, "dev": dev_counts, "news_tokenized": tokens.num_rows}, "metrics/split.json")


if __name__ == "__main__":
    sys.exit(run_stage(main))
