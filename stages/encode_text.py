"""encode_text: the text model's news vector of every news, once (the multimodal branch's text half).

Reads ``multimodal.text_model`` (default models/student), data/tokens/news.parquet and the
frozen-layer cache (used when it fits the model); writes data/mm/text.safetensors, a news vector
table (:mod:`tinynewsrec.multimodal.tables`, :mod:`tinynewsrec.multimodal.text`).
"""

import logging
import time

from tinynewsrec.data import schemas
from tinynewsrec.multimodal.params import load_all
from tinynewsrec.multimodal.tables import TEXT_TABLE, write_table
from tinynewsrec.multimodal.text import text_table
from tinynewsrec.stage import run_stage

log = logging.getLogger("tinynewsrec")
TITLE_CACHE = "data/cache/frozen/title"


def main() -> None:
    params, mm = load_all()
    tokens = schemas.read_tokens()
    t0 = time.perf_counter()
    vectors, present, meta = text_table(mm.multimodal.text_model, tokens, cache_dir=TITLE_CACHE,
                                        batch_size=params.plm.encode_batch)
    write_table(TEXT_TABLE, vectors, present, meta)
    log.info("text vectors: %s news x %d from %s in %.1f s -> %s", f"{meta['news']:,}", meta["dim"],
             meta["model"], time.perf_counter() - t0, TEXT_TABLE)


if __name__ == "__main__":
    run_stage(main)
