"""render_cards: IM-MIND-shaped news cards for the synthetic source -> data/cards/ + metrics/cards.json.

Reads params data.source, data.size, data.seed and images.* (cover_share, width, height), and
data/mind/{train,dev}/news.parquet (+ dev/behaviors.parquet for the headroom); writes
``data/cards/<news_id>.png`` for every news of both splits (:mod:`tinynewsrec.multimodal.cards`) and
metrics/cards.json: the counts, the generator's oracle AUC on the dev impressions with and without
what the pictures show, and what they encode. No wall-clock time in the metrics (committed, must be
reproducible): it is logged. For a real MIND (data.source not synthetic) nothing is drawn: the
folder holds a README.txt (the cards come from images.path, IM-MIND's folder).
"""

import logging
import os
import time
from pathlib import Path

import pyarrow as pa

from tinynewsrec.data import schemas
from tinynewsrec.data.synthetic import latent_world
from tinynewsrec.io import atomic_dir, read_parquet, write_json
from tinynewsrec.multimodal import cards
from tinynewsrec.multimodal.params import load_all
from tinynewsrec.stage import run_stage

log = logging.getLogger("tinynewsrec")
MIND = Path("data/mind")
OUT = Path("data/cards")
METRICS = Path("metrics/cards.json")
README = """No news cards are drawn for a real MIND (data.source {source}).
Download IM-MIND's news cards (Xun et al., ACM MM 2021: 610 x 195 images named <news_id>.jpg or .png)
and point params.yaml's images.path at that folder; the encode_images stage reads it.
"""


def main() -> None:
    params, mm = load_all()
    data, im = params.data, mm.images
    news = pa.concat_tables([read_parquet(MIND / split / "news.parquet", stage="download", schema=schemas.NEWS)
                             for split in ("train", "dev")])
    if data.source != "synthetic":
        with atomic_dir(OUT) as tmp:
            (tmp / "README.txt").write_text(README.format(source=data.source), encoding="utf-8")
            write_json({"source": data.source, "rendered": False, "cards": 0,
                        "note": "real MIND: no cards drawn; the encode_images stage reads images.path (IM-MIND)"},
                       METRICS)
        log.info("data.source is %s: no cards drawn; encode_images reads the pictures from images.path (%s)",
                 data.source, im.path)
        return
    latent = latent_world(data.size, data.seed)
    plan = cards.plan_cards(latent, im.cover_share, data.seed)
    layout = cards.Layout(im.width, im.height)
    t0 = time.perf_counter()
    with atomic_dir(OUT) as tmp:
        workers = min(8, len(os.sched_getaffinity(0)))  # every card is drawn alone: the same bytes for any count
        counts = cards.render_cards(news, latent, plan, tmp, layout=layout, workers=workers)
        seconds = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in tmp.iterdir())
        dev = read_parquet(MIND / "dev" / "behaviors.parquet", stage="download", schema=schemas.BEHAVIORS)
        dev_news = read_parquet(MIND / "dev" / "news.parquet", stage="download", schema=schemas.NEWS)
        auc = cards.headroom(latent, plan, dev, dev_news)
        write_json({"source": data.source, "rendered": True, **counts, "cover_share": im.cover_share,
                    "width": im.width, "height": im.height, "size": data.size, "seed": data.seed,
                    "encodes": cards.ENCODES, "headroom": auc}, METRICS)
    log.info("drew %s news cards (%s with a cover picture) in %.1f s, %.1f MB (%.1f KB a card) -> %s",
             f"{counts['cards']:,}", f"{counts['with_cover']:,}", seconds, size / 1e6,
             size / 1e3 / max(counts["cards"], 1), OUT)
    log.info("oracle AUC on %s dev impressions: %.4f by the true utility, %.4f without what the pictures show, "
             "%.4f without any text-invisible appeal", f"{auc['impressions']:,}", auc["oracle_auc"],
             auc["oracle_auc_without_visual"], auc["oracle_auc_without_hidden"])


if __name__ == "__main__":
    run_stage(main)
