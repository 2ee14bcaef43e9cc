"""download: MIND (or the synthetic stand-in) -> data/mind/{train,dev}/*.parquet + metrics/data.json.

`data.source: synthetic` generates MIND-format TSV with the embedded generator and
parses it with the same parser as real MIND; the other sources fetch the official zips
(or read the user's own copy with `local`).

Nothing outside the repository is written but `<data.cache_dir>/tinynewsrec/` (see
tinynewsrec.data.download); `data.local_path` is only read. For the non-synthetic sources
metrics/data.json records the size, mtime and SHA-256 of every source file read, and
dvc.yaml makes `data.local_path` a dependency, so replacing a file there reruns the stage.
"""

import json
import logging
import sys
import tempfile
from pathlib import Path

from tinynewsrec.data import mind
from tinynewsrec.io import atomic_dir, atomic_path
from tinynewsrec.params import load_params
from tinynewsrec.stage import run_stage

log = logging.getLogger("tinynewsrec")
OUT = Path("data/mind")
METRICS = Path("metrics/data.json")


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
            read: list[Path] = []
            splits = download.fetch_source(p.source, Path(p.cache_dir), local_path=p.local_path, read=read)
            log.info("fingerprinting the %d source files read", len(read))
            source_files = download.fingerprint_files(read)
        # data/mind and metrics/data.json are both complete before either replaces the old one
        with atomic_dir(OUT) as out, atomic_path(METRICS) as metrics_tmp:
            metrics = mind.ingest(splits, out)
            if summary is not None:
                metrics["synthetic"] = summary
                oracle = Path(tmp) / "dev" / "oracle.parquet"
                if oracle.exists():  # the generator's true click probabilities, for headroom checks
                    oracle.replace(out / "dev" / "oracle.parquet")
            metrics["source"] = p.source
            if summary is None:  # what was read, so that a changed source file shows in dvc metrics diff
                metrics["source_files"] = source_files
            metrics_tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    log.info("wrote %s and metrics/data.json", OUT)


if __name__ == "__main__":
    sys.exit(run_stage(main))
