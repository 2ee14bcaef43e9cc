"""Length buckets (``tinynewsrec.models.buckets``) against one padded batch, side by side;
writes metrics/bench_buckets.json.

On the pipeline's own data (run from a repository whose default ``dvc repro`` has run): two
training steps, each in two copies of one model that start from the same weights and take the
SAME batches, one copy with ``length_buckets`` 4 and one with 1, one step each in turn, so
machine noise falls on both alike:

- a teacher step: ``models/teacher_0`` (the PLM's top ``plm.trainable_layers`` layers train)
  over unique-news batches of ``teacher.batch_size`` samples from the frozen-layer cache;
- a SASRec step: the ``sasrec-random`` row's model over ``seqrec.batch_size`` users of
  data/sequences/train.parquet, CE over all items.

A step is forward, backward and Adam. Reported per mode: the median step time (the first step
left out as warm-up), the first step's loss of both (same weights; the teacher's differ in the
4th digit because dropout draws its masks for other shapes; SASRec's are both ln(items), as a
random table scores every item about 0) and the speed-up (median one padded batch / median
buckets); and the batches' shape
(unique news, mean title tokens and padded width; users, mean history and padded width).

    python benchmarks/bench_buckets.py --steps 30
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tinynewsrec.io import write_json  # noqa: E402
from tinynewsrec.models.plmnr import PLMNR, collate_train  # noqa: E402
from tinynewsrec.params import load_params  # noqa: E402
from tinynewsrec.seqrec.common import pad_left  # noqa: E402
from tinynewsrec.seqrec.sequences import read_items, read_train  # noqa: E402
from tinynewsrec.seqrec.train import build_model, seqrec_config  # noqa: E402
from tinynewsrec.train.common import read_samples  # noqa: E402
from tinynewsrec.train.finetune_teacher import TeacherPaths, load_cache  # noqa: E402


def side_by_side(model, set_buckets, batches, loss_fn) -> dict:
    """Median step time of ``model`` with 4 buckets and with 1, alternating on the same batches."""
    copies = {}
    for buckets in (4, 1):
        m = copy.deepcopy(model).train()
        set_buckets(m, buckets)
        copies[buckets] = (m, torch.optim.Adam([q for q in m.parameters() if q.requires_grad], lr=1e-4))
    times = {4: [], 1: []}
    first = {}
    for i, batch in enumerate(batches):
        for buckets in ((4, 1) if i % 2 == 0 else (1, 4)):  # alternate who goes first
            m, opt = copies[buckets]
            start = time.perf_counter()
            loss = loss_fn(m, batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            times[buckets].append(time.perf_counter() - start)
            first.setdefault(buckets, float(loss.detach()))
    median = {b: statistics.median(t[1:]) for b, t in times.items()}  # the first step warms up
    return {"median_step_s_buckets": round(median[4], 4), "median_step_s_one_batch": round(median[1], 4),
            "speedup": round(median[1] / median[4], 3), "first_loss_buckets": first[4],
            "first_loss_one_batch": first[1], "steps": len(batches)}


def teacher_bench(params, steps: int) -> dict:
    paths = TeacherPaths.default(0)
    model = PLMNR.from_pretrained(paths.out, trainable_layers=params.plm.trainable_layers)
    cache = load_cache(paths, model)
    table = read_samples(paths.samples)
    rng = np.random.default_rng(params.teacher.seed)
    bs = params.teacher.batch_size
    batches = [collate_train(table.take(rng.choice(table.num_rows, bs, replace=False)), cache)
               for _ in range(steps)]
    masks = [b["news_states"]["attention_mask"] for b in batches]
    out = side_by_side(model, lambda m, k: setattr(m.news_encoder, "length_buckets", k), batches,
                       lambda m, b: m.loss(b))
    out.update(unique_news_per_step=round(float(np.mean([len(x) for x in masks])), 1),
               mean_title_tokens=round(float(np.mean([x.sum(1).float().mean() for x in masks])), 2),
               mean_padded_width=round(float(np.mean([x.shape[1] for x in masks])), 2))
    return out


def sasrec_bench(params, steps: int) -> dict:
    p = params.seqrec
    items, train = read_items(), read_train()
    config = seqrec_config(p, "sasrec", "random", items.num_rows, p.hidden)
    torch.manual_seed(p.seed)
    model = build_model(config)
    seqs = train.column("items").to_pylist()
    rng = np.random.default_rng(p.seed)
    batches = [pad_left([seqs[i] for i in rng.choice(len(seqs), min(p.batch_size, len(seqs)), replace=False)],
                        model.train_len) for _ in range(steps)]
    out = side_by_side(model, lambda m, k: setattr(m, "length_buckets", k), batches,
                       lambda m, b: m.train_loss(b, torch.Generator().manual_seed(0)))
    lengths = [(b[:, :-1] != 0).sum(1).float() for b in batches]
    out.update(users_per_step=int(batches[0].shape[0]), mean_history=round(float(torch.cat(lengths).mean()), 2),
               padded_width=int(batches[0].shape[1] - 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=30, help="training steps per mode and model")
    ap.add_argument("--out", default="metrics/bench_buckets.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    params = load_params()
    result = {"torch_threads": torch.get_num_threads(), "teacher_step": teacher_bench(params, args.steps),
              "sasrec_step": sasrec_bench(params, args.steps)}
    write_json(result, Path(args.out))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
