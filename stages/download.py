"""download: MIND (or the synthetic stand-in) -> data/mind/{train,dev}/*.parquet + metrics/data.json.

`data.source: synthetic` generates MIND-format TSV with the embedded generator and
parses it with the same parser as real MIND; the other sources fetch the official zips
(or read the user's own copy with `local`).
"""

import logging
import sys
import tempfile
from pathlib import Path

from tinynewsrec.data import mind
from tinynewsrec.io import atomic_dir, write_json
from tinynewsrec.params import load_params
from tinynewsrec.stage import run_stage

log = logging.getLogger("tinynewsrec")
OUT = Path("data/mind")


def main() -> None:
    p = load_params().data
    Path(".cache").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=".cache", prefix="download-") as tmp:
        if p.source == "synthetic":
            from tinynewsrec.data import synthetic

            log.info("generating the synthetic MIND world (size %s, seed %d)", p.size, p.seed)
            summary = synthetic.generate(Path(tmp), size=p.size, seed=p.seed)
            splits = {"train": Path(tmp) / "train", "dev": Path(tmp) / "dev"}
        else:
            from tinynewsrec.data import download

            summary = None
            splits = download.fetch_source(p.source, Path(p.cache_dir), local_path=p.local_path)
        with atomic_dir(OUT) as out:  # no split of an earlier run survives a source change
            metrics = mind.ingest(splits, out)
            if summary is not None:
                metrics["synthetic"] = summary
                oracle = Path(tmp) / "dev" / "oracle.parquet"
                if oracle.exists():  # the generator's true click probabilities, for headroom checks
                    oracle.replace(out / "dev" / "oracle.parquet")
    metrics["source"] = p.source
    write_json(metrics, "metrics/data.json")
    log.info("wrote %s and metrics/data.json", OUT)


if __name__ == "__main__":
    sys.exit(run_stage(main))
