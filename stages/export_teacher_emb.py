"""export_teacher_emb: teacher i's embeddings of every news, for distillation.

Usage: ``python stages/export_teacher_emb.py <i>`` (DVC runs it for each i in teacher.ids).
Reads models/teacher_<i>, models/post_train/step_<i>, data/tokens/news.parquet and the
frozen-layer cache data/cache/frozen/. Writes data/teacher_emb/teacher_<i>.safetensors:
"news" (teacher i on titles), "title" and "body" (step_i on titles and bodies), each
[max news_index + 1, news_dim] float32 with row 0 zeros, and teacher i's user encoder
("user_encoder.*"); metadata names the checkpoints (with their SHA-256), the tokenizer and
the sizes.
"""

import logging
import sys
from pathlib import Path

from accelerate import Accelerator

from tinynewsrec.data import schemas
from tinynewsrec.errors import DataError, ParamError
from tinynewsrec.evaluate import export_teacher_embeddings
from tinynewsrec.io import checkpoint_sha256
from tinynewsrec.models.plmnr import PLMNR
from tinynewsrec.params import load_params
from tinynewsrec.stage import run_stage, stage_item
from tinynewsrec.teacher_emb import write_teacher_emb

log = logging.getLogger("tinynewsrec")
CACHE_DIR = Path("data/cache/frozen")
OUT_DIR = Path("data/teacher_emb")


def teacher_id(argv: list[str], ids: list[int]) -> int:
    """``<i>`` from the command line, or (under dvc repro) from DVC_STAGE ``export_teacher_emb@<i>``."""
    usage = f"usage: python stages/export_teacher_emb.py <i>, with i one of teacher.ids {ids}"
    i = stage_item(argv, usage)
    if i not in ids:
        raise ParamError(f"{usage}; got {i}")
    return i


def need(folder: Path, stage: str) -> Path:
    if not (folder / "config.json").exists():
        raise DataError(f"{folder} is missing: run the {stage} stage first (dvc repro {stage})")
    return folder


def main(argv: list[str] | None = None) -> None:
    params = load_params()
    i = teacher_id(sys.argv[1:] if argv is None else argv, params.teacher.ids)
    teacher_dir = need(Path(f"models/teacher_{i}"), "finetune_teacher")
    step_dir = need(Path(f"models/post_train/step_{i}"), "post_train")
    tokens = schemas.read_tokens()
    state = Accelerator()  # splits the news between processes under accelerate launch
    if not state.is_main_process:
        log.setLevel(logging.WARNING)
    # PLM-NR folders only: loading them by class (not through the kinds registry) keeps this stage
    # independent of the other kinds' code (editing SASRec must not rerun the teachers' exports)
    teacher = PLMNR.from_pretrained(teacher_dir).eval().to(state.device)
    post_trained = PLMNR.from_pretrained(step_dir).eval().to(state.device)
    tensors = export_teacher_embeddings(
        teacher, post_trained, tokens, cache_dir=CACHE_DIR, batch_size=params.plm.encode_batch,
        names=(f"teacher_{i}", f"post_train/step_{i}"), progress=state.is_main_process, state=state,
    )
    if state.is_main_process:
        out = OUT_DIR / f"teacher_{i}.safetensors"
        write_teacher_emb(out, tensors, {
            "teacher": teacher_dir.as_posix(),
            "teacher_sha256": checkpoint_sha256(teacher_dir),
            "post_train": step_dir.as_posix(),
            "post_train_sha256": checkpoint_sha256(step_dir),
            "tokenizer": params.plm.name,
            "title_len": params.plm.title_len,
            "body_len": params.plm.body_len,
            "news_dim": tensors["news"].shape[1],
            "user_query_dim": teacher.config.user_query_dim,
            "hidden_size": teacher.plm.config.hidden_size,
            "n_news": tokens.num_rows,
            "rows": tensors["news"].shape[0],
        })
        log.info("wrote %s: news, title and body embeddings of %s news", out, f"{tokens.num_rows:,}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
