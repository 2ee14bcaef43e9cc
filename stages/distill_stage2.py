"""distill_stage2: the student learns news recommendation, by ``student.method``.

Each method is a module of tinynewsrec.distill.methods: tinynewsrec: from
models/student_stage1, distilled from the M teachers' news embeddings (data/teacher_emb/) and
their frozen user encoders; no_kd: clicks only; last_layers_kd / newsbert: one teacher
(``student.teacher``, models/teacher_<i>) run alongside. Reads
data/samples/train.parquet and data/tokens/news.parquet; writes models/student/ and its
curves in metrics/student/. Resumes from .cache/checkpoints/student; runs unchanged under
``accelerate launch``.
"""

import sys

from tinynewsrec.params import load_params
from tinynewsrec.stage import run_stage
from tinynewsrec.train.distill import DistillPaths, save_student, train_stage2


def main() -> None:
    params = load_params()

    from accelerate import Accelerator

    accelerator = Accelerator()
    paths = DistillPaths()
    run = train_stage2(params, accelerator, paths)
    save_student(run, paths.out, paths.metrics, accelerator, **run.info)


if __name__ == "__main__":
    sys.exit(run_stage(main))
