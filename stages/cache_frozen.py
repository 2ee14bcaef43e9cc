"""cache_frozen: token states of every title and body after the PLM's frozen lower layers.

Computed once from the raw PLM; post_train, every teacher, export and evaluate run only
the top plm.trainable_layers layers on them. Writes data/cache/frozen/{title,body}/.
"""

import logging
import sys

from tinynewsrec.data import schemas
from tinynewsrec.models.plm import check_plm
from tinynewsrec.params import load_params
from tinynewsrec.stage import run_stage
from tinynewsrec.train.common import CACHE_DIR, build_caches

log = logging.getLogger("tinynewsrec")


def main() -> None:
    params = load_params()
    check_plm(params.plm)  # plm.trainable_layers against the PLM's depth, in a second
    tokens = schemas.read_tokens()
    info = build_caches(params, tokens)
    log.info("cached %d frozen layers for %s news in %s", info["num_frozen_layers"], f"{tokens.num_rows:,}", CACHE_DIR)


if __name__ == "__main__":
    sys.exit(run_stage(main))
