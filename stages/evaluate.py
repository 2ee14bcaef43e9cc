"""evaluate: every model on MIND's dev impressions: ranking metrics, prediction.txt, efficiency.

Reads models/teacher_<i> for i in teacher.ids (and the STUDENTS below), data/samples/dev.parquet,
data/tokens/news.parquet, the frozen-layer cache, data/mind/{train,dev}/behaviors.parquet and,
for synthetic data, data/mind/dev/oracle.parquet. Writes:

- metrics/eval.json: {row: {auc, mrr, ndcg5, ndcg10}} for every model, plus ``popularity``
  (the reference a text model must beat) and, on synthetic data, ``oracle`` (ranking by the
  generator's true click probabilities: the synthetic world's ceiling). The metrics are those
  the MIND leaderboard computes from the prediction.txt written here (ranks; equal scores:
  the earlier candidate ranks higher), so the two always agree;
- data/eval/prediction_<row>.txt: the MIND leaderboard's prediction.txt of every row, and
  data/eval/prediction.txt: the one to submit, the best teacher by dev AUC;
- data/eval/impressions.parquet: every row's metrics per dev impression (``<row>/auc`` ...),
  for paired comparisons (the results table's bootstrap intervals);
- metrics/efficiency.json: {model: {params, news_encoder_params, size_mb, news_per_s,
  user_latency_ms, layers}}, measured in this one process, round-robin, so the student's
  speed is measured side by side with the teachers'.

Models are loaded through the one Recommender interface (``tinynewsrec.recommender``), so any
model folder kind can be a row: the teachers, then every folder under models/ named in
``eval.models`` (default ``[student]``: whatever ``student.method`` made), each row named after
its folder.

Runs unchanged under ``accelerate launch``: news and impressions are split between
processes; the main process writes.
"""

import contextlib
import logging
import shutil
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

from tinynewsrec import efficiency
from tinynewsrec.data import schemas
from tinynewsrec.errors import DataError
from tinynewsrec.evaluate import (
    REFERENCE_LABELS, DevImpressions, evaluate_model, news_lookup, rank_and_score, reference_scores,
    write_impression_metrics, write_predictions,
)
from tinynewsrec.recommender import load_recommender
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



def model_folders(params) -> dict[str, Path]:
    """The rows: the teachers, then every folder of ``eval.models`` (all required)."""
    folders = {f"teacher_{i}": Path(f"models/teacher_{i}") for i in params.teacher.ids}
    for name, folder in folders.items():
        if not (folder / "config.json").exists():
            raise DataError(f"{folder} is missing: run the finetune_teacher stage first (dvc repro finetune_teacher)")
    for name in params.eval.models:
        folder = Path("models") / name
        if not (folder / "config.json").exists():
            raise DataError(f"params.yaml: eval.models names {name!r} but {folder} holds no model; "
                            "run the stage that writes it or remove it from eval.models")
        folders[name] = folder
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
    tokens = schemas.read_tokens(TOKENS)
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

    results, per_impression, kept = {}, {}, {}
    with atomic_dir(EVAL_DIR) if main_process else contextlib.nullcontext() as out_dir:
        for name, folder in folders.items():
            model = load_recommender(folder).to(state.device)
            lookup = news_lookup(model.plm, tokens, "title_ids", TITLE_CACHE, name)
            vecs, scores = evaluate_model(model, dev, lookup, n_slots=n_slots, encode_batch=params.plm.encode_batch,
                                          batch_size=params.eval.batch_size, name=name, progress=main_process,
                                          state=state)
            if main_process:
                ranking = rank_and_score(scores, dev, name)
                results[name], per_impression[name] = ranking.metrics, ranking.per_impression
                write_predictions(out_dir / f"prediction_{name}.txt", dev, ranks=ranking.ranks)
                kept[name] = (model, folder, efficiency.compact_table(vecs, bench_news))
            del model, vecs, scores
        if main_process:
            for name, scores in reference_scores(MIND, dev, n_slots).items():
                ranking = rank_and_score(scores, dev, REFERENCE_LABELS[name])
                results[name], per_impression[name] = ranking.metrics, ranking.per_impression
                write_predictions(out_dir / f"prediction_{name}.txt", dev, ranks=ranking.ranks)
            write_impression_metrics(out_dir / "impressions.parquet", dev, per_impression)
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
