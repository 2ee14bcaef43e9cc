"""The ``prune`` stage: ROSITA's importance pass on a fine-tuned teacher and the pruned student.

For a ``student.method`` whose module declares ``extra["prune"]`` (``rosita``):

1. ``student.teacher`` (``models/teacher_<i>``) is loaded and its click loss is run over
   ``<method>.importance_batches`` batches of ``teacher.batch_size`` training samples (drawn
   with ``<method>.seed``); the gradients of every layer's attention-output, intermediate and
   output dense weights are summed (absolute per batch, as the original) and turned into head
   and FFN-neuron scores (:func:`~tinynewsrec.models.pruned.taylor_importance`); the teacher's
   weights are never updated.
2. :func:`~tinynewsrec.models.pruned.pruned_student`: the bottom ``student.layers`` layers, the
   ``keep_heads`` best heads and ``ffn_dim`` best neurons per layer, the word embedding
   factorised to rank ``embedding_rank``; the teacher's heads copied.
3. ``models/pruned``: the student (``PrunedPLMNR.save_pretrained``: kind ``pruned_plmnr``, a
   ``plm/`` folder that plain ``AutoModel`` cannot load, see :mod:`tinynewsrec.models.pruned`),
   plus ``importance.safetensors`` (the head and neuron scores of every teacher layer);
   ``metrics/prune.json``: sizes before and after, the kept widths, the seconds it took.

Any other method: ``models/pruned/config.json`` says the stage is unused and
``metrics/prune.json`` is ``{"used": false}``, in a second.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from ..distill.methods import get_method
from ..io import atomic_dir, write_json

log = logging.getLogger("tinynewsrec")

METRICS = Path("metrics/prune.json")


def used(params) -> bool:
    """Whether ``student.method`` prunes (its module's ``extra["prune"]``)."""
    return bool(get_method(params.student.method).extra.get("prune"))


def write_unused(params, folder: Path, metrics: Path = METRICS) -> None:
    reason = f"student.method {params.student.method} does not prune"
    with atomic_dir(folder) as tmp:
        (tmp / "config.json").write_text(json.dumps({"model": "unused", "reason": reason}, indent=2) + "\n",
                                         encoding="utf-8")
    write_json({"used": False}, metrics)
    log.info("prune: %s; nothing to do", reason)


def importance_batches(params, paths, n: int, seed: int):
    """``n`` click-training batches of ``teacher.batch_size`` samples, rows drawn with ``seed``."""
    from ..data import schemas
    from ..models.plmnr import NewsTokens, collate_train
    from .common import read_samples

    samples = read_samples(paths.samples)
    tokens = NewsTokens(schemas.read_tokens(paths.tokens), "title_ids", max_len=params.plm.title_len)
    size = params.teacher.batch_size
    rows = np.random.default_rng(seed).permutation(samples.num_rows)
    n = min(n, -(-samples.num_rows // size))
    for i in range(n):
        yield collate_train(samples.take(rows[i * size:(i + 1) * size]), tokens)


def run(params, paths, metrics: Path = METRICS) -> dict:
    """Score, prune, write ``paths.pruned`` and ``metrics``; returns the metrics."""
    import torch
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from ..models.plmnr import PLMNR
    from ..models.pruned import count_parameters, pruned_student, taylor_importance
    from .distill import need_model

    own, s = params.method, params.student
    folder = need_model(paths.teacher(s.teacher), "finetune_teacher")
    teacher = PLMNR.from_pretrained(folder, trainable_layers=0)
    start = time.perf_counter()
    n = own.importance_batches
    log.info("prune: scoring teacher_%d's heads and FFN neurons by their click-loss gradients over %d batches",
             s.teacher, n)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(own.seed)
        scores = taylor_importance(teacher, importance_batches(params, paths, n, own.seed),
                                   progress=lambda it: tqdm(it, total=n, desc="importance", unit="batch"))
    scored = time.perf_counter() - start
    student = pruned_student(teacher, scores, keep_heads=own.keep_heads, ffn_dim=own.ffn_dim, num_layers=s.layers,
                             embedding_rank=own.embedding_rank)
    spec = student.pruning
    out = {
        "used": True, "teacher": s.teacher, "importance_batches": scores["batches"],
        "importance_seconds": round(scored, 2),
        "teacher_plm_params": count_parameters(teacher.plm), "pruned_plm_params": count_parameters(student.plm),
        "teacher_params": count_parameters(teacher), "pruned_params": count_parameters(student),
        "layers": s.layers, "heads_per_layer": spec["heads_per_layer"], "ffn_per_layer": spec["ffn_per_layer"],
        "embedding_rank": spec["embedding_rank"], "kept_heads": spec["heads"],
    }
    out["plm_compression"] = round(out["teacher_plm_params"] / out["pruned_plm_params"], 2)
    with atomic_dir(paths.pruned) as tmp:
        student.save_pretrained(tmp, stage="prune", teacher=s.teacher, importance_batches=scores["batches"],
                                kept_heads=spec["heads"], kept_ffn=spec["ffn"])
        save_file({**{f"heads.{i}": h.contiguous() for i, h in enumerate(scores["heads"])},
                   **{f"ffn.{i}": f.contiguous() for i, f in enumerate(scores["ffn"])}},
                  str(tmp / "importance.safetensors"))
    write_json(out, metrics)
    log.info("prune: %s -> %s PLM weights (%.1fx smaller): %d layers, %d heads, FFN %d, embedding rank %s; "
             "wrote %s", f"{out['teacher_plm_params']:,}", f"{out['pruned_plm_params']:,}", out["plm_compression"],
             s.layers, own.keep_heads, own.ffn_dim, own.embedding_rank, paths.pruned)
    return out
