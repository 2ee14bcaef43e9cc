"""The teacher's hidden states and attention computed once per news vs on every batch
(``simplified_tinybert``'s ``cache_teacher``); writes metrics/bench_kd_cache.json.

On the pipeline's own data and teacher (run from a repository whose default ``dvc repro`` has
run: data/tokens, data/samples, models/teacher_<student.teacher>, data/teacher_emb), for each
``--layers`` L: two Simplified TinyBERT training modules built by the method's own builder, one
with the cache and one without, start from the same weights and train on the SAME batches (the
loop's row order, seed ``stage2.seed``), one step each in turn, so machine noise falls on both
alike. A step is: collate (tokens + the teacher's states + exported teacher embeddings), forward,
backward, clipping, Adam. Reported per mode: median step time over the first epoch (the cache
filling) and over the steps after it, teacher news computed, the cache's kept MiB; the loss of the
first step of both (same weights: the difference is the float16 storage of ``plm.cache_dtype``);
and the process's peak RSS after each layer count (``ru_maxrss``, monotone over the run).

    python benchmarks/bench_kd_cache.py --layers 2 --steps 80
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tinynewsrec.distill.methods import MethodInputs, get_method  # noqa: E402
from tinynewsrec.io import write_json  # noqa: E402
from tinynewsrec.models.plmnr import NewsTokens, collate_train  # noqa: E402
from tinynewsrec.params import load_params  # noqa: E402
from tinynewsrec.train.common import read_samples  # noqa: E402
from tinynewsrec.train.distill import DistillPaths, read_tokens  # noqa: E402


def build(params, layers: int, cached: bool, accelerator):
    own = dataclasses.replace(params.method, cache_teacher=cached)
    p = dataclasses.replace(params, method=own, student=dataclasses.replace(params.student, layers=layers))
    paths = DistillPaths()
    tokens = read_tokens(paths)
    n_slots = int(tokens.column("news_index").to_numpy().max()) + 1
    step = get_method("simplified_tinybert").build_stage2(MethodInputs(p, accelerator, paths, tokens, n_slots, 1.0))
    opt = torch.optim.Adam([q for q in step.module.parameters() if q.requires_grad], lr=p.stage2.lr)
    return step, opt, NewsTokens(tokens, "title_ids")


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(params, layers: int, steps: int, accelerator) -> dict:
    samples = read_samples(DistillPaths().samples)
    bs, per_epoch = params.stage2.batch_size, params.stage2.max_steps_per_epoch or 10**9
    order = torch.Generator().manual_seed(params.stage2.seed * 1_000)
    rows = torch.randperm(samples.num_rows, generator=order).numpy()
    modes = {}
    for cached in (True, False):
        step, opt, titles = build(params, layers, cached, accelerator)
        step.module.train()
        modes[cached] = {"step": step, "opt": opt, "titles": titles, "times": [], "losses": []}
    for i in range(steps):
        batch_rows = rows[(i * bs) % (len(rows) - bs):][:bs]
        for cached, m in modes.items():
            t0 = time.perf_counter()
            batch = collate_train(samples.take(np.asarray(batch_rows)), m["titles"])
            batch.update(m["step"].collate_extra(batch))
            loss, _ = m["step"].module(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m["step"].module.parameters(), 1.0)
            m["opt"].step()
            m["opt"].zero_grad(set_to_none=True)
            m["times"].append(time.perf_counter() - t0)
            m["losses"].append(loss.item())
        print(f"  L={layers} step {i + 1}/{steps}: cached {modes[True]['times'][-1]:.2f} s, "
              f"online {modes[False]['times'][-1]:.2f} s", flush=True)
    first = min(per_epoch, steps)
    out = {}
    for cached, m in modes.items():
        report = m["step"].report()
        t = m["times"]
        out["cached" if cached else "online"] = {
            "median_step_s_first_epoch": round(statistics.median(t[:first]), 4),
            "median_step_s_after": round(statistics.median(t[first:]), 4) if len(t) > first else None,
            "total_s": round(sum(t), 2),
            "teacher_news_computed": report["teacher_news_computed"],
            "teacher_cache_mib": report["teacher_cache_mib"],
            "first_loss": m["losses"][0],
        }
    c, o = out["cached"], out["online"]
    out["speedup_total"] = round(o["total_s"] / c["total_s"], 3)
    out["speedup_after_first_epoch"] = (round(o["median_step_s_after"] / c["median_step_s_after"], 3)
                                        if c["median_step_s_after"] else None)
    out["first_loss_abs_diff"] = abs(c["first_loss"] - o["first_loss"])
    out["peak_rss_mib"] = round(rss_mib(), 1)
    out["steps"], out["batch_size"] = steps, bs
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[2])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--out", type=Path, default=ROOT / "metrics" / "bench_kd_cache.json")
    args = parser.parse_args()
    from accelerate import Accelerator

    params = load_params()
    if params.student.method != "simplified_tinybert":
        import yaml

        from tinynewsrec.params import section_from_dict

        raw = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8")).get("simplified_tinybert")
        params = dataclasses.replace(params, method=section_from_dict(
            "simplified_tinybert", get_method("simplified_tinybert").params, raw),
            student=dataclasses.replace(params.student, method="simplified_tinybert"))
    accelerator = Accelerator()
    results = {"threads": torch.get_num_threads(), "cache_dtype": params.plm.cache_dtype,
               "teacher": params.student.teacher, "layers": {}}
    for layers in args.layers:
        results["layers"][str(layers)] = bench(params, layers, args.steps, accelerator)
        print(json.dumps(results["layers"][str(layers)], indent=1), flush=True)
    write_json(results, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
