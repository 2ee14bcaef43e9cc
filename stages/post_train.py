"""post_train: domain post-training of the PLM (dp: title-body matching; fp: MLM; none).

Reads data/tokens/news.parquet and (dp) the frozen-layer caches data/cache/frozen/{title,body};
writes models/post_train/step_{0..M-1}/ (M = len(teacher.ids), oldest to newest), the loss
curve in metrics/post_train/ (dvclive) and metrics/post_train.json.
"""

import logging
import sys

from tinynewsrec.data import schemas
from tinynewsrec.io import write_json
from tinynewsrec.models.plm import check_plm
from tinynewsrec.params import load_params
from tinynewsrec.stage import run_stage
from tinynewsrec.train.post_train import clear_resume_state, post_train, save_checkpoints

log = logging.getLogger("tinynewsrec")
OUT = "models/post_train"


def main() -> None:
    params = load_params()
    check_plm(params.plm)  # plm.name and trainable_layers against the PLM, before any work
    tokens = schemas.read_tokens()

    from accelerate import Accelerator
    from dvclive import Live

    accelerator = Accelerator()
    live = Live(dir="metrics/post_train", save_dvc_exp=False, dvcyaml=None) if accelerator.is_main_process else None
    try:
        run = post_train(params, tokens, accelerator, live=live)
    finally:
        if live is not None:
            live.end()
    if accelerator.is_main_process:
        save_checkpoints(run, OUT)
        write_json(run.summary, "metrics/post_train.json")
        clear_resume_state(run)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    sys.exit(run_stage(main))
