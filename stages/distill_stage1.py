"""distill_stage1: Tiny-NewsRec's first stage, post-training knowledge distillation.

A student (the PLM's first ``student.layers`` layers, new heads) learns title-body matching
from the M post-trained checkpoints' title and body embeddings
(data/teacher_emb/teacher_<i>.safetensors). Writes models/student_stage1/ and its curves
in metrics/student_stage1/. For a ``student.method`` without a first stage (its module in
tinynewsrec.distill.methods says ``stage1=False``) the stage writes a config.json that says so
and returns at once.
Resumes after an interrupt from .cache/checkpoints/student_stage1; runs unchanged under
``accelerate launch``.
"""

import sys

from tinynewsrec.params import load_params
from tinynewsrec.stage import run_stage
from tinynewsrec.train.distill import DistillPaths, save_student, stage1_used, train_stage1, write_stage1_unused


def main() -> None:
    params = load_params()
    paths = DistillPaths()
    if not stage1_used(params):
        write_stage1_unused(params, paths)
        return

    from accelerate import Accelerator

    accelerator = Accelerator()
    run = train_stage1(params, accelerator, paths)
    save_student(run, paths.stage1, paths.stage1_metrics, accelerator, **run.info)


if __name__ == "__main__":
    sys.exit(run_stage(main))
