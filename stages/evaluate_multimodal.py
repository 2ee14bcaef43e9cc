"""evaluate_multimodal: every multimodal row on MIND's dev impressions, and recall -> re-rank end to end.

Reads models_mm/<model>-<modality>/ for every row of the matrix multimodal.models x
multimodal.modalities, their metrics/mm_train/<row>.json, the frozen vector tables
(data/mm/text.safetensors, data/image_emb/images.safetensors), data/samples/dev.parquet, the recall
stage's data/recall/slots.parquet and metrics/recall.json, metrics/cards.json, metrics/images.json and
metrics/eval.json (the reference rows: the text model, the best teacher, popularity, oracle) and
data/eval/impressions.parquet (the best teacher's AUC per impression, for each row's interval). Writes
data/mm_eval/ (prediction_<row>.txt and impressions.parquet, the per-impression metrics) and
metrics/multimodal.{json,md,png}, together: a failure replaces none (:mod:`tinynewsrec.multimodal.report`).
"""

import json
from dataclasses import asdict
import logging
from pathlib import Path

import numpy as np

from tinynewsrec.errors import DataError
from tinynewsrec.evaluate import DevImpressions, rank_and_score, write_impression_metrics, write_predictions
from tinynewsrec.io import atomic_dir, read_parquet, staged_outputs
from tinynewsrec.models.base import read_config
from tinynewsrec.multimodal import report
from tinynewsrec.multimodal.kinds import load_model
from tinynewsrec.multimodal.params import load_all
from tinynewsrec.multimodal.recall import end_to_end_scores
from tinynewsrec.multimodal.tables import IMAGE_TABLE, TEXT_TABLE, read_table
from tinynewsrec.stage import run_stage

log = logging.getLogger("tinynewsrec")
DEV = Path("data/samples/dev.parquet")
MODELS_DIR = Path("models_mm")
TRAIN_METRICS = Path("metrics/mm_train")
SLOTS = Path("data/recall/slots.parquet")
EVAL_IMPRESSIONS = Path("data/eval/impressions.parquet")
OUT_DIR = Path("data/mm_eval")
OUT_JSON, OUT_MD, OUT_PNG = Path("metrics/multimodal.json"), Path("metrics/multimodal.md"), Path("metrics/multimodal.png")
SEES = {"text": "title (text vector)", "image": "card (image vector)", "text_image": "title x card"}


def read_json(path: Path, stage: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} is missing: run `dvc repro {stage}`") from None


def references(eval_rows: dict, text_model: str) -> dict:
    """The rows of metrics/eval.json a multimodal row is read against."""
    out = {}
    name = Path(text_model).name
    if name in eval_rows:
        out[f"{name} (text model, its own user encoder)"] = eval_rows[name]
    teachers = [n for n in eval_rows if n.startswith("teacher_")]
    if teachers:
        best = max(teachers, key=lambda n: eval_rows[n]["auc"])
        out[f"best teacher ({best})"] = eval_rows[best]
    for name in ("popularity", "oracle"):
        if name in eval_rows:
            out[name] = eval_rows[name]
    return out


def teacher_intervals(auc: dict[str, np.ndarray], dev: DevImpressions, eval_rows: dict) -> dict:
    """AUC difference of every row to the best teacher (data/eval/impressions.parquet, the evaluate
    stage's per-impression metrics), 95% paired bootstrap: the main results table's Δ column."""
    from tinynewsrec.results import paired_bootstrap

    teachers = [n for n in eval_rows if n.startswith("teacher_")]
    if not teachers:
        return {}
    best = max(teachers, key=lambda n: eval_rows[n]["auc"])
    table = read_parquet(EVAL_IMPRESSIONS, stage="evaluate", columns=["impression_id", f"{best}/auc"])
    if not np.array_equal(table.column("impression_id").to_numpy(), dev.impression_ids):
        raise DataError(f"{EVAL_IMPRESSIONS} holds other impressions than {DEV}: rerun `dvc repro evaluate`")
    reference = table.column(f"{best}/auc").to_numpy(zero_copy_only=False)
    return {"teacher": best, "rows": paired_bootstrap(auc, reference)}


def recall_slots(dev: DevImpressions) -> tuple[np.ndarray, np.ndarray]:
    """The recall stage's ``recall_rank`` and ``recall_score`` of every dev candidate, in dev order."""
    slots = read_parquet(SLOTS, stage="recall")
    ids = slots.column("impression_id").to_numpy()
    news = slots.column("news_index").to_numpy()
    if len(ids) != len(dev.candidates) or not np.array_equal(news, dev.candidates) \
            or not np.array_equal(ids, np.repeat(dev.impression_ids, np.diff(dev.offsets))):
        raise DataError(f"{SLOTS} does not match {DEV} candidate for candidate: rerun `dvc repro recall`")
    return slots.column("recall_rank").to_numpy(), slots.column("recall_score").to_numpy().astype(np.float64)


def main() -> None:
    params, mm = load_all()
    p = mm.multimodal
    dev = DevImpressions.read(DEV, p.history_len)
    if len(dev) == 0:
        raise DataError(f"{DEV} holds no impressions: check the dev split (metrics/split.json)")
    text, _, text_meta = read_table(TEXT_TABLE, stage="encode_text")
    image, image_present, image_meta = read_table(IMAGE_TABLE, stage="encode_images", n_slots=text.shape[0])
    n_slots = text.shape[0]
    recall_rank, recall_score = recall_slots(dev)
    k = mm.recall.rerank_k

    rows, per_impression, kept = {}, {}, {}
    with atomic_dir(OUT_DIR) as out_dir:
        for model_name in p.models:
            for modality in p.modalities:
                row = f"{model_name}-{modality}"
                folder = MODELS_DIR / row
                model = load_model(folder)
                config = read_config(folder)
                vecs = report.news_vectors(model, text, image, image_present, dev.news_index(), n_slots)
                scores, ranking = report.score_row(model, vecs, dev, params.eval.batch_size, row)
                write_predictions(out_dir / f"prediction_{row}.txt", dev, ranks=ranking.ranks)
                e2e = rank_and_score(end_to_end_scores(scores, recall_rank, recall_score, k), dev,
                                     f"{row}, end to end (recall top {k})")
                train = read_json(TRAIN_METRICS / f"{row}.json", f"train_multimodal@{row}")
                rows[row] = {
                    "model": model_name, "modality": modality, "sees": SEES[modality],
                    "fusion": config.get("fusion") if modality == "text_image" else None,
                    "metrics": ranking.metrics, "end_to_end": e2e.metrics, "costs": report.static_costs(model, folder),
                    "train": {key: train.get(key) for key in ("epochs", "steps", "s_per_step", "seconds",
                                                             "peak_rss_mib", "trainable_weights")},
                }
                per_impression[row] = ranking.per_impression
                kept[row] = (model, vecs)
        recall_only = rank_and_score(recall_score, dev, "recall score alone")
        write_predictions(out_dir / "prediction_recall.txt", dev, ranks=recall_only.ranks)
        per_impression["recall"] = recall_only.per_impression
        write_impression_metrics(out_dir / "impressions.parquet", dev, per_impression)
        log.info("timing %d rows, one impression at a time, round-robin", len(kept))
        latency = report.impression_latency_ms(kept, dev)
    for row, ms in latency.items():
        rows[row]["latency_ms"] = ms

    eval_rows = read_json(Path("metrics/eval.json"), "evaluate")
    refs = references(eval_rows, p.text_model)
    refs["recall score alone (mean-of-history cosine)" if mm.recall.user == "mean"
         else "recall score alone (the text model's user encoder)"] = recall_only.metrics
    auc = {name: np.asarray(v["auc"]) for name, v in per_impression.items()}
    result = {
        "impressions": len(dev), "rerank_k": k,
        "text": {"model": text_meta.get("model"), "dim": text_meta.get("dim")},
        "image": {key: image_meta.get(key) for key in ("encoder", "description", "dim", "with_picture", "missing",
                                                       "corrupt")},
        "fusion": p.fusion, "params": {"multimodal": asdict(p), "reranker": asdict(mm.reranker), "recall": asdict(mm.recall)},
        "rows": rows, "intervals": report.intervals(auc, rows), "references": refs,
        "vs_best_teacher": teacher_intervals(auc, dev, eval_rows),
        "recall": read_json(Path("metrics/recall.json"), "recall"),
        "cards": read_json(Path("metrics/cards.json"), "render_cards"),
    }
    fig = report.figure(result)
    with staged_outputs(OUT_JSON, OUT_MD, OUT_PNG) as (tmp_json, tmp_md, tmp_png):
        tmp_json.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
        tmp_md.write_text(report.markdown(result), encoding="utf-8")
        fig.savefig(tmp_png, format="png", dpi=110, bbox_inches="tight")
    log.info("wrote %s, %s and %s (%d rows)", OUT_JSON, OUT_MD, OUT_PNG, len(rows))


if __name__ == "__main__":
    run_stage(main)
