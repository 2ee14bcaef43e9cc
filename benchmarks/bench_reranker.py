"""The multimodal models' training step time and peak RSS: the re-ranker at params.yaml's CPU default
and at DL_News_Rec's size, the two-tower at the default, on random tensors shaped like the demo's
batches (64 samples x (1 + 4) candidates, 20,000 news with 256-wide text and 128-wide image vectors).

    python benchmarks/bench_reranker.py [--steps 12] [--threads 2]

Each configuration runs in a process of its own (so ``ru_maxrss`` is that configuration's peak),
one after the other: 3 warm-up steps, then the median of ``--steps`` full training steps (collate,
forward, backward, clipping, AdamW). Writes metrics/bench_reranker.json. The pipeline's own rows
record the same figures on the real data in metrics/mm_train/<row>.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "metrics" / "bench_reranker.json"
WARM, BATCH, NEGATIVES, NEWS = 3, 64, 4, 20_000


def configs() -> dict[str, dict]:
    from tinynewsrec.multimodal.params import MultimodalParams, RerankerParams
    from tinynewsrec.multimodal.reranker import ORIGINAL

    m, r = MultimodalParams(), RerankerParams()
    default = {"dim": m.dim, "history_len": m.history_len, "layers": r.layers, "heads": r.heads, "ffn": r.ffn}
    return {"reranker (CPU default)": {"model": "reranker", **default},
            "reranker (DL_News_Rec's size)": {"model": "reranker", **ORIGINAL},
            "two_tower (CPU default)": {"model": "two_tower", **default}}


def one(spec: dict, steps: int, threads: int) -> dict:
    """Time ``steps`` training steps of ``spec`` in this process."""
    import numpy as np
    import torch

    from tinynewsrec.multimodal.fusion import NewsEncoderConfig
    from tinynewsrec.multimodal.reranker import Reranker, RerankerConfig
    from tinynewsrec.multimodal.train import NewsTables, click_loss, collate
    from tinynewsrec.multimodal.two_tower import MultimodalNR, MultimodalNRConfig

    torch.set_num_threads(threads)
    g = np.random.default_rng(0)
    length = spec["history_len"]
    tables = NewsTables(torch.randn(NEWS, 256), torch.randn(NEWS, 128), torch.rand(NEWS) > 0.3)
    n = BATCH * (steps + WARM)
    hist = [g.integers(1, NEWS, length).tolist() for _ in range(n)]
    cand = [g.integers(1, NEWS, 1 + NEGATIVES).tolist() for _ in range(n)]
    news = NewsEncoderConfig("text_image", "hadamard", 256, 128, spec["dim"])
    torch.manual_seed(0)
    if spec["model"] == "reranker":
        model = Reranker(RerankerConfig(news=news, layers=spec["layers"], heads=spec["heads"], ffn=spec["ffn"],
                                        dropout=0.1, history_len=length))
        objective = "pointwise"
    else:
        model = MultimodalNR(MultimodalNRConfig(news=news))
        objective = "listwise"  # the two-tower's softmax CE over 1 + K
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for step in range(steps + WARM):
        t = time.perf_counter()
        batch = collate(hist, cand, list(range(step * BATCH, (step + 1) * BATCH)), tables, length)
        loss = click_loss(model(batch), objective)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= WARM:
            times.append(time.perf_counter() - t)
    return {**spec, "weights": sum(p.numel() for p in model.parameters()), "threads": threads,
            "batch": f"{BATCH} x (1 + {NEGATIVES})", "steps_timed": steps,
            "s_per_step_median": round(float(np.median(times)), 4), "s_per_step_min": round(min(times), 4),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration, print JSON
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(json.loads(args.one), args.steps, args.threads)))
        return
    rows = {}
    for name, spec in configs().items():
        out = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec), "--steps", str(args.steps),
                              "--threads", str(args.threads)], check=True, capture_output=True, text=True)
        rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
        r = rows[name]
        print(f"{name}: {r['weights']:,} weights, {r['s_per_step_median']:.3f} s/step (median of {args.steps}), "
              f"peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
    base = rows["reranker (CPU default)"]["s_per_step_median"]
    for r in rows.values():
        r["time_vs_reranker_default"] = round(r["s_per_step_median"] / base, 2)
    OUT.write_text(json.dumps({"command": "python benchmarks/bench_reranker.py " + " ".join(argv or sys.argv[1:]),
                               "rows": rows}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
