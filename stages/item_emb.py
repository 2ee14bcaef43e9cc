"""item_emb: one item-embedding table for the sequential recommenders.

Usage: ``python stages/item_emb.py <source>`` (DVC runs it as ``item_emb@<source>`` for every source,
the source read from DVC_STAGE, never through a shell). Reads data/sequences/items.parquet and,
for ``post_train`` / ``teacher`` / ``student``, that model folder; writes
data/item_emb/<source>.safetensors: ``items`` [n_items + 1, width] float32, row 0 the padding
(zeros), with metadata naming the source, the model and its SHA-256
(:mod:`tinynewsrec.seqrec.item_emb`). One process: the tables are small (all items at once).
"""

import logging
import sys
import time

from tinynewsrec.params import load_params
from tinynewsrec.seqrec.item_emb import ITEM_EMB_DIR, build_table, write_item_table
from tinynewsrec.seqrec.rows import source_key
from tinynewsrec.seqrec.sequences import read_items
from tinynewsrec.stage import run_stage

log = logging.getLogger("tinynewsrec")


def main(argv: list[str] | None = None) -> None:
    params = load_params()
    source = source_key(sys.argv[1:] if argv is None else argv)
    p = params.seqrec
    items = read_items()
    t0 = time.perf_counter()
    table, meta = build_table(source, items, plm_name=params.plm.name, title_len=params.plm.title_len,
                              hidden=p.hidden, teacher=p.teacher, seed=p.seed, batch_size=params.plm.encode_batch)
    out = ITEM_EMB_DIR / f"{source}.safetensors"
    write_item_table(out, table, meta)
    log.info("item table %s: %s items x %d, from %s, in %.1f s -> %s", source, f"{table.shape[0] - 1:,}",
             table.shape[1], meta.get("model", "a seeded normal(0, 0.02)"), time.perf_counter() - t0, out)


if __name__ == "__main__":
    run_stage(main)
