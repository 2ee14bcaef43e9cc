"""Probe (not a pipeline stage): ROSITA pruning of ``student.teacher``, sizes and news-encoding
speed of the teacher, the default student and the pruned model, side by side in one process.

Run from the repository root after a default ``dvc repro``::

    python benchmarks/probe_pruning.py

Importance over 8 click-loss batches of 32 training samples; pruned to ``student.layers`` layers,
2 heads per layer, FFN 384 and embedding rank 64 (ROSITA's 2 heads and a quarter of the FFN width,
scaled to MiniLM-L6). Speed: 256 titles in one batch, best of 3 after a warm-up.
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch

from tinynewsrec.data import schemas
from tinynewsrec.models.plmnr import PLMNR, NewsTokens, collate_train
from tinynewsrec.models.pruned import count_parameters, pruned_student, taylor_importance
from tinynewsrec.params import load_params
from tinynewsrec.train.common import read_samples

BATCHES, BATCH, NEWS, REPEATS = 8, 32, 256, 3


def news_per_second(model: PLMNR, news: dict) -> float:
    with torch.no_grad():
        model.news_encoder(news)
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            model.news_encoder(news)
            times.append(time.perf_counter() - start)
    return len(news["input_ids"]) / min(times)


def main() -> int:
    params = load_params()
    teacher_dir, student_dir = Path(f"models/teacher_{params.student.teacher}"), Path("models/student")
    for folder in (teacher_dir, student_dir, Path("data/samples/train.parquet")):
        if not folder.exists():
            print(f"{folder} is missing: run `dvc repro` first", file=sys.stderr)
            return 1
    torch.manual_seed(0)
    tokens = NewsTokens(schemas.read_tokens("data/tokens/news.parquet"), "title_ids", max_len=params.plm.title_len)
    samples = read_samples("data/samples/train.parquet")
    rows = np.random.default_rng(0).permutation(samples.num_rows)
    batches = [collate_train(samples.take(rows[i * BATCH:(i + 1) * BATCH]), tokens) for i in range(BATCHES)]
    teacher = PLMNR.from_pretrained(teacher_dir, trainable_layers=0).eval()
    start = time.perf_counter()
    scores = taylor_importance(teacher, batches)
    print(f"importance over {BATCHES} batches of {BATCH} samples: {time.perf_counter() - start:.1f} s")
    pruned = pruned_student(teacher, scores, keep_heads=2, ffn_dim=384, num_layers=params.student.layers,
                            embedding_rank=64).eval()
    student = PLMNR.from_pretrained(student_dir, trainable_layers=0).eval()
    news = tokens.batch(np.arange(1, NEWS + 1))
    rows_out = [(teacher_dir.name, teacher), (f"student ({params.student.method}-{params.student.layers})", student),
                (f"pruned ({params.student.layers} layers, 2 heads, FFN 384, rank 64)", pruned)]
    speeds = {name: news_per_second(model, news) for name, model in rows_out}
    base = speeds[teacher_dir.name]
    for name, model in rows_out:
        print(f"{name}: {count_parameters(model.plm):,} PLM params, {speeds[name]:,.0f} news/s "
              f"({speeds[name] / base:.2f}x the teacher)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
