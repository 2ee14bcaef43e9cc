"""finetune_teacher <i>: fine-tune the post-trained checkpoint models/post_train/step_<i> as PLM-NR.

Reads data/samples/train.parquet and the frozen-layer cache data/cache/frozen/title;
writes models/teacher_<i>/ and its training curves in metrics/teacher_<i>/.
Resumes after an interrupt from .cache/checkpoints/teacher_<i>. Runs the same on a CPU,
one GPU, or many under `accelerate launch stages/finetune_teacher.py <i>`.
"""

import sys

from tinynewsrec.params import load_params
from tinynewsrec.stage import run_stage, stage_item
from tinynewsrec.train.finetune_teacher import TeacherPaths, check_teacher_id, save_teacher, train_teacher

USAGE = "usage: python stages/finetune_teacher.py <teacher id>, one of params.yaml teacher.ids"


def parse_teacher_id(argv: list[str]) -> int:
    """``<i>`` from the command line, or (under dvc repro) from DVC_STAGE ``finetune_teacher@<i>``."""
    return stage_item(argv, USAGE)


def main(argv: list[str] | None = None) -> None:
    teacher_id = parse_teacher_id(sys.argv[1:] if argv is None else argv)
    params = load_params()
    check_teacher_id(teacher_id, params.teacher.ids)

    from accelerate import Accelerator

    accelerator = Accelerator()
    paths = TeacherPaths.default(teacher_id)
    run = train_teacher(params, teacher_id, paths, accelerator)
    save_teacher(run, params, paths, accelerator)


if __name__ == "__main__":
    sys.exit(run_stage(main))
