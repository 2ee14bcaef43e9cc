"""encode_images: an image vector per news from its card -> data/image_emb/images.safetensors.

Reads params image.encoder, image.batch and images.path (the folder of ``<news_id>.png|jpg|jpeg|webp``
cards: data/cards from render_cards, or IM-MIND's folder), and data/mind/{train,dev}/news.parquet
(news_id, news_index; news_index is global over the splits, so one table serves both). Writes a news
vector table (:mod:`tinynewsrec.multimodal.tables`: rows = news_index, row 0 padding, ``present`` 0 for
a news without a readable picture) and metrics/images.json (encoder, what the vectors are, width, news,
with picture, missing, corrupt). See :mod:`tinynewsrec.multimodal.image_encoder`.
"""

import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tinynewsrec.data import schemas
from tinynewsrec.errors import DataError
from tinynewsrec.io import read_parquet, write_json
from tinynewsrec.multimodal.image_encoder import image_table, load_image_encoder
from tinynewsrec.multimodal.params import load_all
from tinynewsrec.multimodal.tables import IMAGE_TABLE, write_table
from tinynewsrec.stage import run_stage

log = logging.getLogger("tinynewsrec")
MIND = Path("data/mind")
METRICS = Path("metrics/images.json")


def news_slots() -> tuple[list[str], np.ndarray, int]:
    """The distinct news of both splits (ids, news_index) and the table's rows (max news_index + 1)."""
    news = pa.concat_tables([read_parquet(MIND / split / "news.parquet", stage="download", schema=schemas.NEWS,
                                          columns=["news_id", "news_index"]) for split in ("train", "dev")])
    ids = news.column("news_id").combine_chunks()
    first = pc.index_in(pc.unique(ids), value_set=ids)
    index = news.column("news_index").to_numpy().astype(np.int64)
    unique_index = index[first.to_numpy()]
    if len(np.unique(index)) != len(unique_index):
        raise DataError(f"{MIND}: a news id has two news_index values across the splits; rerun the download stage")
    return ids.take(first).to_pylist(), unique_index, int(index.max()) + 1 if len(index) else 1


def main() -> None:
    params, mm = load_all()
    ids, index, n_slots = news_slots()
    encoder = load_image_encoder(mm.image.encoder)
    t0 = time.perf_counter()
    vectors, present, counts = image_table(mm.images.path, ids, index, n_slots, encoder, batch=mm.image.batch)
    summary = {"encoder": encoder.name, "description": encoder.description, "width": encoder.dim,
               "images_path": mm.images.path, **counts}
    meta = {"source": "image", "encoder": encoder.name, "description": encoder.description, "dim": encoder.dim,
            **{k: v for k, v in counts.items() if k != "corrupt_examples"}}
    write_table(IMAGE_TABLE, vectors, present, meta)
    write_json(summary, METRICS)
    log.info("image vectors: %s of %s news x %d from %s in %.1f s (%s missing, %s corrupt) -> %s",
             f"{counts['with_picture']:,}", f"{counts['news']:,}", encoder.dim, encoder.name,
             time.perf_counter() - t0, f"{counts['missing']:,}", f"{counts['corrupt']:,}", IMAGE_TABLE)


if __name__ == "__main__":
    run_stage(main)
