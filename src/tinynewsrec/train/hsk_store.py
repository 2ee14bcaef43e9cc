"""The ``hsk_store`` stage: the teacher's compressed hidden-state knowledge of every training
news, computed once, so that HSK distillation (methods ``hsk``, ``rosita``) never loads the teacher.

For a ``student.method`` whose module declares ``extra["hsk_store"]`` and whose section says
``teacher_free: true``: ``student.teacher`` runs once over the distinct news of the training
samples (batches of ``plm.encode_batch`` titles, from token ids: the frozen-layer cache is
float16 and would round the states the student learns), their HSK is compressed by the
method's setting (:mod:`tinynewsrec.distill.hsk`) and written to ``data/hsk`` as a
memory-mapped :class:`~tinynewsrec.distill.hsk.HSKStore` (``store_dtype``, float16 by
default). ``metrics/hsk_store.json``: the setting, news, bytes per news, bytes on disk, seconds.

**Where it stops fitting.** The store's size is known before anything runs
(:meth:`HSKStore.bytes_per_news` x news). Above ``<method>.store_gb`` (default 4 GB) the stage
writes no store, only ``data/hsk/note.json`` with the size it would have taken, and
``distill_stage1`` then runs the teacher online on every batch (and says so in its log and
config.json: ``teacher_free: false``). docs/rosita.md lists the bytes per setting on the
demo data and at MIND-large scale.

Any other method, or ``teacher_free: false``: ``data/hsk/note.json`` says why no store is
needed, in a second.
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

METRICS = Path("metrics/hsk_store.json")


def wanted(params) -> str | None:
    """None when ``student.method`` needs a store, else the reason it does not."""
    method = get_method(params.student.method)
    if not method.extra.get("hsk_store"):
        return f"student.method {params.student.method} does not distil hidden-state knowledge"
    if not params.method.teacher_free:
        return f"{params.student.method}.teacher_free is false: stage 1 runs the teacher online"
    return None


def write_note(folder: Path, metrics: Path, reason: str, **extra) -> None:
    with atomic_dir(folder) as tmp:
        (tmp / "note.json").write_text(json.dumps({"reason": reason, **extra}, indent=2, sort_keys=True) + "\n",
                                       encoding="utf-8")
    write_json({"used": False, "reason": reason, **extra}, metrics)
    log.info("hsk_store: %s; no store written", reason)


def run(params, paths, metrics: Path = METRICS) -> dict:
    """Write the store of the chosen method's setting to ``paths.hsk`` (or a note); returns the metrics."""
    import torch
    from tqdm.auto import tqdm

    from ..data import schemas
    from ..distill.hsk import HSKStore
    from ..distill.methods import _hsk
    from ..distill.methods._kd import training_news
    from ..models.plmnr import NewsTokens
    from .common import read_samples

    reason = wanted(params)
    if reason is not None:
        write_note(paths.hsk, metrics, reason)
        return {"used": False, "reason": reason}
    own, name = params.method, params.student.method
    setting = _hsk.setting(params)
    folder = _hsk.teacher_folder(params, paths)
    depth = _hsk.teacher_depth(folder)
    pairs = _hsk.pairs_of(params, setting, depth)
    pool = training_news(read_samples(paths.samples))
    tokens = NewsTokens(schemas.read_tokens(paths.tokens), "title_ids", max_len=params.plm.title_len)
    lengths = np.minimum(np.diff(tokens.offsets)[pool], params.plm.title_len)
    k = _hsk.store_slots(setting, int(lengths.max()))
    hidden = json.loads((folder / "plm" / "config.json").read_text(encoding="utf-8"))["hidden_size"]
    dtype = np.dtype(own.store_dtype)
    from ..distill.hsk import hidden_dims

    dims = hidden_dims(setting.hidden_scheme, setting.keep_hidden, hidden, setting.seed)
    width = hidden if dims is None else len(dims)
    slots = round(setting.keep_hidden * k * hidden) if setting.dynamic else None
    per_news = HSKStore.bytes_per_news(pairs, k, width, setting.dynamic, dtype.itemsize, slots)
    need = per_news * len(pool)
    sizes = {"setting": setting.as_dict(), "pairs": [list(p) for p in pairs], "news": int(len(pool)),
             "token_slots": k, "bytes_per_news": per_news, "bytes_needed": need, "dtype": own.store_dtype}
    if need > own.store_gb * 2**30:
        write_note(paths.hsk, metrics, f"the store would take {need / 2**30:.2f} GB, more than {name}.store_gb "
                   f"({own.store_gb}); distill_stage1 runs the teacher online instead", **sizes)
        return {"used": False, **sizes}
    teacher = _hsk.load_teacher(folder, "cpu")
    online = _hsk.TeacherHSK(teacher, pairs, setting)
    start = time.perf_counter()
    batch = params.plm.encode_batch
    with atomic_dir(paths.hsk) as tmp:
        store = HSKStore.create(tmp, pool, pairs, k, width, setting.dynamic, dtype, dims=dims, setting=setting,
                                slots=slots)
        store.meta.update(teacher=params.student.teacher, dtype=own.store_dtype)
        with torch.inference_mode():
            for i in tqdm(range(0, len(pool), batch), desc="teacher HSK", unit="batch"):
                news_index = pool[i:i + batch]
                store.write(news_index, _hsk.pad_slots(online(tokens.batch(news_index)), k))
        store.close()
        on_disk = store.meta["bytes_on_disk"]
    out = {"used": True, **sizes, "bytes_on_disk": on_disk, "seconds": round(time.perf_counter() - start, 2)}
    write_json(out, metrics)
    log.info("hsk_store: teacher_%d's HSK of %s news (%s), %.1f MiB on disk (%s bytes per news); wrote %s",
             params.student.teacher, f"{len(pool):,}", pairs, on_disk / 2**20, f"{per_news:,}", paths.hsk)
    return out
