"""cache_frozen: token states of every title and body after the PLM's frozen lower layers.

Computed once from the raw PLM; post_train, every teacher, export and evaluate run only
the top plm.trainable_layers layers on them. Writes data/cache/frozen/{title,body}/.
"""

import logging
import sys

import pyarrow.parquet as pq

from tinynewsrec.data import schemas
from tinynewsrec.errors import DataError
from tinynewsrec.params import load_params
from tinynewsrec.stage import run_stage
from tinynewsrec.train.common import CACHE_DIR, build_caches

log = logging.getLogger("tinynewsrec")
TOKENS = "data/tokens/news.parquet"


def main() -> None:
    params = load_params()
    try:
        tokens = pq.read_table(TOKENS, schema=schemas.TOKENS)
    except FileNotFoundError:
        raise DataError(f"{TOKENS} is missing: run the split stage first (dvc repro split)") from None
    info = build_caches(params, tokens)
    log.info("cached %d frozen layers for %s news in %s", info["num_frozen_layers"], f"{tokens.num_rows:,}", CACHE_DIR)


if __name__ == "__main__":
    sys.exit(run_stage(main))
