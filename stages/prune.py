"""prune: ROSITA's structured pruning of ``student.teacher`` (``student.method: rosita``).

Taylor importance of every head and FFN neuron from the teacher's click loss over
``rosita.importance_batches`` training batches, then the bottom ``student.layers`` layers with
``rosita.keep_heads`` heads, ``rosita.ffn_dim`` FFN neurons and a rank-``rosita.embedding_rank``
word embedding: models/pruned (load it with ``PrunedPLMNR.from_pretrained``; plain AutoModel
cannot), metrics/prune.json. Any other method: a note that the stage is unused, in a second.
"""

import sys

from tinynewsrec.params import load_params
from tinynewsrec.stage import run_stage
from tinynewsrec.train import prune
from tinynewsrec.train.distill import DistillPaths


def main() -> None:
    params = load_params()
    paths = DistillPaths()
    if not prune.used(params):
        prune.write_unused(params, paths.pruned)
        return
    prune.run(params, paths)


if __name__ == "__main__":
    sys.exit(run_stage(main))
