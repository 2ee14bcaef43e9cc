"""HSK distillation teacher-free (from the hsk_store stage's memory-mapped store) vs with the
teacher online (its states computed on every batch); writes metrics/bench_hsk.json.

On the pipeline's own data and teacher (run from a repository whose default ``dvc repro`` has
run: data/tokens, data/samples, models/teacher_<student.teacher>), for each ``--configs``
setting of the ``hsk`` method (``full`` = every state, token and dim; or a 3-D string): the store
is built by the hsk_store stage's own code into a scratch folder (its build time and bytes on
disk reported), then two stage-1 training modules built by the method's own builder, one reading
the store and one running the teacher, start from the same weights and train on the SAME news
batches (stage1.batch_size news, seeded order), one step each in turn, so machine noise falls on
both alike. A step is: collate (tokens + the HSK: read from the store or computed by the
teacher), forward, backward, clipping, Adam. Reported per mode: median and total step time; the
ratio online / teacher-free (the paper reports 2.7-3.4x for BERT-base on GLUE); the first step's
loss of both (same weights: the difference is the store's float16 rounding).

    python benchmarks/bench_hsk.py --configs full 1l_10t_0.1h --steps 40
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tinynewsrec.distill.methods import MethodInputs, get_method  # noqa: E402
from tinynewsrec.io import write_json  # noqa: E402
from tinynewsrec.params import load_params, section_from_dict  # noqa: E402
from tinynewsrec.train import hsk_store  # noqa: E402
from tinynewsrec.train.distill import DistillPaths, read_tokens  # noqa: E402


def hsk_params(config: str):
    """The default params with ``student.method: hsk`` and the hsk section at ``config``."""
    import yaml

    params = load_params()
    raw = dict(yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8")).get("hsk") or {})
    raw["config"] = None if config == "full" else config
    own = section_from_dict("hsk", get_method("hsk").params, raw)
    return dataclasses.replace(params, method=own, student=dataclasses.replace(params.student, method="hsk"))


def bench(config: str, steps: int, accelerator, scratch: Path) -> dict:
    params = hsk_params(config)
    paths = DistillPaths(hsk=scratch / f"hsk-{config}")
    start = time.perf_counter()
    store = hsk_store.run(params, paths, metrics=scratch / f"hsk-{config}.json")
    built = time.perf_counter() - start
    tokens = read_tokens(paths)
    n_slots = int(tokens.column("news_index").to_numpy().max()) + 1
    modes = {}
    for free in (True, False):
        p = dataclasses.replace(params, method=dataclasses.replace(params.method, teacher_free=free))
        step = get_method("hsk").build_stage1(MethodInputs(p, accelerator, paths, tokens, n_slots, 0.0))
        if step.info["teacher_free"] != free:
            raise SystemExit(f"{config}: the store was not used ({store.get('reason')})")
        step.module.train()
        opt = torch.optim.Adam([q for q in step.module.parameters() if q.requires_grad], lr=p.stage1.lr)
        modes[free] = {"step": step, "opt": opt, "times": [], "losses": []}
    bs = params.stage1.batch_size
    rows = torch.randperm(modes[True]["step"].n_rows, generator=torch.Generator().manual_seed(params.stage1.seed)).numpy()
    for i in range(steps):
        batch_rows = rows[(i * bs) % (len(rows) - bs):][:bs]
        for free, m in modes.items():
            t0 = time.perf_counter()
            batch = m["step"].collate(list(batch_rows))
            loss, _ = m["step"].module(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m["step"].module.parameters(), 1.0)
            m["opt"].step()
            m["opt"].zero_grad(set_to_none=True)
            m["times"].append(time.perf_counter() - t0)
            m["losses"].append(loss.item())
        if (i + 1) % 10 == 0:
            print(f"  {config} step {i + 1}/{steps}: teacher-free {modes[True]['times'][-1]:.3f} s, "
                  f"online {modes[False]['times'][-1]:.3f} s", flush=True)
    out = {"store_build_s": round(built, 2), "store_bytes_on_disk": store.get("bytes_on_disk"),
           "store_bytes_per_news": store.get("bytes_per_news"), "store_news": store.get("news"),
           "pairs": store.get("pairs"), "steps": steps, "batch_news": bs}
    for free, m in modes.items():
        t = m["times"]
        out["teacher_free" if free else "online"] = {"median_step_s": round(statistics.median(t), 4),
                                                     "total_s": round(sum(t), 2), "first_loss": m["losses"][0]}
    f, o = out["teacher_free"], out["online"]
    out["speedup_median"] = round(o["median_step_s"] / f["median_step_s"], 3)
    out["speedup_total"] = round(o["total_s"] / f["total_s"], 3)
    out["first_loss_rel_diff"] = abs(f["first_loss"] - o["first_loss"]) / abs(o["first_loss"])
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["full", "1l_10t_0.1h"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", type=Path, default=ROOT / "metrics" / "bench_hsk.json")
    args = parser.parse_args()
    from accelerate import Accelerator

    accelerator = Accelerator()
    results = {"threads": torch.get_num_threads(), "configs": {}}
    (ROOT / ".cache").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-hsk-", dir=ROOT / ".cache") as scratch:
        for config in args.configs:
            results["configs"][config] = bench(config, args.steps, accelerator, Path(scratch))
            print(results["configs"][config], flush=True)
    write_json(results, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
