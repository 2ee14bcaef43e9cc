"""Cost of the sequential recommenders at the default size and at MIND-large scale (synthetic).

    python benchmarks/bench_seqrec.py              # demo and large (builds the large world once, minutes)
    python benchmarks/bench_seqrec.py --skip-large

For each size the synthetic MIND world is generated and cut into sequences by the pipeline's own
stage scripts (download, sequences) in a scratch folder under .cache/bench_seqrec/<size>/, so the
counts are the ones a `dvc repro` with ``data.size: <size>`` would give. Then, for each model
(SASRec, BERT4Rec) and loss (CE over all items, BCE with one sampled negative), a fresh child
process (its own peak memory) builds the model at the params.yaml width with a random item
table, runs one warm-up and ``--steps`` training steps (forward, backward, Adam) on real batches
of the training sequences and ranks ``--rank-users`` validation users against all items. It
reports the median step time, seconds per epoch extrapolated to all the users (steps x median),
the peak RSS of the child and the ranking speed (users/s) with the full-ranking time of every user
extrapolated. Written to metrics/bench_seqrec.json.

The large world's SASRec-CE step materialises [batch x max_len, n_items] logits (6,400 x 160k
floats = 4 GB at batch 128): the large rows run at ``--large-batch`` (32 by default) and say so.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / ".cache" / "bench_seqrec"
OUT = ROOT / "metrics" / "bench_seqrec.json"


def build_world(size: str) -> Path:
    """data/mind and data/sequences of the synthetic ``size`` world, by the stage scripts."""
    folder = SCRATCH / size
    folder.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"] = params["data"] | {"source": "synthetic", "size": size}
    params["seqrec"] = params["seqrec"] | {"data": "mind", "recbole_path": "."}
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    timings = {}
    for stage, done in (("download", folder / "data/mind/dev/behaviors.parquet"),
                        ("sequences", folder / "data/sequences/test.parquet")):
        if done.exists() and (folder / f".{stage}.ok").exists():
            continue
        t = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "stages" / f"{stage}.py")], cwd=folder, check=True)
        timings[stage] = round(time.perf_counter() - t, 1)
        (folder / f".{stage}.ok").write_text(json.dumps(timings[stage]))
    return folder


def child(folder: Path, model_name: str, loss: str, batch: int, steps: int, rank_users: int) -> dict:
    import numpy as np
    import torch

    from tinynewsrec.params import load_params
    from tinynewsrec.seqrec.common import pad_left
    from tinynewsrec.seqrec.metrics import full_ranks
    from tinynewsrec.seqrec.sequences import read_eval, read_items, read_train
    from tinynewsrec.seqrec.train import build_model, seqrec_config

    os.chdir(folder)
    p = load_params().seqrec
    n_items = read_items().num_rows
    train = read_train()["items"].to_pylist()
    valid = read_eval("valid")
    cfg = seqrec_config(p, model_name, "random", n_items, p.hidden)
    cfg = dataclasses.replace(cfg, loss=loss)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    table = torch.randn(n_items + 1, p.hidden, generator=g) * 0.02
    model = build_model(cfg, table).train()
    opt = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=p.lr)
    order = np.random.default_rng(0).permutation(len(train))
    times = []
    for i in range(steps + 1):
        rows = order[(i * batch) % len(train):][:batch]
        seqs = pad_left([train[r] for r in rows], model.train_len)
        t = time.perf_counter()
        model.train_loss(seqs, g).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:  # the first step warms up
            times.append(time.perf_counter() - t)
    step = float(np.median(times))
    model.eval()
    hist = valid["history"].to_pylist()[:rank_users]
    target = torch.as_tensor(valid["target"].to_numpy()[:rank_users].astype(np.int64))
    t = time.perf_counter()
    with torch.inference_mode():
        for lo in range(0, len(hist), 256):
            h = hist[lo:lo + 256]
            scores = model.scores_all(pad_left(h, cfg.max_len))
            full_ranks(scores, target[lo:lo + 256], pad_left(h, max(map(len, h))))
    rank_s = time.perf_counter() - t
    users_per_s = len(hist) / rank_s
    return {
        "model": model_name, "loss": loss, "batch": batch, "users": len(train), "items": n_items,
        "median_step_s": round(step, 4), "steps_per_epoch": math.ceil(len(train) / batch),
        "s_per_epoch": round(step * math.ceil(len(train) / batch), 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rank_users_per_s": round(users_per_s, 1),
        "full_ranking_all_users_s": round(len(train) / users_per_s, 1),
        "weights": sum(q.numel() for q in model.parameters()),
    }


def run_child(folder: Path, model: str, loss: str, batch: int, steps: int, rank_users: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(folder), model, loss, str(batch), str(steps), str(rank_users)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        why = "killed (out of memory?)" if done.returncode < 0 else done.stderr.strip().splitlines()[-1:]
        return {"model": model, "loss": loss, "batch": batch, "failed": str(why)}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--large-batch", type=int, default=32)
    ap.add_argument("--rank-users", type=int, default=1024)
    args = ap.parse_args()
    p = yaml.safe_load((ROOT / "params.yaml").read_text())["seqrec"]
    sizes = ["demo"] + ([] if args.skip_large else ["large"])
    result = {"params": {k: p[k] for k in ("hidden", "blocks", "max_len", "batch_size")}, "steps": args.steps,
              "cpu_threads": os.cpu_count(), "sizes": {}}
    for size in sizes:
        folder = build_world(size)
        seq = json.loads((folder / "metrics/sequences.json").read_text())
        batch = p["batch_size"] if size == "demo" else args.large_batch
        rows = [run_child(folder, m, loss, batch, args.steps, args.rank_users)
                for m in ("sasrec", "bert4rec") for loss in ("ce", "bce")]
        stage_s = {stage: json.loads((folder / f".{stage}.ok").read_text()) for stage in ("download", "sequences")}
        result["sizes"][size] = {"sequences": seq, "stage_seconds": stage_s, "rows": rows}
        for r in rows:
            print(size, json.dumps(r), flush=True)
    OUT.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        folder, model, loss, batch, steps, rank_users = sys.argv[2:8]
        print(json.dumps(child(Path(folder), model, loss, int(batch), int(steps), int(rank_users))))
    else:
        main()
