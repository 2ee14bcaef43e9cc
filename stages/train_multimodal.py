"""train_multimodal: one multimodal row, a model (two-tower or re-ranker) whose news encoder sees
the title's text vector, the card's image vector, or both fused.

Usage: ``python stages/train_multimodal.py <model>-<modality>`` (DVC runs the matrix
``multimodal.models`` x ``multimodal.modalities`` as ``train_multimodal@<model>-<modality>``, the row
read from DVC_STAGE). Reads data/samples/train.parquet and the frozen vector tables
data/mm/text.safetensors and data/image_emb/images.safetensors (those the modality reads); trains
with :func:`tinynewsrec.multimodal.train.fit_multimodal`; writes models_mm/<row>/ (config.json +
model.safetensors, loadable by :func:`tinynewsrec.multimodal.kinds.load_model`) and
metrics/mm_train/<row>.json (per-epoch loss, median seconds per step, peak RSS, trainable weights),
together: a failure replaces neither.
"""

import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pyarrow.compute as pc
from accelerate import Accelerator

from tinynewsrec.errors import DataError
from tinynewsrec.io import atomic_dir, write_json
from tinynewsrec.multimodal.params import load_all
from tinynewsrec.multimodal.tables import IMAGE_TABLE, TEXT_TABLE, read_table
from tinynewsrec.multimodal.train import NewsTables, build_model, fit_multimodal, news_config, peak_rss_mib, row_key
from tinynewsrec.stage import run_stage
from tinynewsrec.train.common import read_samples

log = logging.getLogger("tinynewsrec")
SAMPLES = Path("data/samples/train.parquet")
MODELS_DIR = Path("models_mm")
METRICS_DIR = Path("metrics/mm_train")


def main(argv: list[str] | None = None) -> None:
    params, mm = load_all()
    p = mm.multimodal
    model_name, modality = row_key(sys.argv[1:] if argv is None else argv, mm)
    row = f"{model_name}-{modality}"
    samples = read_samples(SAMPLES)
    text, _, text_meta = read_table(TEXT_TABLE, stage="encode_text")
    image, image_present, image_meta = read_table(IMAGE_TABLE, stage="encode_images", n_slots=text.shape[0])
    top = max(pc.max(pc.list_flatten(samples.column(c))).as_py() or 0 for c in ("history", "candidates"))
    if top >= text.shape[0]:
        raise DataError(f"{SAMPLES} refers to news_index {top:,} but {TEXT_TABLE} has {text.shape[0]:,} rows: "
                        "it is stale; rerun `dvc repro encode_text`")
    news = news_config(modality, p.fusion, text.shape[1], image.shape[1], p.dim)
    tables = NewsTables(text if news.uses_text else None, image if news.uses_image else None,
                        image_present if news.uses_image else None)
    accelerator = Accelerator()
    if not accelerator.is_main_process:
        log.setLevel(logging.WARNING)
    model = build_model(model_name, news, mm, p.seed)
    trainable = sum(q.numel() for q in model.parameters() if q.requires_grad)
    objective = mm.reranker.objective if model_name == "reranker" else "listwise"
    log.info("%s: %s samples, news encoder sees %s (fusion %s, %d wide), %s objective, %s trainable weights", row,
             f"{samples.num_rows:,}", modality, news.fusion, news.dim, objective, f"{trainable:,}")
    t0 = time.perf_counter()
    result = fit_multimodal(model, samples, tables, mm, objective, accelerator, row)
    seconds = time.perf_counter() - t0
    sections = {"multimodal_params": asdict(p)} | ({"reranker_params": asdict(mm.reranker)}
                                                    if model_name == "reranker" else {})
    summary = {
        "row": row, "model": model_name, "modality": modality, "fusion": news.fusion, "objective": objective,
        "samples": samples.num_rows, "epochs": len(result["curve"]), "steps": result["steps"],
        "seconds": round(seconds, 1), "s_per_step": result["s_per_step"], "peak_rss_mib": round(peak_rss_mib(), 1),
        "trainable_weights": trainable, "processes": accelerator.num_processes, "curve": result["curve"],
    }
    if accelerator.is_main_process:
        with atomic_dir(MODELS_DIR / row) as tmp:  # the model replaces the old one only once its metrics are written
            accelerator.unwrap_model(model).save_pretrained(
                tmp, row=row, modality=modality, fusion=news.fusion, objective=objective, epochs=summary["epochs"],
                steps=summary["steps"], text_table=text_meta, image_table=image_meta, **sections)
            write_json(summary, METRICS_DIR / f"{row}.json")
        last = result["curve"][-1]
        log.info("%s: final train loss %.4f after %d steps; %.3f s/step (median), %.0f s in all, peak RSS %.0f MiB",
                 row, last["loss"], summary["steps"], summary["s_per_step"] or 0.0, seconds, summary["peak_rss_mib"])
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    run_stage(main)
