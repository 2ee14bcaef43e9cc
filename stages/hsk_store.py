"""hsk_store: the teacher's compressed hidden-state knowledge of every training news, once.

For ``student.method`` hsk / rosita with ``teacher_free: true``: ``student.teacher`` runs over the
training samples' distinct news and their HSK, compressed by the method's setting, is written
to data/hsk (memory-mapped .npy files, meta.json last), so distill_stage1 never loads the
teacher; metrics/hsk_store.json gives its size. A store over ``store_gb``, another method, or
``teacher_free: false``: data/hsk/note.json says why there is none.
"""

import sys

from tinynewsrec.params import load_params
from tinynewsrec.stage import run_stage
from tinynewsrec.train import hsk_store
from tinynewsrec.train.distill import DistillPaths


def main() -> None:
    hsk_store.run(load_params(), DistillPaths())


if __name__ == "__main__":
    sys.exit(run_stage(main))
