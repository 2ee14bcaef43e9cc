"""Helper of tests/test_multiprocess.py: a tiny PLM-NR training or evaluation run that the test
starts as ONE process (``python tests/mp_train_script.py ...``) and as TWO processes
(``ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 ...``), then compares.

Not a test module (pytest collects ``test_*.py`` only). Everything is built from fixed seeds,
so every process and every run builds the same world and the same initial model:

- a tiny random BERT (``make_tiny_bert``: 2 layers, hidden 32) with its top layer trainable
  and ALL dropout off (the training loop seeds dropout per process, so with dropout on two
  processes draw other masks than one process and the results cannot agree);
- 60 news with random titles, training samples of 1 click + 4 non-clicks with histories of
  0..10 clicks, dev impressions of 2..9 candidates;
- the frozen-layer cache of the titles, built ONCE on the main process while the others wait
  (as a multi-process stage must), then read by every process.

    python tests/mp_train_script.py train OUT --batch 8 --rows 48 --epochs 2
    python tests/mp_train_script.py eval OUT

``train`` runs the real :func:`tinynewsrec.train.loop.fit` (``Accelerator``, ``prepare``,
batches sharded across processes, ``accelerator.backward``, gradient clipping, Adam) on
``collate_train`` batches from the cache. ``--batch`` is the PER-PROCESS batch size.
``eval`` runs :func:`tinynewsrec.evaluate.evaluate_model` with ``state=Accelerator()`` (news and
impressions split between processes, results gathered).

Every process writes ``OUT/rank_<i>.json`` (its rank, the world size, the distributed type and a
SHA-256 of its final weights); the main process also writes ``OUT/weights.safetensors`` (train:
every weight of the model; eval: ``scores`` and ``news_vecs``) and ``OUT/result.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

SEED = 1234
N_NEWS = 60
CONFIG = dict(news_dim=16, news_query_dim=8, user_query_dim=8)


def make_titles(rng: np.random.Generator) -> list[list[int]]:
    """Token ids ([CLS] words [SEP]) of news_index 1..N_NEWS; entry 0 is the padding."""
    titles = [[]]
    for _ in range(N_NEWS):
        words = rng.integers(1000, 5000, rng.integers(3, 13)).tolist()
        titles.append([101, *words, 102])
    return titles


def make_samples(rng: np.random.Generator, rows: int, candidates: int = 5) -> list[dict]:
    samples = []
    for _ in range(rows):
        history = rng.integers(1, N_NEWS + 1, rng.integers(0, 11)).tolist()
        samples.append({"history": history,
                        "candidates": rng.choice(np.arange(1, N_NEWS + 1), candidates, replace=False).tolist()})
    return samples


def make_model():
    from tinynewsrec.models.plm import freeze_plm, make_tiny_bert
    from tinynewsrec.models.plmnr import PLMNR, PLMNRConfig

    plm = make_tiny_bert(num_layers=2, hidden=32, seed=SEED)
    for module in plm.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    freeze_plm(plm, 1)
    torch.manual_seed(SEED)
    return PLMNR(plm, PLMNRConfig(**CONFIG))


def build_cache(model, titles: list[list[int]], folder: Path, state):
    """The frozen-layer title cache (a FrozenCache): written by the main process only, then
    read by all."""
    from tinynewsrec.models.cache import FrozenCache, build_frozen_cache

    if state.is_main_process:
        build_frozen_cache(model.plm, titles[1:], model.news_encoder.num_frozen_layers, batch_size=16,
                           out_path=folder, dtype=np.float32, progress=False,
                           news_index=np.arange(1, len(titles)), source="mp_train_script")
    state.wait_for_everyone()
    cache = FrozenCache(folder)
    cache.check_model(model.plm)
    return cache


def weights_sha256(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode() + tensors[name].detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def train(args, accelerator, out: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    from tinynewsrec.models.plmnr import click_loss, collate_train
    from tinynewsrec.train.loop import LoopConfig, fit

    rng = np.random.default_rng(SEED)
    titles = make_titles(rng)
    samples = make_samples(rng, args.rows)
    model = make_model()
    cache = build_cache(model, titles, out / "cache", accelerator)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    model, optimizer = accelerator.prepare(model, optimizer)

    def collate(rows: list[int]) -> dict:
        return collate_train([samples[i] for i in rows], cache)

    calls = []

    def step(model, batch):
        calls.append(1)
        loss = click_loss(model(batch))
        if accelerator.process_index == args.nan_on_rank and len(calls) == args.nan_at_step:
            loss = loss * float("nan")
        return loss, {}

    cfg = LoopConfig(epochs=args.epochs, batch_size=args.batch, seed=SEED, name="mp")
    from tinynewsrec.train.checkpoint import Checkpointer

    checkpointer = Checkpointer(out / "resume", "mp")  # saved after each epoch through full_state_dict
    result = fit(accelerator, model, optimizer, len(samples), collate, step, cfg, checkpointer=checkpointer)
    weights = {k: v.detach().cpu().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}
    return {"history": result["history"]}, weights


def evaluate(args, state) -> tuple[dict, dict[str, torch.Tensor]]:
    from tinynewsrec.evaluate import DevImpressions, evaluate_model
    from tinynewsrec.models.plmnr import NewsTokens

    rng = np.random.default_rng(SEED + 1)
    titles = make_titles(rng)
    model = make_model().eval()
    n = args.impressions
    sizes = rng.integers(2, 10, n)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    h_sizes = rng.integers(0, 11, n)
    h_offsets = np.concatenate([[0], np.cumsum(h_sizes)]).astype(np.int64)
    labels = (rng.random(offsets[-1]) < 0.3).astype(np.int8)
    labels[offsets[:-1]] = 1
    dev = DevImpressions(
        impression_ids=np.arange(1, n + 1, dtype=np.int64),
        candidates=rng.integers(1, N_NEWS + 1, offsets[-1]).astype(np.int32),
        labels=labels,
        offsets=offsets,
        history=rng.integers(1, N_NEWS + 1, h_offsets[-1]).astype(np.int32),
        history_offsets=h_offsets,
    )
    vecs, scores = evaluate_model(model, dev, NewsTokens.from_lists(titles), n_slots=N_NEWS + 1, encode_batch=8,
                                  batch_size=8, progress=False, state=state)
    tensors = {"scores": torch.from_numpy(np.ascontiguousarray(scores)), "news_vecs": vecs.cpu()}
    return {"impressions": n, "candidates": int(offsets[-1])}, tensors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["train", "eval"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--batch", type=int, default=8, help="train: samples per step PER PROCESS")
    ap.add_argument("--rows", type=int, default=48, help="train: training samples")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--impressions", type=int, default=37, help="eval: dev impressions")
    ap.add_argument("--nan-on-rank", type=int, default=-1, help="train: this process's loss becomes NaN ...")
    ap.add_argument("--nan-at-step", type=int, default=2, help="train: ... at this step")
    args = ap.parse_args()

    from accelerate import Accelerator
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    accelerator = Accelerator()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.mode == "train":
        from tinynewsrec.errors import TinyNewsRecError

        try:
            result, tensors = train(args, accelerator, args.out)
        except TinyNewsRecError as e:  # as run_stage does: one line, exit 2
            print(f"rank {accelerator.process_index}: error: {e}", flush=True)
            raise SystemExit(2) from None
    else:
        result, tensors = evaluate(args, accelerator)
    rank = {"process_index": accelerator.process_index, "num_processes": accelerator.num_processes,
            "distributed_type": str(accelerator.distributed_type), "sha256": weights_sha256(tensors)}
    (args.out / f"rank_{accelerator.process_index}.json").write_text(json.dumps(rank), encoding="utf-8")
    if accelerator.is_main_process:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(args.out / "weights.safetensors"))
        (args.out / "result.json").write_text(json.dumps({**rank, **result}, indent=2), encoding="utf-8")
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    sys.exit(main())
