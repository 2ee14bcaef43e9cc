"""evaluate: every model on MIND's dev impressions: ranking metrics, prediction.txt, efficiency.

Reads models/teacher_<i> for i in teacher.ids (and the STUDENTS below), data/samples/dev.parquet,
data/tokens/news.parquet, the frozen-layer cache, data/mind/{train,dev}/behaviors.parquet and,
for synthetic data, data/mind/dev/oracle.parquet. Writes:

- metrics/eval.json: {model: {auc, mrr, ndcg5, ndcg10}} for every model, plus ``popularity``
  (the reference a text model must beat) and, on synthetic data, ``oracle`` (ranking by the
  generator's true click probabilities: the synthetic world's ceiling);
- data/eval/prediction_<model>.txt: the MIND leaderboard's prediction.txt of every row, and
  data/eval/prediction.txt: the one to submit, the best teacher by dev AUC;
- metrics/efficiency.json: {model: {params, news_encoder_params, size_mb, news_per_s,
  user_latency_ms, layers}}, measured in this one process, round-robin, so the student's
  speed is measured side by side with the teachers'.

The student (models/student, whatever ``student.method`` made it) is the row ``student``.

Runs unchanged under ``accelerate launch``: news and impressions are split between
processes; the main process writes.
"""

import contextlib
import logging
import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq
import torch
from accelerate import Accelerator

from tinynewsrec import efficiency
from tinynewsrec.data import schemas
from tinynewsrec.errors import DataError
from tinynewsrec.evaluate import (
    REFERENCE_LABELS, DevImpressions, evaluate_model, load_recommender, metric_row, news_lookup, reference_scores,
    write_predictions,
)
from tinynewsrec.io import atomic_dir, atomic_path, write_json
from tinynewsrec.models.plmnr import NewsTokens
from tinynewsrec.params import load_params
from tinynewsrec.stage import run_stage

log = logging.getLogger("tinynewsrec")
DEV = Path("data/samples/dev.parquet")
TOKENS = Path("data/tokens/news.parquet")
MIND = Path("data/mind")
TITLE_CACHE = Path("data/cache/frozen/title")
EVAL_DIR = Path("data/eval")

#: models evaluated besides the teachers: folder names under models/ (under the ``models`` dependency)
STUDENTS: list[str] = ["student"]


def read(path: Path, stage: str, schema=None):
    if not path.exists():
        raise DataError(f"{path} is missing: run the {stage} stage first (dvc repro {stage})")
    return pq.read_table(path, schema=schema)


def model_folders(params) -> dict[str, Path]:
    """The teachers (all required) and the students that exist (the pipeline always has one;
    evaluating the teachers alone, before any distillation, is allowed)."""
    folders = {f"teacher_{i}": Path(f"models/teacher_{i}") for i in params.teacher.ids}
    for name, folder in folders.items():
        if not (folder / "config.json").exists():
            raise DataError(f"{folder} is missing: run the finetune_teacher stage first (dvc repro finetune_teacher)")
    for name in STUDENTS:
        folder = Path("models") / name
        if (folder / "config.json").exists():
            folders[name] = folder
        else:
            log.info("no %s to evaluate (run distill_stage2 to make one)", folder)
    return folders


def main() -> None:
    params = load_params()
    state = Accelerator()  # splits news and impressions between processes under accelerate launch
    if not state.is_main_process:
        log.setLevel(logging.WARNING)
    main_process = state.is_main_process
    dev = DevImpressions.read(DEV, params.data.history_len)
    if len(dev) == 0:
        raise DataError(f"{DEV} holds no impressions: check the dev split (metrics/split.json)")
    tokens = read(TOKENS, "split", schemas.TOKENS)
    n_slots = int(tokens.column("news_index").to_numpy().max()) + 1
    folders = model_folders(params)

    title_tokens = NewsTokens(tokens, "title_ids")
    bench = efficiency.bench_batches(title_tokens, tokens.column("news_index").to_numpy(), params.eval.bench_news,
                                     params.eval.bench_batch, params.plm.title_len)
    n_bench = min(efficiency.BENCH_IMPRESSIONS, len(dev))
    bench_news, bench_history, bench_candidates = efficiency.latency_inputs(
        *zip(*(dev.impression(i)[:2] for i in range(n_bench))))
    log.info("efficiency: %d news in batches of %d padded to %d tokens, %d impressions one at a time, "
             "%d torch threads on %s", params.eval.bench_news, params.eval.bench_batch, params.plm.title_len,
             n_bench, torch.get_num_threads(), state.device)

    results, kept = {}, {}
    with atomic_dir(EVAL_DIR) if main_process else contextlib.nullcontext() as out_dir:
        for name, folder in folders.items():
            model = load_recommender(folder).to(state.device)
            lookup = news_lookup(model.plm, tokens, "title_ids", TITLE_CACHE, name)
            vecs, scores = evaluate_model(model, dev, lookup, n_slots=n_slots, encode_batch=params.plm.encode_batch,
                                          batch_size=params.eval.batch_size, name=name, progress=main_process,
                                          state=state)
            if main_process:
                results[name] = metric_row(scores, dev, name)
                write_predictions(out_dir / f"prediction_{name}.txt", dev, scores)
                kept[name] = (model, folder, efficiency.compact_table(vecs, bench_news))
            del model, vecs, scores
        if main_process:
            for name, scores in reference_scores(MIND, dev, n_slots).items():
                results[name] = metric_row(scores, dev, REFERENCE_LABELS[name])
                write_predictions(out_dir / f"prediction_{name}.txt", dev, scores)
            best = max((n for n in folders if n.startswith("teacher_")), key=lambda n: results[n]["auc"])
            with atomic_path(out_dir / "prediction.txt") as tmp:
                shutil.copyfile(out_dir / f"prediction_{best}.txt", tmp)
            log.info("prediction.txt is %s's (the best dev AUC of the teachers, %.4f)", best, results[best]["auc"])
            log.info("measuring the efficiency of %d models, round-robin", len(kept))
            costs = efficiency.measure_models(kept, bench, bench_history, bench_candidates)
            for name, (model, _, _) in kept.items():
                costs[name]["layers"] = len(model.plm.encoder.layer)
    if main_process:
        write_json(results, "metrics/eval.json")
        write_json(costs, "metrics/efficiency.json")


if __name__ == "__main__":
    sys.exit(run_stage(main))
